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

// Memory: a store made with `deferred` only records shapes in add(); pack() then places every
// value in one arena and every gradient in another, on the allocator's device, each parameter
// a named view. The arenas are ordered [trainable matrices | trainable vectors | buffers], so
// the optimizer updates the weight-decayed and the undecayed parameters in two calls and the
// gradient norm and zeroing are one call each, whatever the number of tensors (thousands of
// experts). A store made without `deferred` allocates each tensor on the host in add() (the
// layer tests use it so); pack() moves such a store into arenas too.
class ParameterStore {
public:
    explicit ParameterStore(bool deferred = false) : deferred_(deferred) {}
    ParameterStore(const ParameterStore&) = delete;
    ParameterStore& operator=(const ParameterStore&) = delete;

    // Adds a zero-filled parameter; throws if the name is already taken. The returned reference
    // stays valid for the store's lifetime (parameters are never moved).
    Parameter& add(const std::string& name, const Shape& shape, bool trainable = true);

    // Places values and gradients in arenas of `allocator`'s memory (zero-filled, or the
    // values so far when they were allocated). Once only; add() after pack() throws.
    void pack(Allocator& allocator);
    bool packed() const { return packed_; }
    // The arenas (packed stores only): values of every parameter; gradients of the trainable
    // ones, the first decayed_numel() of them those of matrices.
    Tensor& value_arena() { return values_; }
    const Tensor& value_arena() const { return values_; }
    Tensor& grad_arena() { return grads_; }
    const Tensor& grad_arena() const { return grads_; }
    int64_t decayed_numel() const { return decayed_numel_; }

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
    bool deferred_ = false;
    bool packed_ = false;
    Tensor values_, grads_;
    int64_t decayed_numel_ = 0;
    std::vector<std::unique_ptr<Parameter>> owned_;
    std::vector<Parameter*> order_;
    std::map<std::string, Parameter*> by_name_;
};

}  // namespace moe
