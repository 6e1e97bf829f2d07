#include "inspect/weight_quantization.h"

#include <cmath>
#include <filesystem>
#include <map>

#include "backend/backend_registry.h"
#include "core/error.h"
#include "model/linear_precision.h"
#include "quant/block_scaling.h"
#include "store/int_weights.h"
#include "store/model_checkpoint.h"
#include "train/evaluator.h"
#include "train/training_checkpoint.h"

namespace moe {

WeightFormat WeightFormat::parse(const std::string& name, const std::string& field) {
    WeightFormat f;
    f.name = name;
    if (name == "fp32") return f;
    if (name == "fp8") {
        f.kind = Kind::FP8;
        return f;
    }
    std::string rest = name;
    if (rest.ends_with("-asym")) {
        f.int_spec.symmetric = false;
        rest.resize(rest.size() - 5);
    }
    f.kind = Kind::INT;
    const bool int_prefix = rest.size() >= 4 && rest.starts_with("int") &&
                            (rest[3] == '8' || rest[3] == '4' || rest[3] == '3' || rest[3] == '2');
    if (int_prefix && rest.size() == 4) {
        f.int_spec.bits = rest[3] - '0';
        return f;
    }
    if (int_prefix && rest.size() > 6 && rest.compare(4, 2, "-g") == 0) {
        f.int_spec.bits = rest[3] - '0';
        try {
            size_t used = 0;
            f.int_spec.group_size = std::stoll(rest.substr(6), &used);
            if (used == rest.size() - 6 && f.int_spec.group_size > 0) return f;
        } catch (const std::exception&) {
        }
    }
    throw ConfigError(field,
                      "expected fp32, fp8, int8, int4, int3, int2 or int4-gN / int8-gN / "
                      "int3-gN / int2-gN (groups of N columns), optionally with -asym; got \"" +
                          name + "\"");
}

std::vector<WeightFormat> default_weight_formats() {
    std::vector<WeightFormat> out;
    for (const char* n : {"fp32", "fp8", "int8", "int4-g128", "int4"})
        out.push_back(WeightFormat::parse(n));
    return out;
}

namespace {

// Casts w [rows, cols] in place; returns the bits it takes to store.
double quantize_weight(const WeightFormat& f, float* w, int64_t rows, int64_t cols) {
    switch (f.kind) {
        case WeightFormat::Kind::FP32:
            return 32.0 * double(rows * cols);
        case WeightFormat::Kind::FP8: {
            BlockQuantSpec spec;
            spec.format = ElementFormat::E4M3;
            spec.tile = kTile128x128;
            fake_quantize(w, rows, cols, cols, spec, w, cols);
            return 8.0 * double(rows * cols) +
                   32.0 * double(tile_grid_rows(rows, spec.tile) * tile_grid_cols(cols, spec.tile));
        }
        case WeightFormat::Kind::INT: {
            IntQuantSpec spec = f.int_spec;
            // A group that does not divide this matrix's columns falls back to per channel.
            if (spec.group_size > 0 && cols % spec.group_size != 0) spec.group_size = 0;
            const IntQuantized q = quantize_int(w, rows, cols, spec);
            dequantize_int(q, w);
            return 8.0 * double(q.bytes());
        }
    }
    return 0;
}

}  // namespace

std::vector<WeightFormatResult> evaluate_weight_formats(Model& model, DataLoader& data,
                                                        int64_t eval_batches,
                                                        const std::vector<int32_t>& probe_tokens,
                                                        const std::vector<WeightFormat>& formats,
                                                        Model* reference) {
    // The fp32 weights, to measure against and to restore.
    std::vector<Parameter*> weights;
    std::map<std::string, std::vector<float>> saved;
    for (Parameter* p : model.parameters().all())
        if (is_projection_weight(p->name, p->value.rank())) {
            weights.push_back(p);
            saved[p->name] = p->value.to_host();  // the model may live on a device
        }
    auto restore = [&] {
        for (Parameter* p : weights) p->value.copy_from_host(saved[p->name].data());
    };
    const bool has_moe = !model.moe_layers().empty();
    const double lambda = 0.0;  // main loss only: MTP modules are not used for inference
    Model& base_model = reference ? *reference : model;
    const EvalReport base = evaluate(base_model, data, eval_batches, lambda);
    Inspection base_routing;
    if (has_moe) base_routing = inspect_tokens(base_model, probe_tokens);

    std::vector<WeightFormatResult> out;
    try {
        for (const WeightFormat& f : formats) {
            WeightFormatResult r;
            r.format = f.name;
            double bits = 0, err2 = 0, norm2 = 0;
            int64_t count = 0;
            for (Parameter* p : weights) {
                const auto& shape = p->value.shape();
                // Quantized on the host, then put in place on the model's device.
                const auto& w0 = saved[p->name];
                std::vector<float> q = w0;
                bits += quantize_weight(f, q.data(), shape[0], shape[1]);
                p->value.copy_from_host(q.data());
                for (int64_t i = 0; i < p->value.numel(); ++i) {
                    const double d = double(q[static_cast<size_t>(i)]) - w0[static_cast<size_t>(i)];
                    err2 += d * d;
                    norm2 += double(w0[static_cast<size_t>(i)]) * w0[static_cast<size_t>(i)];
                }
                count += p->value.numel();
            }
            r.bits_per_weight = count ? bits / double(count) : 32.0;
            r.weight_rel_error = norm2 > 0 ? std::sqrt(err2 / norm2) : 0.0;
            r.val_loss = evaluate(model, data, eval_batches, lambda).loss;
            r.loss_change = (r.val_loss - base.loss) / base.loss;
            r.reference_loss = base.loss;
            if (has_moe)
                r.routing = routing_agreement(base_routing, inspect_tokens(model, probe_tokens));
            out.push_back(r);
            restore();
        }
    } catch (...) {
        restore();
        throw;
    }
    return out;
}

CheckpointWeightFormats evaluate_checkpoint_weight_formats(const std::string& checkpoint_dir,
                                                           const std::vector<WeightFormat>& formats,
                                                           int threads, const std::string& device,
                                                           const std::string& reference_dir) {
    const TrainingState st = load_training_state(checkpoint_dir);
    const TrainingSettings& tr = st.project.training;
    const ModelConfig cfg = load_checkpoint_config(checkpoint_dir);
    const std::unique_ptr<Backend> be =
        make_backend(device, threads > 0 ? threads : static_cast<int>(tr.threads));
    Model model(cfg, *be);
    load_model_weights(checkpoint_dir, model);
    std::unique_ptr<Model> reference;
    if (!reference_dir.empty()) {
        ModelConfig ref_cfg = load_checkpoint_config(reference_dir), own = cfg;
        ref_cfg.passthrough.clear();  // bookkeeping such as quantization_config may differ
        own.passthrough.clear();
        if (!(ref_cfg == own))
            throw FileError(reference_dir + "/config.json",
                            "the reference is another model than " + checkpoint_dir +
                                " (its config.json differs): routing and loss cannot be compared");
        reference = std::make_unique<Model>(cfg, *be);
        load_model_weights(reference_dir, *reference);
    }
    DataLoader data(tr.data, static_cast<uint64_t>(tr.seed), tr.batch_size, tr.seq_len);
    const ProbeBatch probe = data.probe_batch(tr.probe_tokens);
    const std::vector<int32_t> probe_tokens(probe.batch.tokens.begin(),
                                            probe.batch.tokens.begin() + probe.batch.seq_len);
    CheckpointWeightFormats out;
    out.step = st.step;
    out.stored_format = checkpoint_quantization(checkpoint_dir);
    out.eval_batches = tr.eval_batches;
    out.probe_tokens = static_cast<int64_t>(probe_tokens.size());
    out.results = evaluate_weight_formats(model, data, tr.eval_batches, probe_tokens, formats,
                                          reference.get());
    return out;
}

QuantizedExport export_quantized_checkpoint(const std::string& checkpoint_dir,
                                            const std::string& out_dir, const WeightFormat& format,
                                            bool overwrite) {
    namespace fs = std::filesystem;
    if (format.kind != WeightFormat::Kind::INT)
        throw ConfigError("format",
                          "a quantized checkpoint stores int8, int4, int3 or int2 weights "
                          "(per channel, -gN, -asym), got \"" +
                              format.name + "\"");
    std::error_code ec;
    if (fs::exists(out_dir, ec)) {
        if (!overwrite) throw FileError(out_dir, "already exists; pass --overwrite to replace it");
        if (fs::equivalent(out_dir, checkpoint_dir, ec))
            throw FileError(out_dir, "is the checkpoint being exported; write to another folder");
        if (!fs::is_directory(out_dir, ec) || !fs::exists(fs::path(out_dir) / "config.json", ec))
            throw FileError(out_dir,
                            "is not a checkpoint folder (no config.json): not replacing "
                            "it, even with --overwrite");
    }
    // Written whole into a sibling folder, then put in place: never a half-written export.
    const std::string tmp = out_dir + ".tmp";
    if (fs::exists(tmp, ec) && !overwrite)
        throw FileError(tmp,
                        "already exists (an interrupted export?); remove it, or pass "
                        "--overwrite to replace it");
    const TrainingState st = load_training_state(checkpoint_dir);
    const ModelConfig cfg = load_checkpoint_config(checkpoint_dir);
    const std::unique_ptr<Backend> be =
        make_backend("cpu", static_cast<int>(st.project.training.threads));
    Model model(cfg, *be);
    load_model_weights(checkpoint_dir, model);

    QuantizedExport out;
    out.step = st.step;
    for (const Parameter* p : model.parameters().all()) out.fp32_bytes += p->value.bytes();
    for (const auto& alias : model.checkpoint_aliases())
        out.fp32_bytes += model.parameters().at(alias.second).value.bytes();
    fs::remove_all(tmp, ec);
    try {
        out.stored_bytes = save_int_quantized_checkpoint(tmp, model, format.int_spec, format.name);
        fs::copy_file(fs::path(checkpoint_dir) / "trainer_state.json",
                      fs::path(tmp) / "trainer_state.json");
        if (fs::exists(out_dir)) fs::remove_all(out_dir);
        fs::rename(tmp, out_dir);
    } catch (const fs::filesystem_error& e) {
        fs::remove_all(tmp, ec);
        throw FileError(out_dir, std::string("cannot write the quantized checkpoint: ") + e.what());
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
    return out;
}

}  // namespace moe
