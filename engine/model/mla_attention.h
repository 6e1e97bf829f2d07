#pragma once
// Multi-head Latent Attention (spec section 2), in the naive (training) form:
//   q  = q_b_proj(q_a_layernorm(q_a_proj(h)))        or q_proj(h) when q_lora_rank == 0
//   [c | k_pe] = kv_a_proj_with_mqa(h);  kv = kv_b_proj(kv_a_layernorm(c))
//   per head: q = [q_nope | q_pe], k = [k_nope | k_pe (shared by all heads)], v
//   RoPE (interleaved pairs) on q_pe and k_pe; causal softmax(q.k * scale) v; o_proj.
//   With sliding_window W > 0 a query sees only its W most recent keys (itself included).
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
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

    // Generation: with a cache set, forward (B = 1, T = n new tokens at positions start ..
    // start + n - 1) writes the new tokens' latent and rotated key into the cache rows
    // [start, start + n) and attends over rows [0, start + n) in the absorbed form: queries are
    // taken into the latent space through kv_b_proj's key half (q_lat = q_nope W_UK), scores are
    // q_lat . c + q_pe . k_pe, the output latent goes back out through the value half (W_UV):
    // the per-head keys and values are never formed. Inference only (no backward). Null ends it.
    struct Cache {
        Tensor* latent = nullptr;    // [capacity, kv_lora_rank]
        Tensor* rope_key = nullptr;  // [capacity, qk_rope_head_dim]
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
