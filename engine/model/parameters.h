#pragma once
// ParameterStore: every tensor of a model under its HuggingFace name
// (e.g. "model.layers.3.mlp.experts.7.up_proj.weight"), with its gradient. Checkpoints, the
// optimizer and the GUI's model view all walk this one list, so names never need translating.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moe {

struct Parameter {
    std::string name;
    Tensor value;
    Tensor grad;            // same shape as value; empty for buffers
    bool trainable = true;  // false for buffers such as e_score_correction_bias
};

class ParameterStore {
public:
    ParameterStore() = default;
    ParameterStore(const ParameterStore&) = delete;
    ParameterStore& operator=(const ParameterStore&) = delete;

    // Adds a zero-filled parameter; throws if the name is already taken. The returned reference
    // stays valid for the store's lifetime (parameters are never moved).
    Parameter& add(const std::string& name, const Shape& shape, bool trainable = true);

    Parameter* find(const std::string& name);
    const Parameter* find(const std::string& name) const;
    Parameter& at(const std::string& name);  // throws Error naming the missing parameter
    const Parameter& at(const std::string& name) const;

    // In creation order (the model's natural order: embedding, layers, norm, head, MTP).
    const std::vector<Parameter*>& all() const { return order_; }

    void zero_grads();
    int64_t count_trainable() const;  // scalar count
    int64_t count_all() const;

private:
    std::vector<std::unique_ptr<Parameter>> owned_;
    std::vector<Parameter*> order_;
    std::map<std::string, Parameter*> by_name_;
};

}  // namespace moe
