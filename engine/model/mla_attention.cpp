#include "model/mla_attention.h"

#include <algorithm>
#include <cmath>
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
    if (cfg.index_topk > 0) {
        index_topk_ = cfg.index_topk;
        HI_ = cfg.index_n_heads;
        dI_ = cfg.index_head_dim;
        iq_ = qr_ > 0 ? &store.add(prefix + ".indexer.wq_b.weight", {HI_ * dI_, qr_})
                      : &store.add(prefix + ".indexer.wq.weight", {HI_ * dI_, D_});
        ik_ = &store.add(prefix + ".indexer.wk.weight", {dI_, D_});
        iw_ = &store.add(prefix + ".indexer.weights_proj.weight", {HI_, D_});
    }
}

std::vector<int32_t> MlaAttention::selected_keys() const {
    return sparse_forward_ ? sel_.to_host() : std::vector<int32_t>{};
}

// The indexer's queries qi_ [n, HI*dI] and weights wi_ [n, HI] of the rows h (project_queries
// has run: qa_n_ is the q latent), and its keys into ki_out [n, dI]; RoPE on the last dr dims.
void MlaAttention::index_project(Backend& be, const float* h, int64_t n, const int32_t* positions,
                                 float* ki_out) {
    qi_.resize({n, HI_ * dI_});
    wi_.resize({n, HI_});
    projection_forward(be, precision_, *iq_, qr_ > 0 ? qa_n_.data() : h, n, qr_ > 0 ? qr_ : D_,
                       HI_ * dI_, qi_.data());
    projection_forward(be, precision_, *ik_, h, n, D_, dI_, ki_out);
    projection_forward(be, precision_, *iw_, h, n, D_, HI_, wi_.data());
    be.rope(qi_.data(), n, HI_ * dI_, HI_, dI_, dI_ - dr_, dr_, positions, rope_, false);
    be.rope(ki_out, n, dI_, 1, dI_, dI_ - dr_, dr_, positions, rope_, false);
}

// q_, k_, v_ are formed: indexer scores, top-k keys, attention over them (or dense attention in
// the warm-up), and the indexer's loss with its score gradient for backward.
void MlaAttention::sparse_forward(Backend& be, int64_t B, int64_t T) {
    const int64_t n = B * T, dqk = dn_ + dr_;
    const float iscale = 1.0f / std::sqrt(static_cast<float>(dI_));
    ki_.resize({n, dI_});
    index_project(be, h_, n, positions_, ki_.data());
    iscores_.resize({B, T, T});
    be.indexer_scores_forward(qi_.data(), ki_.data(), wi_.data(), B, T, T, 0, HI_, dI_, iscale,
                              iscores_.data());
    d_iscores_.resize({B, T, T});
    fused_ = false;
    if (index_warmup_) {
        sparse_forward_ = false;
        sel_width_ = 0;
        probs_.resize({B, H_, T, T});
        be.attention_forward(q_.data(), k_.data(), v_.data(), B, T, H_, dqk, dv_, scale_, 0,
                             probs_.data(), o_.data());
        index_loss_ = be.indexer_loss(iscores_.data(), probs_.data(), nullptr, B, T, H_, 0, 1.0f,
                                      d_iscores_.data());
        return;
    }
    const int64_t K = std::min(index_topk_, T);
    sparse_forward_ = true;
    sel_width_ = K;
    sel_.resize(n * K);
    be.topk_keys(iscores_.data(), B, T, T, 0, K, sel_.data());
    sprobs_.resize({n, H_, K});
    be.sparse_attention_forward(q_.data(), k_.data(), v_.data(), sel_.data(), B, T, H_, dqk, dv_, K,
                                scale_, sprobs_.data(), o_.data());
    index_loss_ = be.indexer_loss(iscores_.data(), sprobs_.data(), sel_.data(), B, T, H_, K, 1.0f,
                                  d_iscores_.data());
    if (keep_probs_) {  // the dense attention the chosen keys replace, for the inspector
        probs_.resize({B, H_, T, T});
        dense_out_.resize({n, H_ * dv_});
        be.attention_forward(q_.data(), k_.data(), v_.data(), B, T, H_, dqk, dv_, scale_, 0,
                             probs_.data(), dense_out_.data());
    }
}

