#pragma once
// Multi-head Latent Attention (spec section 2), in the naive (training) form:
//   q  = q_b_proj(q_a_layernorm(q_a_proj(h)))        or q_proj(h) when q_lora_rank == 0
//   [c | k_pe] = kv_a_proj_with_mqa(h);  kv = kv_b_proj(kv_a_layernorm(c))
//   per head: q = [q_nope | q_pe], k = [k_nope | k_pe (shared by all heads)], v
//   RoPE (interleaved pairs) on q_pe and k_pe; causal softmax(q.k * scale) v; o_proj.
//   With sliding_window W > 0 a query sees only its W most recent keys (itself included).
//   With index_topk K > 0 (dynamic top-k sparse attention, DeepSeek-V3.2's DSA) a lightweight
//   indexer scores every causal key of a query,
//     I[t, s] = sum_j w[t, j] * relu(qi[t, j] . ki[s] / sqrt(index_head_dim)),
//     qi = indexer.wq_b(q latent) (indexer.wq(h) without q_lora_rank), ki = indexer.wk(h),
//     w = indexer.weights_proj(h), RoPE on the last qk_rope_head_dim dims of qi and ki,
//   and each query attends to its K best keys only (shared by the heads). The indexer is trained
//   by its own objective, KL(main attention summed over heads || softmax(I)) over the query's
//   keys, with its inputs and the target detached (it sends no gradient into the model); its
//   gradients come from that loss alone. In the dense warm-up (set_index_warmup) attention is
//   dense and the indexer learns from every causal key.
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/index_buffer.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/linear_precision.h"
#include "model/parameters.h"

namespace moe {

class MlaAttention {
public:
    MlaAttention(ParameterStore& store, const std::string& prefix, const ModelConfig& cfg,
                 const PrecisionContext* precision = nullptr);

    // h [B*T, D] (kept by pointer until backward) -> out [B*T, D] (overwritten).
    // positions [B*T]: each token's position in its sequence.
    void forward(Backend& be, const float* h, int64_t B, int64_t T, const int32_t* positions,
                 float* out);
    // dh [B*T, D] += d/dh given dout.
    void backward(Backend& be, const float* dout, float* dh);

    // Attention weights of the last forward, [B, H, T, T] (for the routing inspector). Kept
    // only when asked (set_keep_probs) or when the backend does not prefer fused attention;
    // otherwise the forward runs Backend::fused_attention_* and keeps each query's log-sum-exp.
    const Tensor& probs() const { return probs_; }
    void set_keep_probs(bool keep) { keep_probs_ = keep; }

    // Sparse attention (index_topk > 0). With keep_probs, probs() is the dense attention the
    // chosen keys replace (computed for the inspector only) and selected_keys() the keys of the
    // last forward, [B, T, K] with K = min(index_topk, T), -1 padded; empty otherwise.
    bool sparse() const { return index_topk_ > 0; }
    std::vector<int32_t> selected_keys() const;
    int64_t selected_width() const { return sel_width_; }
    // The indexer's KL loss of the last forward (0 for dense attention); backward() adds its
    // gradient to the indexer's weights.
    double indexer_loss() const { return index_loss_; }
    // Dense warm-up: attention over every causal key, the indexer trained toward it.
    void set_index_warmup(bool warmup) { index_warmup_ = warmup; }

    // Generation: with a cache set, forward (B = 1, T = n new tokens at positions start ..
    // start + n - 1) writes the new tokens' latent and rotated key into the cache rows
    // [start, start + n) and attends over rows [0, start + n) in the absorbed form: queries are
    // taken into the latent space through kv_b_proj's key half (q_lat = q_nope W_UK), scores are
    // q_lat . c + q_pe . k_pe, the output latent goes back out through the value half (W_UV):
    // the per-head keys and values are never formed. Inference only (no backward). Null ends it.
    struct Cache {
        Tensor* latent = nullptr;    // [capacity, kv_lora_rank]
        Tensor* rope_key = nullptr;  // [capacity, qk_rope_head_dim]
        Tensor* index_key = nullptr; // [capacity, index_head_dim], with index_topk > 0
        int64_t start = 0;
    };
    void set_cache(const Cache* cache) { cache_ = cache ? *cache : Cache{}; }

private:
    int64_t D_, H_, dn_, dr_, dv_, qr_, kr_;
    float eps_;
    RopeParams rope_;
    float scale_;
    const PrecisionContext* precision_;  // of the projections (null: fp32)
    AttentionMath attention_math() const {
        return precision_ ? precision_->recipe.attention : AttentionMath::Fp32;
    }
    int64_t window_;  // sliding window (config.sliding_window), 0 = full causal
    Parameter* q_proj_ = nullptr;  // q_lora_rank == 0
    Parameter* q_a_proj_ = nullptr;
    Parameter* q_a_norm_ = nullptr;
    Parameter* q_b_proj_ = nullptr;
    Parameter* kv_a_proj_ = nullptr;
    Parameter* kv_a_norm_ = nullptr;
    Parameter* kv_b_proj_ = nullptr;
    Parameter* o_proj_ = nullptr;
    // The sparse attention indexer (index_topk > 0).
    int64_t index_topk_ = 0, HI_ = 0, dI_ = 0;
    Parameter* iq_ = nullptr;  // indexer.wq_b (from the q latent) or indexer.wq (from h)
    Parameter* ik_ = nullptr;  // indexer.wk
    Parameter* iw_ = nullptr;  // indexer.weights_proj
    bool index_warmup_ = false;
    double index_loss_ = 0.0;
    int64_t sel_width_ = 0;    // K of the last forward
    bool sparse_forward_ = false;  // the last forward attended to chosen keys only
    void index_project(Backend& be, const float* h, int64_t n, const int32_t* positions,
                       float* ki_out);
    void sparse_forward(Backend& be, int64_t B, int64_t T);
    void index_backward(Backend& be);
    Tensor qi_, ki_, wi_, iscores_, d_iscores_, sprobs_, dense_out_, d_qi_, d_ki_, d_wi_;
    IndexBuffer sel_;

    // Forward state.
    const float* h_ = nullptr;
    const int32_t* positions_ = nullptr;
    int64_t B_ = 0, T_ = 0;
    bool keep_probs_ = false;
    void project_queries(Backend& be, const float* h, int64_t n);
    void forward_cached(Backend& be, const float* h, int64_t n, const int32_t* positions,
                        float* out);
    Cache cache_;
    Tensor q_lat_, scores_, o_lat_;
    bool fused_ = false;  // the last forward used fused attention (lse_ instead of probs_)
    Tensor qa_, qa_n_, q_rstd_, q_, kva_, c_n_, kv_rstd_, kv_, kpe_, k_, v_, probs_, lse_, o_;
    // Backward scratch.
    Tensor d_o_, d_q_, d_k_, d_v_, d_kv_, d_kpe_, d_kva_, d_cn_, d_qan_, d_qa_;
};

}  // namespace moe
