#include "store/int_weights.h"

#include <cmath>
#include <deque>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "model/linear_precision.h"
#include "model/model.h"
#include "store/checkpoint.h"
#include "store/safetensors.h"

namespace moe {

namespace {

namespace fs = std::filesystem;

constexpr const char* kWeightSuffix = ".weight";
constexpr const char* kQweightSuffix = ".qweight";

int64_t code_bytes_per_row(int bits, int64_t cols) {
    return bits == 8 ? cols : (cols + 1) / 2;
}

std::string code_dtype(const IntQuantSpec& spec) {
    return spec.bits == 8 && spec.symmetric ? "I8" : "U8";
}

}  // namespace

IntWeightNames int_weight_names(const std::string& parameter) {
    const std::string suffix = kWeightSuffix;
    if (parameter.size() <= suffix.size() || !parameter.ends_with(suffix)) return {};
    const std::string module = parameter.substr(0, parameter.size() - suffix.size());
    return {module + kQweightSuffix, module + ".scales", module + ".zeros"};
}

std::string int_weight_parameter(const std::string& qweight_name) {
    const std::string suffix = kQweightSuffix;
    if (qweight_name.size() <= suffix.size() || !qweight_name.ends_with(suffix)) return {};
    return qweight_name.substr(0, qweight_name.size() - suffix.size()) + kWeightSuffix;
}

IntQuantSpec check_int_weight(const SafetensorsReader& reader, const std::string& parameter,
                              const Shape& shape) {
    const IntWeightNames n = int_weight_names(parameter);
    const auto fail = [&](const std::string& tensor, const std::string& msg) {
        throw FileError(reader.path(), "tensor '" + tensor + "' " + msg);
    };
    if (shape.size() != 2)
        fail(n.qweight, "stands for '" + parameter + "', which is not a matrix (shape " +
                            shape_to_string(shape) +
                            "): only projection weights are stored quantized");
    const auto& md = reader.metadata();
    const auto bits = md.find(kQuantBitsKey), scheme = md.find(kQuantSchemeKey);
    if (bits == md.end() || scheme == md.end())
        fail(n.qweight, "is a quantized weight, but the file's __metadata__ lacks \"" +
                            std::string(bits == md.end() ? kQuantBitsKey : kQuantSchemeKey) +
                            "\" (it says the codes' width and scheme)");
    IntQuantSpec spec;
    if (bits->second == "8" || bits->second == "4" || bits->second == "3" || bits->second == "2")
        spec.bits = bits->second[0] - '0';
    else
        fail(n.qweight, "is a quantized weight, but the file's \"quant_bits\" is \"" +
                            bits->second + "\" (expected 8, 4, 3 or 2)");
    if (scheme->second != "symmetric" && scheme->second != "asymmetric")
        fail(n.qweight, "is a quantized weight, but the file's \"quant_scheme\" is \"" +
                            scheme->second + "\" (expected symmetric or asymmetric)");
    spec.symmetric = scheme->second == "symmetric";

    const int64_t rows = shape[0], cols = shape[1];
    const SafetensorsEntry& q = reader.entry(n.qweight);
    const Shape codes{rows, code_bytes_per_row(spec.bits, cols)};
    if (q.dtype != code_dtype(spec) || q.shape != codes)
        fail(n.qweight, "is " + q.dtype + " " + shape_to_string(q.shape) + ", expected " +
                            code_dtype(spec) + " " + shape_to_string(codes) + " (INT" +
                            bits->second + " " + scheme->second + " codes of '" + parameter + "' " +
                            shape_to_string(shape) + ")");
    const SafetensorsEntry* s = reader.find(n.scales);
    if (!s) fail(n.scales, "is missing: '" + n.qweight + "' needs its scales");
    const int64_t groups = s->shape.size() == 2 ? s->shape[1] : 0;
    if (s->dtype != "F32" || s->shape.size() != 2 || s->shape[0] != rows || groups < 1 ||
        cols % groups != 0)
        fail(n.scales, "is " + s->dtype + " " + shape_to_string(s->shape) + ", expected F32 [" +
                           std::to_string(rows) + ", groups] with groups dividing the " +
                           std::to_string(cols) + " columns of '" + parameter + "'");
    spec.group_size = groups == 1 ? 0 : cols / groups;
    const SafetensorsEntry* z = reader.find(n.zeros);
    if (spec.symmetric && z)
        fail(n.zeros, "is present, but the file's \"quant_scheme\" is symmetric (no zero points)");
    if (!spec.symmetric) {
        if (!z) fail(n.zeros, "is missing: asymmetric '" + n.qweight + "' needs its zero points");
        if (z->dtype != "U8" || z->shape != s->shape)
            fail(n.zeros, "is " + z->dtype + " " + shape_to_string(z->shape) + ", expected U8 " +
                              shape_to_string(s->shape) + " (one zero point per scale)");
    }
    return spec;
}

void read_int_weight(const SafetensorsReader& reader, const std::string& parameter,
                     const IntQuantSpec& spec, const Shape& shape, float* out) {
    const IntWeightNames n = int_weight_names(parameter);
    IntQuantized q;
    q.rows = shape[0];
    q.cols = shape[1];
    q.spec = spec;
    q.data = reader.read_bytes_u8(n.qweight);
    const int64_t scale_count = reader.entry(n.scales).numel();
    q.scales.resize(static_cast<size_t>(scale_count));
    reader.read_f32_into(n.scales, q.scales.data(), scale_count);
    for (size_t i = 0; i < q.scales.size(); ++i)
        if (!std::isfinite(q.scales[i]) || q.scales[i] <= 0.0f)
            throw FileError(reader.path(), "tensor '" + n.scales + "' holds scale " +
                                               std::to_string(q.scales[i]) + " at index " +
                                               std::to_string(i) +
                                               " (scales must be finite and > 0)");
    const int top = (1 << spec.bits) - 1;
    if (!spec.symmetric) {
        q.zeros = reader.read_bytes_u8(n.zeros);
        for (size_t i = 0; i < q.zeros.size(); ++i)
            if (q.zeros[i] > top)
                throw FileError(reader.path(), "tensor '" + n.zeros + "' holds zero point " +
                                                   std::to_string(q.zeros[i]) + " at index " +
                                                   std::to_string(i) + " (INT" +
                                                   std::to_string(spec.bits) + " codes are 0.." +
                                                   std::to_string(top) + ")");
    }
    if (spec.bits < 4) {  // stored in nibbles: a code outside INT3's / INT2's range is damage
        const int qmax = (1 << (spec.bits - 1)) - 1;
        const int64_t stride = code_bytes_per_row(spec.bits, q.cols);
        for (int64_t r = 0; r < q.rows; ++r)
            for (int64_t c = 0; c < q.cols; ++c) {
                const int nibble = (q.data[size_t(r * stride + c / 2)] >> (4 * (c % 2))) & 0x0F;
                const bool ok =
                    spec.symmetric ? (nibble <= qmax || nibble >= 16 - qmax) : nibble <= top;
                if (!ok)
                    throw FileError(
                        reader.path(),
                        "tensor '" + n.qweight + "' holds nibble " + std::to_string(nibble) +
                            " at row " + std::to_string(r) + ", column " + std::to_string(c) +
                            ", outside the INT" + std::to_string(spec.bits) + " codes " +
                            (spec.symmetric ? std::to_string(-qmax) + ".." + std::to_string(qmax)
                                            : "0.." + std::to_string(top)));
            }
    }
    dequantize_int(q, out);
}

int64_t save_int_quantized_checkpoint(const std::string& dir, const Model& model,
                                      const IntQuantSpec& spec, const std::string& format) {
    SafetensorsWriter writer;
    std::deque<std::vector<float>> scales;  // the writer keeps pointers to fp32 data
    int64_t bytes = 0;
    for (const Parameter* p : model.parameters().all()) {
        if (!is_projection_weight(p->name, p->value.rank())) {
            writer.add_f32(p->name, p->value);
            bytes += p->value.bytes();
            continue;
        }
        const IntWeightNames n = int_weight_names(p->name);
        if (n.qweight.empty())
            throw Error("cannot store '" + p->name +
                        "' quantized: its name does not end in .weight");
        const int64_t rows = p->value.shape()[0], cols = p->value.shape()[1];
        IntQuantSpec s = spec;
        if (s.group_size > 0 && cols % s.group_size != 0) s.group_size = 0;  // as --quant-eval
        const std::vector<float> host = p->value.to_host();
        IntQuantized q = quantize_int(host.data(), rows, cols, s);
        const int64_t groups = q.groups_per_row();
        bytes += q.bytes();
        writer.add_u8(n.qweight, code_dtype(s), std::move(q.data),
                      {rows, code_bytes_per_row(s.bits, cols)});
        scales.push_back(std::move(q.scales));
        writer.add_f32(n.scales, scales.back().data(), {rows, groups});
        if (!s.symmetric) writer.add_u8(n.zeros, "U8", std::move(q.zeros), {rows, groups});
    }
    for (const auto& [alias, source] : model.checkpoint_aliases()) {
        const Parameter& src = model.parameters().at(source);
        if (is_projection_weight(src.name, src.value.rank()))
            throw Error("checkpoint alias '" + alias + "' copies the projection weight '" + source +
                        "', which is stored quantized");
        writer.add_f32(alias, src.value);
        bytes += src.value.bytes();
    }
    writer.set_metadata("format", "pt");
    writer.set_metadata("producer", std::string("moe-workbench ") + MOE_VERSION);
    writer.set_metadata("quantization", format);
    writer.set_metadata(kQuantBitsKey, std::to_string(spec.bits));
    writer.set_metadata(kQuantSchemeKey, spec.symmetric ? "symmetric" : "asymmetric");

    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw FileError(dir, "cannot create the checkpoint directory: " + ec.message());
    writer.write((fs::path(dir) / kCheckpointWeightsFile).string());

    ModelConfig cfg = model.config();
    const nlohmann::json qc = {
        {"quant_method", "moe-workbench-int"},
        {"format", format},
        {"bits", spec.bits},
        {"group_size", spec.group_size},
        {"sym", spec.symmetric},
        {"storage",
         "projection weight <module>.weight as <module>.qweight (codes: I8 for int8 "
         "symmetric, else U8; int4/int3 two per byte, even column in the low nibble), "
         "<module>.scales F32 [out, groups], <module>.zeros U8 [out, groups] when "
         "asymmetric; w = (q - zero) * scale (docs/precision.md)"},
        {"not_quantized", "embed_tokens, lm_head, the MoE gate, norms and biases (F32)"},
    };
    cfg.passthrough["quantization_config"] = qc.dump();
    cfg.save((fs::path(dir) / "config.json").string());
    return bytes;
}

std::string checkpoint_quantization(const std::string& dir) {
    const std::string path = (fs::path(dir) / "config.json").string();
    const nlohmann::json j = read_json_file(path);
    if (!j.is_object() || !j.contains("quantization_config")) return {};
    const nlohmann::json& qc = j["quantization_config"];
    if (qc.is_object() && qc.contains("format") && qc["format"].is_string())
        return qc["format"].get<std::string>();
    return qc.dump();
}

}  // namespace moe