// The indexer's weights from its loss (d_iscores_); nothing flows into the model (detached).
void MlaAttention::index_backward(Backend& be) {
    const int64_t n = B_ * T_;
    const float iscale = 1.0f / std::sqrt(static_cast<float>(dI_));
    d_qi_.resize({n, HI_ * dI_});
    d_ki_.resize({n, dI_});
    d_wi_.resize({n, HI_});
    d_qi_.zero();
    d_ki_.zero();
    d_wi_.zero();
    be.indexer_scores_backward(d_iscores_.data(), qi_.data(), ki_.data(), wi_.data(), B_, T_, T_, 0,
                               HI_, dI_, iscale, d_qi_.data(), d_ki_.data(), d_wi_.data());
    be.rope(d_qi_.data(), n, HI_ * dI_, HI_, dI_, dI_ - dr_, dr_, positions_, rope_, true);
    be.rope(d_ki_.data(), n, dI_, 1, dI_, dI_ - dr_, dr_, positions_, rope_, true);
    projection_backward(be, precision_, *iq_, d_qi_.data(), qr_ > 0 ? qa_n_.data() : h_, n,
                        qr_ > 0 ? qr_ : D_, HI_ * dI_, nullptr);
    projection_backward(be, precision_, *ik_, d_ki_.data(), h_, n, D_, dI_, nullptr);
    projection_backward(be, precision_, *iw_, d_wi_.data(), h_, n, D_, HI_, nullptr);
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
        if (B != 1)
            throw Error("MLA with a KV cache: one sequence at a time, got " + std::to_string(B));
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
    if (index_topk_ > 0) {
        sparse_forward(be, B, T);
        projection_forward(be, precision_, *o_proj_, o_.data(), n, H_ * dv_, D_, out);
        return;
    }
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
    int64_t K = 0;
    if (index_topk_ > 0) {
        if (!cache_.index_key)
            throw Error(
                "MLA KV cache: the model has sparse attention but the cache no indexer keys");
        float* ki = cache_.index_key->data();
        index_project(be, h, n, positions, ki + start * dI_);
        iscores_.resize({n, T});
        be.indexer_scores_forward(qi_.data(), ki, wi_.data(), 1, n, T, start, HI_, dI_,
                                  1.0f / std::sqrt(static_cast<float>(dI_)), iscores_.data());
        K = std::min(index_topk_, T);
        sel_.resize(n * K);
        be.topk_keys(iscores_.data(), 1, n, T, start, K, sel_.data());
    }

    // Absorbed attention. kv_b_proj [H * (dn + dv), kr]: head hd's key rows W_UK [dn, kr] and
    // value rows W_UV [dv, kr].
    const float* wkv = kv_b_proj_->value.data();
    q_lat_.resize({n * H_, kr_});
    for (int64_t hd = 0; hd < H_; ++hd)
        be.gemm(false, false, n, kr_, dn_, 1.0f, q_.data() + hd * dqk, H_ * dqk,
                wkv + hd * kvb * kr_, kr_, 0.0f, q_lat_.data() + hd * kr_, H_ * kr_);
    scores_.resize({n * H_, T});
    be.gemm(false, true, n * H_, T, kr_, 1.0f, q_lat_.data(), kr_, c, kr_, 0.0f, scores_.data(), T);
    be.gemm(false, true, n * H_, T, dr_, 1.0f, q_.data() + dn_, dqk, kpe, dr_, 1.0f, scores_.data(),
            T);
    if (K > 0) be.mask_unselected_keys(scores_.data(), n, H_, T, sel_.data(), K);
    be.causal_softmax(scores_.data(), n, H_, T, start, window_, scale_);
    o_lat_.resize({n * H_, kr_});
    be.gemm(false, false, n * H_, kr_, T, 1.0f, scores_.data(), T, c, kr_, 0.0f, o_lat_.data(),
            kr_);
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
    if (sparse_forward_)
        be.sparse_attention_backward(d_o_.data(), q_.data(), k_.data(), v_.data(), sprobs_.data(),
                                     sel_.data(), B_, T_, H_, dqk, dv_, sel_width_, scale_,
                                     d_q_.data(), d_k_.data(), d_v_.data());
    else if (fused_)
        be.fused_attention_backward(d_o_.data(), q_.data(), k_.data(), v_.data(), o_.data(),
                                    lse_.data(), B_, T_, H_, dqk, dv_, scale_, window_, d_q_.data(),
                                    d_k_.data(), d_v_.data(), attention_math());
    else
        be.attention_backward(d_o_.data(), q_.data(), k_.data(), v_.data(), probs_.data(), B_, T_,
                              H_, dqk, dv_, scale_, window_, d_q_.data(), d_k_.data(), d_v_.data());
    if (index_topk_ > 0) index_backward(be);

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
