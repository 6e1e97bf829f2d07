#pragma once
// QuantRecorder: measures what the precision mode's casts do to each quantized tensor during one
// recorded training step (weights, the activations multiplied by them, the output gradients),
// and turns the result into a run-file row. The projections call observe() with the operand and
// its cast spec while a recorder is set on the model's PrecisionContext; the recorder re-does the
// cast on its own copy, so recording never changes the training numbers.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "quant/block_scaling.h"
#include "quant/error_metrics.h"
#include "store/run_layout.h"

namespace moe {

enum class QuantRole { Weight, Activation, Gradient };
const char* to_string(QuantRole role);  // "weight", "activation", "gradient"

class QuantRecorder {
public:
    // keys: the tensors in run-file order (RunHeader::quant_tensors; their roles are part of the
    // key: "<weight>", "<weight>@input", "<weight>@grad").
    // scale_keys with their grid shapes: the tensors whose block scales a row keeps; an
    // observation whose grid has another shape (an expert's variable token count) is not kept.
    QuantRecorder(std::vector<std::string> keys, std::vector<std::string> scale_keys, std::vector<int64_t> scale_grid_rows,
                  std::vector<int64_t> scale_grid_cols);

    void begin();  // forgets the previous step's observations
    // One cast of a [rows, cols] operand (row stride ld). Observations of the same key within a
    // step (micro-batches) are merged. Keys not in the list are ignored.
    void observe(const std::string& key, const float* x, int64_t rows, int64_t cols, int64_t ld,
                 const BlockQuantSpec& spec);
    // The row for the run file; tensors not observed this step get zeros.
    QuantRow row(int64_t step) const;
    int64_t observed() const;  // keys observed since begin()

private:
    struct Accumulator {
        int64_t count = 0, saturated = 0, flushed = 0;
        double sum_x2 = 0, sum_e2 = 0;
        float amax = 0;
        Log2Histogram values, errors;
    };
    std::vector<std::string> keys_;
    std::unordered_map<std::string, size_t> index_;
    std::vector<Accumulator> acc_;
    std::vector<std::string> scale_keys_;
    std::vector<int64_t> grid_rows_, grid_cols_;
    std::vector<std::vector<float>> scales_;  // per scale key, the last observed grid
    std::vector<float> cast_, tile_scales_;   // scratch
};

}  // namespace moe
