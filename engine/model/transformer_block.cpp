#include "model/transformer_block.h"

namespace moe {

TransformerBlock::TransformerBlock(ParameterStore& store, const std::string& prefix,
                                   int64_t layer_index, const ModelConfig& cfg,
                                   const PrecisionContext* precision)
    : D_(cfg.hidden_size),
      eps_(static_cast<float>(cfg.rms_norm_eps)),
      attn_norm_(&store.add(prefix + ".input_layernorm.weight", {cfg.hidden_size})),
      ffn_norm_(nullptr),
      attn_(store, prefix + ".self_attn", cfg, precision) {
    ffn_norm_ = &store.add(prefix + ".post_attention_layernorm.weight", {cfg.hidden_size});
    if (cfg.is_moe_layer(layer_index))
        moe_ = std::make_unique<MoeLayer>(store, prefix + ".mlp", layer_index, cfg, precision);
    else
        dense_ = std::make_unique<SwiGluFfn>(store, prefix + ".mlp", D_, cfg.intermediate_size,
                                             precision);
}

double TransformerBlock::forward(Backend& be, const float* x, int64_t B, int64_t T,
                                 const int32_t* positions, RoutingRecord* probe) {
    const int64_t n = B * T;
    x_ = x;
    n_ = n;
    for (Tensor* t : {&h1_, &attn_out_, &mid_, &h2_, &ffn_out_, &out_}) t->resize({n, D_});
    rstd1_.resize({n});
    rstd2_.resize({n});

    be.rmsnorm_forward(x, D_, attn_norm_->value.data(), n, D_, eps_, h1_.data(), D_,
                       rstd1_.data());
    attn_.forward(be, h1_.data(), B, T, positions, attn_out_.data());
    // mid = x + attn; h2 = norm2(mid): one pass on backends that fuse it.
    be.residual_rmsnorm_forward(x, attn_out_.data(), ffn_norm_->value.data(), n, D_, eps_,
                                mid_.data(), h2_.data(), rstd2_.data());
    double aux = 0.0;
    if (moe_)
        aux = moe_->forward(be, h2_.data(), B, T, probe, ffn_out_.data());
    else
        dense_->forward(be, h2_.data(), n, ffn_out_.data());
    be.residual_add(mid_.data(), ffn_out_.data(), n * D_, out_.data());
    return aux;
}

void TransformerBlock::backward(Backend& be, const float* d_out, float* dx) {
    const int64_t n = n_;
    for (Tensor* t : {&d_mid_, &d_h1_, &d_h2_}) {
        t->resize({n, D_});
        t->zero();
    }
    // out = mid + ffn(norm2(mid))
    be.copy_2d(d_out, D_, d_mid_.data(), D_, n, D_);
    if (moe_)
        moe_->backward(be, d_out, d_h2_.data());
    else
        dense_->backward(be, d_out, d_h2_.data());
    be.rmsnorm_backward(d_h2_.data(), D_, mid_.data(), D_, ffn_norm_->value.data(),
                        rstd2_.data(), n, D_, d_mid_.data(), D_, ffn_norm_->grad.data());
    // mid = x + attn(norm1(x))
    be.add_2d(d_mid_.data(), D_, dx, D_, n, D_);
    attn_.backward(be, d_mid_.data(), d_h1_.data());
    be.rmsnorm_backward(d_h1_.data(), D_, x_, D_, attn_norm_->value.data(), rstd1_.data(), n, D_,
                        dx, D_, attn_norm_->grad.data());
}

NearZeroCount TransformerBlock::ffn_near_zero(float threshold) const {
    if (moe_) return moe_->near_zero(threshold);
    return count_near_zero(dense_->hidden(), dense_->hidden().numel(), threshold);
}

}  // namespace moe
