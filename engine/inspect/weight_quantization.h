#pragma once
// Inference with quantized weights: every projection weight (model/linear_precision.h) cast to
// FP8 E4M3 with 128x128 block scales, INT8 or INT4, the rest (embedding, head, gate, norms)
// kept fp32, then the validation loss and the routing decisions compared with the fp32 model.
// Weight-only quantization: activations stay fp32, so this isolates what the weight format
// costs.
#include <cstdint>
#include <string>
#include <vector>

#include "data/data_loader.h"
#include "inspect/routing_inspection.h"
#include "model/model.h"
#include "quant/int_quant.h"

namespace moe {

struct WeightFormat {
    enum class Kind { FP32, FP8, INT };
    std::string name;  // "fp32", "fp8", "int8", "int4-g128", ...
    Kind kind = Kind::FP32;
    IntQuantSpec int_spec;  // Kind::INT

    // "fp32", "fp8" (E4M3, 128x128 blocks), "int8", "int4", "int3", "int2" (per channel),
    // "int8-gN", "int4-gN", ... (groups of N), each optionally with "-asym". ConfigError naming
    // `field` otherwise.
    static WeightFormat parse(const std::string& name, const std::string& field = "format");
};

// fp32, fp8, int8, int4-g128, int4.
std::vector<WeightFormat> default_weight_formats();

struct WeightFormatResult {
    std::string format;
    double bits_per_weight = 32;  // storage per projection weight, scales included
    double weight_rel_error = 0;  // over all projection weights, ||Wq - W|| / ||W||
    double val_loss = 0;          // mean next-token loss over the validation batches
    double loss_change = 0;       // (val_loss - fp32 val_loss) / fp32 val_loss
    RoutingAgreement routing;     // decisions on the probe tokens against the fp32 model
    double reference_loss = 0;    // that fp32 val_loss (the model's own, or the reference's)
};

// Runs every format on `model` (its weights are restored afterwards, even on error). Loss
// change and routing agreement are against `reference` when given (another model of the same
// shape: e.g. the fp32 run a QAT run was fine-tuned from), else against the model's own weights.
std::vector<WeightFormatResult> evaluate_weight_formats(Model& model, DataLoader& data,
                                                        int64_t eval_batches,
                                                        const std::vector<int32_t>& probe_tokens,
                                                        const std::vector<WeightFormat>& formats,
                                                        Model* reference = nullptr);

// The same for a training checkpoint directory (trainer_state.json gives the data and the
// probe): loads it on a CPU backend with `threads` threads (0 = the project's setting).
struct CheckpointWeightFormats {
    int64_t step = 0;
    std::string stored_format;  // the checkpoint's own quantization ("int4-g128"), "" for fp32
    int64_t eval_batches = 0;
    int64_t probe_tokens = 0;
    std::vector<WeightFormatResult> results;
};
// device: where the model runs, "cpu" or "cuda:N" (make_backend). reference_dir: a checkpoint
// of the same model config to compare loss and routing with (its weights as stored), instead of
// the checkpoint's own fp32 weights; the data and probe stay the checkpoint's.
CheckpointWeightFormats evaluate_checkpoint_weight_formats(const std::string& checkpoint_dir,
                                                           const std::vector<WeightFormat>& formats,
                                                           int threads = 0,
                                                           const std::string& device = "cpu",
                                                           const std::string& reference_dir = "");

// Writes the checkpoint `checkpoint_dir` with its projection weights stored quantized to `format`
// (an INT format; store/int_weights.h gives the layout) into `out_dir`: config.json with its
// "quantization_config", model.safetensors, and the source's trainer_state.json (so --quant-eval
// finds the data and probe of the run). Loading it gives exactly the in-memory post-training
// quantization of the same format. An existing out_dir is a FileError unless `overwrite`, and
// even then only a checkpoint folder (one holding config.json) is replaced, whole. It is
// written into "<out_dir>.tmp" first, which must not exist either unless `overwrite`.
struct QuantizedExport {
    int64_t step = 0;
    int64_t fp32_bytes = 0;    // the source's tensors in fp32
    int64_t stored_bytes = 0;  // the written tensors: codes, scales, zeros and the fp32 rest
};
QuantizedExport export_quantized_checkpoint(const std::string& checkpoint_dir,
                                            const std::string& out_dir, const WeightFormat& format,
                                            bool overwrite = false);

}  // namespace moe
