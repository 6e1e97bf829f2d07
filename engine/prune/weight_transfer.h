#pragma once
// Fills a smaller model from a bigger one tensor by tensor: each parameter of the target names
// its source parameter and the rows and columns of it to take. The pruners (expert_pruning,
// channel_pruning) are this plus a rule for which rows and columns survive.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"

namespace moe {

struct TensorSelection {
    std::string source;         // parameter name in the source model
    std::vector<int64_t> rows;  // rows of the source (dim 0) to keep, in order; empty: all
    std::vector<int64_t> cols;  // columns (dim 1 of a matrix) to keep; empty: all
};

// select(target_name) -> where the target tensor comes from. Error naming the tensor when the
// source is missing, an index is out of range or the selected shape differs from the target's.
void transfer_weights(const Model& from, Model& to,
                      const std::function<TensorSelection(const std::string&)>& select);

// Parses "model.layers.L.<rest>" into L and rest; false for other names.
bool split_layer_name(const std::string& name, int64_t& layer, std::string& rest);

}  // namespace moe
