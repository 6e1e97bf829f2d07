#include "model/mla_attention.h"

#include <string>

#include "core/error.h"
#include "model/projection.h"
#include "model/rope_params.h"

namespace moe {

MlaAttention::MlaAttention(ParameterStore& store, const std::string& prefix, const ModelConfig& cfg,
                           const PrecisionContext* precision)
    : D_(cfg.hidden_size),
      H_(cfg.num_attention_heads),
      dn_(cfg.qk_nope_head_dim),
      dr_(cfg.qk_rope_head_dim),
      dv_(cfg.v_head_dim),
      qr_(cfg.q_lora_rank),
      kr_(cfg.kv_lora_rank),
      eps_(static_cast<float>(cfg.rms_norm_eps)),
      rope_(rope_params(cfg)),
      scale_(static_cast<float>(cfg.attention_scale())),
      precision_(precision),
      window_(cfg.sliding_window) {
    const int64_t dqk = dn_ + dr_;
    if (qr_ > 0) {
        q_a_proj_ = &store.add(prefix + ".q_a_proj.weight", {qr_, D_});
        q_a_norm_ = &store.add(prefix + ".q_a_layernorm.weight", {qr_});
        q_b_proj_ = &store.add(prefix + ".q_b_proj.weight", {H_ * dqk, qr_});
    } else {
        q_proj_ = &store.add(prefix + ".q_proj.weight", {H_ * dqk, D_});
    }
    kv_a_proj_ = &store.add(prefix + ".kv_a_proj_with_mqa.weight", {kr_ + dr_, D_});
    kv_a_norm_ = &store.add(prefix + ".kv_a_layernorm.weight", {kr_});
    kv_b_proj_ = &store.add(prefix + ".kv_b_proj.weight", {H_ * (dn_ + dv_), kr_});
    o_proj_ = &store.add(prefix + ".o_proj.weight", {D_, H_ * dv_});
}

// Queries q_ [n, H*dqk]: through the low-rank path (q_a, its norm, q_b) or the plain q_proj.
void MlaAttention::project_queries(Backend& be, const float* h, int64_t n) {
    const int64_t dqk = dn_ + dr_;
    q_.resize({n, H_ * dqk});
    if (qr_ > 0) {
        qa_.resize({n, qr_});
        qa_n_.resize({n, qr_});
        q_rstd_.resize({n});
        projection_forward(be, precision_, *q_a_proj_, h, n, D_, qr_, qa_.data());
        be.rmsnorm_forward(qa_.data(), qr_, q_a_norm_->value.data(), n, qr_, eps_, qa_n_.data(),
                           qr_, q_rstd_.data());
        projection_forward(be, precision_, *q_b_proj_, qa_n_.data(), n, qr_, H_ * dqk, q_.data());
    } else {
        projection_forward(be, precision_, *q_proj_, h, n, D_, H_ * dqk, q_.data());
    }
}

void MlaAttention::forward(Backend& be, const float* h, int64_t B, int64_t T,
                           const int32_t* positions, float* out) {
    if (cache_.latent) {
        if (B != 1) throw Error("MLA with a KV cache: one sequence at a time, got " + std::to_string(B));
        forward_cached(be, h, T, positions, out);
        return;
    }
    const int64_t n = B * T, dqk = dn_ + dr_, kvw = kr_ + dr_, kvb = dn_ + dv_;
    h_ = h;
    positions_ = positions;
    B_ = B;
    T_ = T;

    project_queries(be, h, n);

    // Compressed latent and the shared rotary key: kva = [c | k_pe], [n, kr + dr].
    kva_.resize({n, kvw});
    projection_forward(be, precision_, *kv_a_proj_, h, n, D_, kvw, kva_.data());
    c_n_.resize({n, kr_});
    kv_rstd_.resize({n});
    be.rmsnorm_forward(kva_.data(), kvw, kv_a_norm_->value.data(), n, kr_, eps_, c_n_.data(), kr_,
                       kv_rstd_.data());
    kv_.resize({n, H_ * kvb});
    projection_forward(be, precision_, *kv_b_proj_, c_n_.data(), n, kr_, H_ * kvb, kv_.data());

    // RoPE on every head's q_pe (in place) and on the one k_pe.
    be.rope(q_.data(), n, H_ * dqk, H_, dqk, dn_, dr_, positions, rope_, false);
    kpe_.resize({n, dr_});
    be.copy_2d(kva_.data() + kr_, kvw, kpe_.data(), dr_, n, dr_);
    be.rope(kpe_.data(), n, dr_, 1, dr_, 0, dr_, positions, rope_, false);

    // Per-head keys [n, H, dqk] = [k_nope_h | k_pe] and values [n, H, dv].
    k_.resize({n, H_ * dqk});
    v_.resize({n, H_ * dv_});
    for (int64_t hd = 0; hd < H_; ++hd) {
        be.copy_2d(kv_.data() + hd * kvb, H_ * kvb, k_.data() + hd * dqk, H_ * dqk, n, dn_);
        be.copy_2d(kpe_.data(), dr_, k_.data() + hd * dqk + dn_, H_ * dqk, n, dr_);
        be.copy_2d(kv_.data() + hd * kvb + dn_, H_ * kvb, v_.data() + hd * dv_, H_ * dv_, n, dv_);
    }

    o_.resize({n, H_ * dv_});
    fused_ = be.prefers_fused_attention() && !keep_probs_;
    if (fused_) {
        lse_.resize({B, H_, T});
        be.fused_attention_forward(q_.data(), k_.data(), v_.data(), B, T, H_, dqk, dv_, scale_,
                                   window_, lse_.data(), o_.data(), attention_math());
    } else {
        probs_.resize({B, H_, T, T});
        be.attention_forward(q_.data(), k_.data(), v_.data(), B, T, H_, dqk, dv_, scale_, window_,
                             probs_.data(), o_.data());
    }
    projection_forward(be, precision_, *o_proj_, o_.data(), n, H_ * dv_, D_, out);
}

void MlaAttention::forward_cached(Backend& be, const float* h, int64_t n, const int32_t* positions,
                                  float* out) {
    const int64_t dqk = dn_ + dr_, kvw = kr_ + dr_, kvb = dn_ + dv_;
    const int64_t start = cache_.start, T = start + n;
    if (T > cache_.latent->dim(0))
        throw Error("MLA KV cache: positions up to " + std::to_string(T) + " do not fit its " +
                    std::to_string(cache_.latent->dim(0)));
    project_queries(be, h, n);  // as in training
    be.rope(q_.data(), n, H_ * dqk, H_, dqk, dn_, dr_, positions, rope_, false);
    // The new tokens' cache rows: normalized latent and rotated shared key.
    kva_.resize({n, kvw});
    projection_forward(be, precision_, *kv_a_proj_, h, n, D_, kvw, kva_.data());
    kv_rstd_.resize({n});
    float* c = cache_.latent->data();
    float* kpe = cache_.rope_key->data();
    be.rmsnorm_forward(kva_.data(), kvw, kv_a_norm_->value.data(), n, kr_, eps_, c + start * kr_,
                       kr_, kv_rstd_.data());
    be.copy_2d(kva_.data() + kr_, kvw, kpe + start * dr_, dr_, n, dr_);
    be.rope(kpe + start * dr_, n, dr_, 1, dr_, 0, dr_, positions, rope_, false);

    // Absorbed attention. kv_b_proj [H * (dn + dv), kr]: head hd's key rows W_UK [dn, kr] and
    // value rows W_UV [dv, kr].
    const float* wkv = kv_b_proj_->value.data();
    q_lat_.resize({n * H_, kr_});
    for (int64_t hd = 0; hd < H_; ++hd)
        be.gemm(false, false, n, kr_, dn_, 1.0f, q_.data() + hd * dqk, H_ * dqk, wkv + hd * kvb * kr_,
                kr_, 0.0f, q_lat_.data() + hd * kr_, H_ * kr_);
    scores_.resize({n * H_, T});
    be.gemm(false, true, n * H_, T, kr_, 1.0f, q_lat_.data(), kr_, c, kr_, 0.0f, scores_.data(), T);
    be.gemm(false, true, n * H_, T, dr_, 1.0f, q_.data() + dn_, dqk, kpe, dr_, 1.0f, scores_.data(), T);
    be.causal_softmax(scores_.data(), n, H_, T, start, window_, scale_);
    o_lat_.resize({n * H_, kr_});
    be.gemm(false, false, n * H_, kr_, T, 1.0f, scores_.data(), T, c, kr_, 0.0f, o_lat_.data(), kr_);
    o_.resize({n, H_ * dv_});
    for (int64_t hd = 0; hd < H_; ++hd)
        be.gemm(false, true, n, dv_, kr_, 1.0f, o_lat_.data() + hd * kr_, H_ * kr_,
                wkv + (hd * kvb + dn_) * kr_, kr_, 0.0f, o_.data() + hd * dv_, H_ * dv_);
    projection_forward(be, precision_, *o_proj_, o_.data(), n, H_ * dv_, D_, out);
}

void MlaAttention::backward(Backend& be, const float* dout, float* dh) {
    const int64_t n = B_ * T_, dqk = dn_ + dr_, kvw = kr_ + dr_, kvb = dn_ + dv_;

    d_o_.resize({n, H_ * dv_});
    d_o_.zero();
    projection_backward(be, precision_, *o_proj_, dout, o_.data(), n, H_ * dv_, D_, d_o_.data());

    d_q_.resize({n, H_ * dqk});
    d_k_.resize({n, H_ * dqk});
    d_v_.resize({n, H_ * dv_});
    d_q_.zero();
    d_k_.zero();
    d_v_.zero();
    if (fused_)
        be.fused_attention_backward(d_o_.data(), q_.data(), k_.data(), v_.data(), o_.data(),
                                    lse_.data(), B_, T_, H_, dqk, dv_, scale_, window_, d_q_.data(),
                                    d_k_.data(), d_v_.data(), attention_math());
    else
        be.attention_backward(d_o_.data(), q_.data(), k_.data(), v_.data(), probs_.data(), B_, T_,
                              H_, dqk, dv_, scale_, window_, d_q_.data(), d_k_.data(), d_v_.data());

    // Split the per-head key/value gradients back into kv_b's output and the shared k_pe.
    d_kv_.resize({n, H_ * kvb});
    d_kpe_.resize({n, dr_});
    d_kv_.zero();
    d_kpe_.zero();
    for (int64_t hd = 0; hd < H_; ++hd) {
        be.add_2d(d_k_.data() + hd * dqk, H_ * dqk, d_kv_.data() + hd * kvb, H_ * kvb, n, dn_);
        be.add_2d(d_k_.data() + hd * dqk + dn_, H_ * dqk, d_kpe_.data(), dr_, n, dr_);
        be.add_2d(d_v_.data() + hd * dv_, H_ * dv_, d_kv_.data() + hd * kvb + dn_, H_ * kvb, n,
                  dv_);
    }
    // RoPE is a rotation: its backward rotates the gradient back.
    be.rope(d_kpe_.data(), n, dr_, 1, dr_, 0, dr_, positions_, rope_, true);
    be.rope(d_q_.data(), n, H_ * dqk, H_, dqk, dn_, dr_, positions_, rope_, true);

    // kv path.
    d_cn_.resize({n, kr_});
    d_cn_.zero();
    projection_backward(be, precision_, *kv_b_proj_, d_kv_.data(), c_n_.data(), n, kr_, H_ * kvb,
                        d_cn_.data());
    d_kva_.resize({n, kvw});
    d_kva_.zero();
    be.rmsnorm_backward(d_cn_.data(), kr_, kva_.data(), kvw, kv_a_norm_->value.data(),
                        kv_rstd_.data(), n, kr_, d_kva_.data(), kvw, kv_a_norm_->grad.data());
    be.add_2d(d_kpe_.data(), dr_, d_kva_.data() + kr_, kvw, n, dr_);
    projection_backward(be, precision_, *kv_a_proj_, d_kva_.data(), h_, n, D_, kvw, dh);

    // q path.
    if (qr_ > 0) {
        d_qan_.resize({n, qr_});
        d_qan_.zero();
        projection_backward(be, precision_, *q_b_proj_, d_q_.data(), qa_n_.data(), n, qr_, H_ * dqk,
                            d_qan_.data());
        d_qa_.resize({n, qr_});
        d_qa_.zero();
        be.rmsnorm_backward(d_qan_.data(), qr_, qa_.data(), qr_, q_a_norm_->value.data(),
                            q_rstd_.data(), n, qr_, d_qa_.data(), qr_, q_a_norm_->grad.data());
        projection_backward(be, precision_, *q_a_proj_, d_qa_.data(), h_, n, D_, qr_, dh);
    } else {
        projection_backward(be, precision_, *q_proj_, d_q_.data(), h_, n, D_, H_ * dqk, dh);
    }
}

}  // namespace moe
