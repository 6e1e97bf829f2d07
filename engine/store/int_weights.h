#pragma once
// Checkpoints with integer-quantized projection weights (quant/int_quant.h: INT8, INT4, INT3, INT2;
// per output channel or per group of input columns; symmetric or asymmetric), in safetensors.
// A projection weight "<module>.weight" [out, in] is stored as (docs/precision.md, "Quantized
// checkpoints"):
//   "<module>.qweight"  the codes: I8 [out, in] (int8 symmetric, two's complement), U8 [out, in]
//                       (int8 asymmetric), U8 [out, ceil(in/2)] (int4, int3, int2: two codes per
//                       byte, column 2i in the low nibble, each row starting on a byte; a
//                       symmetric code is the nibble's two's complement, -8..7)
//   "<module>.scales"   F32 [out, groups]: groups = 1 per channel, else in / group_size
//   "<module>.zeros"    U8 [out, groups], asymmetric only: w = (q - zero) * scale
// and every other tensor stays as it is (F32). The file's __metadata__ says "quant_bits" (8, 4,
// 3 or 2) and "quant_scheme" (symmetric or asymmetric), the same for every quantized weight of the
// file; config.json carries a "quantization_config" in the spirit of Hugging Face's. Loading
// (store/checkpoint.h) dequantizes each weight to fp32: exactly dequantize_int of its codes, so
// a model loaded from such a checkpoint equals the fp32 model quantized in memory.
#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "quant/int_quant.h"

namespace moe {

class SafetensorsReader;
class Model;

inline constexpr const char* kQuantBitsKey = "quant_bits";
inline constexpr const char* kQuantSchemeKey = "quant_scheme";

// "<module>.qweight" / ".scales" / ".zeros" of the parameter "<module>.weight"; all empty for a
// name that does not end in ".weight".
struct IntWeightNames {
    std::string qweight, scales, zeros;
};
IntWeightNames int_weight_names(const std::string& parameter);
// The parameter "<module>.weight" a "<module>.qweight" stands for; empty for other names.
std::string int_weight_parameter(const std::string& qweight_name);

// Checks the stored weight of `parameter` (shape [rows, cols]) in `reader`: the file's metadata,
// the dtypes and shapes of its tensors (.zeros present exactly when asymmetric). Returns its
// spec (group_size 0 when it has one group per row). FileErrors name the file and the tensor.
IntQuantSpec check_int_weight(const SafetensorsReader& reader, const std::string& parameter,
                              const Shape& shape);
// Reads and dequantizes it into out [rows * cols]. Scales must be finite and positive and zero
// points within the code range (FileError naming the tensor and the first bad value).
void read_int_weight(const SafetensorsReader& reader, const std::string& parameter,
                     const IntQuantSpec& spec, const Shape& shape, float* out);

// Writes dir/config.json (with "quantization_config") and dir/model.safetensors: the model's
// projection weights (model/linear_precision.h) quantized to `spec` (a group that does not
// divide a weight's input width falls back to per channel for that weight, as moe-train
// --quant-eval does), everything else fp32, the MTP aliases as in save_model_checkpoint.
// `format` names the spec ("int4-g128"). Returns the bytes of the weights file's tensors.
int64_t save_int_quantized_checkpoint(const std::string& dir, const Model& model,
                                      const IntQuantSpec& spec, const std::string& format);

// The "quantization_config" of a checkpoint's config.json, or "" when it has none (fp32).
std::string checkpoint_quantization(const std::string& dir);

}  // namespace moe
