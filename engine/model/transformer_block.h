#pragma once
// One decoder layer: x += attn(input_layernorm(x)); x += ffn(post_attention_layernorm(x)),
// with a dense SwiGLU FFN for the first `first_k_dense_replace` layers and DeepSeekMoE after.
#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/mla_attention.h"
#include "model/moe_layer.h"
#include "model/parameters.h"
#include "model/swiglu_ffn.h"

namespace moe {

class TransformerBlock {
public:
    // prefix: "model.layers.<index>"
    TransformerBlock(ParameterStore& store, const std::string& prefix, int64_t layer_index,
                     const ModelConfig& cfg, const PrecisionContext* precision = nullptr);

    // x [B*T, D] (kept by pointer until backward) -> output() [B*T, D]. Returns the balance
    // loss of this layer's MoE (0 for dense layers).
    double forward(Backend& be, const float* x, int64_t B, int64_t T, const int32_t* positions,
                   RoutingRecord* probe);
    // dx += d/dx given d output.
    void backward(Backend& be, const float* d_out, float* dx);

    const Tensor& output() const { return out_; }
    MoeLayer* moe() { return moe_.get(); }
    MlaAttention& attention() { return attn_; }
    const MlaAttention& attention() const { return attn_; }
    bool is_moe() const { return moe_ != nullptr; }
    // Near-zero SwiGLU outputs of this block's FFN (dense or MoE) in the last forward.
    NearZeroCount ffn_near_zero(float threshold) const;

private:
    int64_t D_;
    float eps_;
    Parameter* attn_norm_;
    Parameter* ffn_norm_;
    MlaAttention attn_;
    std::unique_ptr<SwiGluFfn> dense_;
    std::unique_ptr<MoeLayer> moe_;

    const float* x_ = nullptr;
    int64_t n_ = 0;
    Tensor h1_, rstd1_, attn_out_, mid_, h2_, rstd2_, ffn_out_, out_;
    Tensor d_mid_, d_h1_, d_h2_;
};

}  // namespace moe
