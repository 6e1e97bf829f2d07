#include "store/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "quant/block_scaling.h"
#include "quant/number_formats.h"
#include "store/int_weights.h"
#include "store/safetensors.h"

namespace moe {

namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() &&
           s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Every tensor of a checkpoint, wherever it lives (one file or several shards).
struct CheckpointTensors {
    std::string origin;  // the file errors about the checkpoint as a whole name
    bool sharded = false;
    std::vector<std::unique_ptr<SafetensorsReader>> readers;
    struct Located {
        const SafetensorsReader* reader;
        const SafetensorsEntry* entry;
    };
    std::map<std::string, Located> by_name;
    std::vector<std::string> order;  // file order, for stable error lists

    const std::string& file_of(const std::string& name) const {
        return by_name.at(name).reader->path();
    }
    // "'name'" or, for shards, "'name' (in model-00002-of-00003.safetensors)".
    std::string describe(const std::string& name) const {
        std::string s = "'" + name + "'";
        if (sharded) s += " (in " + fs::path(file_of(name)).filename().string() + ")";
        return s;
    }
};

CheckpointTensors open_sharded(const std::string& dir, const std::string& index_path) {
    CheckpointTensors ct;
    ct.origin = index_path;
    ct.sharded = true;
    const nlohmann::json index = read_json_file(index_path);  // limits: core/json_text.h
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
        throw FileError(index_path, "shard index has no \"weight_map\" object");
    const nlohmann::json& map = index["weight_map"];

    std::map<std::string, const SafetensorsReader*> shards;  // file name -> reader
    for (auto it = map.begin(); it != map.end(); ++it) {
        if (!it.value().is_string())
            throw FileError(index_path, "weight_map entry for tensor '" + it.key() +
                                            "' is not a file name: " + it.value().dump());
        const std::string file = it.value().get<std::string>();
        if (file.empty() || fs::path(file).is_absolute())
            throw FileError(index_path, "weight_map entry for tensor '" + it.key() +
                                            "' names shard '" + file +
                                            "'; shards must be relative to the checkpoint");
        if (!shards.count(file)) {
            const std::string shard_path = (fs::path(dir) / file).string();
            ct.readers.push_back(std::make_unique<SafetensorsReader>(shard_path));
            shards[file] = ct.readers.back().get();
        }
        const SafetensorsReader* reader = shards[file];
        const SafetensorsEntry* entry = reader->find(it.key());
        if (!entry)
            throw FileError(reader->path(), "tensor '" + it.key() + "' is listed in " +
                                                index_path + " but is not in this shard");
        ct.by_name[it.key()] = {reader, entry};
    }
    // A shard tensor the index does not list means index and shards disagree: refuse to guess.
    for (const auto& reader : ct.readers)
        for (const SafetensorsEntry& e : reader->tensors()) {
            auto it = ct.by_name.find(e.name);
            if (it == ct.by_name.end() || it->second.reader != reader.get())
                throw FileError(reader->path(), "tensor '" + e.name + "' is in this shard but " +
                                                    "the weight_map of " + index_path +
                                                    " does not list it here");
            ct.order.push_back(e.name);
        }
    return ct;
}

CheckpointTensors open_checkpoint(const std::string& dir) {
    const std::string single = (fs::path(dir) / kCheckpointWeightsFile).string();
    const std::string index = (fs::path(dir) / kCheckpointIndexFile).string();
    std::error_code ec;
    if (fs::exists(single, ec)) {
        CheckpointTensors ct;
        ct.origin = single;
        ct.readers.push_back(std::make_unique<SafetensorsReader>(single));
        for (const SafetensorsEntry& e : ct.readers[0]->tensors()) {
            ct.by_name[e.name] = {ct.readers[0].get(), &e};
            ct.order.push_back(e.name);
        }
        return ct;
    }
    if (fs::exists(index, ec)) return open_sharded(dir, index);
    if (!fs::is_directory(dir, ec))
        throw FileError(dir, "checkpoint directory does not exist or is not a directory");
    throw FileError(dir, std::string("not a checkpoint: neither ") + kCheckpointWeightsFile +
                             " nor " + kCheckpointIndexFile + " is in this directory");
}

// "'a', 'b', 'c' and 7 more" (at most 10 names).
std::string name_list(const std::vector<std::string>& names, const CheckpointTensors* ct) {
    std::ostringstream os;
    const size_t shown = std::min<size_t>(names.size(), 10);
    for (size_t i = 0; i < shown; ++i) {
        if (i) os << ", ";
        os << (ct ? ct->describe(names[i]) : "'" + names[i] + "'");
    }
    if (names.size() > shown) os << " and " << names.size() - shown << " more";
    return os.str();
}

}  // namespace

void save_checkpoint_weights(const std::string& dir, const ParameterStore& params,
                             const std::vector<CheckpointAlias>& aliases,
                             const std::map<std::string, std::string>& metadata) {
    SafetensorsWriter writer;
    for (const Parameter* p : params.all()) writer.add_f32(p->name, p->value);
    for (const CheckpointAlias& a : aliases) {
        const Parameter* source = params.find(a.source);
        if (!source)
            throw Error("checkpoint alias '" + a.alias + "': source parameter '" + a.source +
                        "' does not exist");
        if (writer.contains(a.alias))
            throw Error("checkpoint alias '" + a.alias +
                        "' collides with a parameter or another alias of the same name");
        writer.add_f32(a.alias, source->value);  // same memory, written twice
    }
    writer.set_metadata("format", "pt");
    for (const auto& [k, v] : metadata) writer.set_metadata(k, v);

    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw FileError(dir, "cannot create the checkpoint directory: " + ec.message());
    writer.write((fs::path(dir) / kCheckpointWeightsFile).string());
}

void load_checkpoint_weights(const std::string& dir, ParameterStore& params,
                             const std::vector<CheckpointAlias>& aliases,
                             const LoadProgress& progress) {
    const CheckpointTensors ct = open_checkpoint(dir);

    std::map<std::string, const CheckpointAlias*> alias_by_name;
    for (const CheckpointAlias& a : aliases) {
        if (!params.find(a.source))
            throw Error("checkpoint alias '" + a.alias + "': source parameter '" + a.source +
                        "' does not exist");
        alias_by_name[a.alias] = &a;
    }

    // FP8 checkpoints (DeepSeek-V3's released format): a weight stored as F8_E4M3 / F8_E5M2
    // codes comes with "<name>_scale_inv" [ceil(out/128), ceil(in/128)], the fp32 multiplier of
    // each 128x128 block. Each pair is checked here and dequantized when read below.
    std::set<std::string> scales;
    for (const std::string& name : ct.order) {
        const SafetensorsEntry& e = *ct.by_name.at(name).entry;
        if (ends_with(name, "_scale_inv")) {
            const std::string weight = name.substr(0, name.size() - 10);
            const auto w = ct.by_name.find(weight);
            if (w == ct.by_name.end() || w->second.entry->dtype.rfind("F8_", 0) != 0)
                throw FileError(ct.file_of(name), "tensor '" + name + "' is an FP8 block scale, but '" +
                                                      weight + "' is " +
                                                      (w == ct.by_name.end() ? std::string("missing")
                                                                             : "stored as " + w->second.entry->dtype));
            scales.insert(name);
            continue;
        }
        if (e.dtype.rfind("F8_", 0) != 0) continue;
        if (e.dtype != "F8_E4M3" && e.dtype != "F8_E5M2")
            throw FileError(ct.file_of(name), "tensor '" + name + "' has dtype " + e.dtype +
                                                  " (FP8 weights must be F8_E4M3 or F8_E5M2)");
        const auto s = ct.by_name.find(name + "_scale_inv");
        if (e.shape.size() != 2 || s == ct.by_name.end())
            throw FileError(ct.file_of(name), "tensor '" + name + "' is FP8 (" + e.dtype + ", shape " +
                                                  shape_to_string(e.shape) + ") " +
                                                  (e.shape.size() != 2 ? "but not a matrix"
                                                                       : "without its block scale '" + name +
                                                                             "_scale_inv'"));
        const Shape grid{tile_grid_rows(e.shape[0], kTile128x128), tile_grid_cols(e.shape[1], kTile128x128)};
        if (s->second.entry->shape != grid)
            throw FileError(ct.file_of(name), "tensor '" + name + "_scale_inv' has shape " +
                                                  shape_to_string(s->second.entry->shape) + ", expected " +
                                                  shape_to_string(grid) + " (one scale per 128x128 block of " +
                                                  shape_to_string(e.shape) + ")");
    }

    // Integer-quantized weights (store/int_weights.h): "<module>.qweight" with ".scales" (and
    // ".zeros") in the same file stand for the parameter "<module>.weight"; checked here,
    // dequantized when read below.
    std::map<std::string, IntQuantSpec> int_weights;  // parameter -> its stored spec
    std::set<std::string> int_parts;
    for (const std::string& name : ct.order) {
        const std::string param = int_weight_parameter(name);
        const Parameter* p = param.empty() ? nullptr : params.find(param);
        if (!p) continue;
        if (ct.by_name.count(param))
            throw FileError(ct.file_of(name), "tensor '" + name + "' is a quantized copy of '" +
                                                  param + "', which the checkpoint also holds");
        const SafetensorsReader& reader = *ct.by_name.at(name).reader;
        int_weights[param] = check_int_weight(reader, param, p->value.shape());
        const IntWeightNames n = int_weight_names(param);
        for (const std::string& part : {n.qweight, n.scales, n.zeros})
            if (reader.contains(part)) int_parts.insert(part);
    }

    std::vector<std::string> unexpected, missing;
    for (const std::string& name : ct.order)
        if (!params.find(name) && !alias_by_name.count(name) && !scales.count(name) &&
            !int_parts.count(name))
            unexpected.push_back(name);
    for (const Parameter* p : params.all())
        if (!ct.by_name.count(p->name) && !int_weights.count(p->name)) missing.push_back(p->name);
    if (!unexpected.empty() || !missing.empty()) {
        std::string msg;
        if (!unexpected.empty())
            msg += std::to_string(unexpected.size()) + " unexpected tensor(s) that the model " +
                   "does not have: " + name_list(unexpected, &ct) +
                   " — is config.json for this checkpoint?";
        if (!missing.empty()) {
            if (!msg.empty()) msg += "; ";
            msg += std::to_string(missing.size()) + " parameter(s) missing from the checkpoint: " +
                   name_list(missing, nullptr);
        }
        throw FileError(ct.origin, msg);
    }

    for (const std::string& name : ct.order) {
        const SafetensorsEntry& e = *ct.by_name.at(name).entry;
        if (const Parameter* p = params.find(name)) {
            if (e.shape != p->value.shape())
                throw FileError(ct.file_of(name), "tensor '" + name + "' has shape " +
                                                      shape_to_string(e.shape) +
                                                      " in the checkpoint, the model expects " +
                                                      shape_to_string(p->value.shape()));
            if (e.dtype != "F32" && e.dtype != "BF16" && e.dtype != "F16" && e.dtype != "F64" &&
                e.dtype.rfind("F8_", 0) != 0)
                throw FileError(ct.file_of(name), "tensor '" + name + "' has dtype " + e.dtype +
                                                      "; weights must be F32, BF16, F16, F64 or FP8 "
                                                      "with block scales");
        } else if (!scales.count(name) && !int_parts.count(name)) {  // checked with their weights
            const CheckpointAlias& a = *alias_by_name.at(name);
            const Shape& expected = params.at(a.source).value.shape();
            if (e.shape != expected)
                throw FileError(ct.file_of(name),
                                "tensor '" + name + "' (a copy of '" + a.source + "') has shape " +
                                    shape_to_string(e.shape) + " in the checkpoint, but '" +
                                    a.source + "' has shape " + shape_to_string(expected));
        }
    }

    int64_t total = 0, done = 0;
    const auto stored = [&](const std::string& name) {
        const SafetensorsEntry& e = *ct.by_name.at(name).entry;
        return e.numel() * int64_t(safetensors_dtype_size(e.dtype));
    };
    const auto stored_int = [&](const std::string& param) {
        int64_t b = 0;
        const IntWeightNames n = int_weight_names(param);
        for (const std::string& part : {n.qweight, n.scales, n.zeros})
            if (int_parts.count(part)) b += stored(part);
        return b;
    };
    for (const Parameter* p : params.all()) {
        if (int_weights.count(p->name)) {
            total += stored_int(p->name);
            continue;
        }
        total += stored(p->name);
        if (scales.count(p->name + "_scale_inv")) total += stored(p->name + "_scale_inv");
    }
    for (Parameter* p : params.all()) {
        if (const auto it = int_weights.find(p->name); it != int_weights.end()) {
            done += stored_int(p->name);
            const SafetensorsReader& reader = *ct.by_name.at(int_weight_names(p->name).qweight).reader;
            std::vector<float> host(static_cast<size_t>(p->value.numel()));
            read_int_weight(reader, p->name, it->second, p->value.shape(), host.data());
            p->value.copy_from_host(host.data());
            if (progress) progress(done, total);
            continue;
        }
        const auto& loc = ct.by_name.at(p->name);
        done += stored(p->name);
        if (loc.entry->dtype.rfind("F8_", 0) != 0) {
            loc.reader->read_f32_into(p->name, p->value);
            if (progress) progress(done, total);
            continue;
        }
        done += stored(p->name + "_scale_inv");
        const std::string scale_name = p->name + "_scale_inv";
        const auto& sloc = ct.by_name.at(scale_name);
        BlockQuantized q;
        q.rows = p->value.shape()[0];
        q.cols = p->value.shape()[1];
        q.spec.format = loc.entry->dtype == "F8_E4M3" ? ElementFormat::E4M3 : ElementFormat::E5M2;
        q.spec.tile = kTile128x128;
        q.codes = loc.reader->read_bytes_u8(p->name);
        q.scales.resize(static_cast<size_t>(sloc.entry->numel()));
        sloc.reader->read_f32_into(scale_name, q.scales.data(), sloc.entry->numel());
        std::vector<float> host(static_cast<size_t>(p->value.numel()));
        dequantize_blocks(q, host.data(), q.cols);
        p->value.copy_from_host(host.data());
        if (progress) progress(done, total);
    }
}

}  // namespace moe
