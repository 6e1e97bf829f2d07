#pragma once
// Backend: the ops the model is made of. The model never touches tensor data itself; it calls
// these, so the CPU implementation (backend/cpu) and the CUDA one (gpu/) are interchangeable.
//
// Conventions (all ops):
// - Row-major, fp32. Pointers are to the backend's memory (host for the CPU backend).
// - Every *_backward op ACCUMULATES (+=) into all of its gradient outputs, activation and
//   parameter gradients alike; callers zero buffers that start a gradient.
// - Results are deterministic: no atomics, fixed reduction order. The CPU backend's results
//   do not depend on its thread count either (cpu_backend.h).
// - Shapes are in the comments; T is tokens per sequence, B sequences, n = B*T token rows.
#include <cstdint>
#include <string>

#include "backend/attention_math.h"
#include "core/allocator.h"
#include "quant/block_scaling.h"

namespace moe {

enum class ScoringFunc { Sigmoid, Softmax };

// The router's settings for one MoE layer (spec section 3).
struct GateParams {
    int64_t n_experts = 0;          // E
    int64_t top_k = 0;              // K
    int64_t n_group = 1;
    int64_t topk_group = 1;
    ScoringFunc scoring = ScoringFunc::Sigmoid;
    bool norm_topk_prob = true;
    float routed_scaling_factor = 1.0f;
    const float* bias = nullptr;    // e_score_correction_bias [E], selection only; null = none
};

// Checks a gate's settings (positive E, 1 <= K <= E, groups that divide E, enough experts in
// the kept groups); Error "moe_gate: ..." naming the value otherwise. Every backend calls it
// before routing, so all report bad settings the same way.
void validate_gate_params(const GateParams& p);

// The operand casts of a grouped linear op (Backend::grouped_linear_*): gemm_quantized's specs
// for the row operand `a` (x or dy) and the other `b` (W, or x in wgrad). Null: fp32.
struct GroupedCasts {
    const BlockQuantSpec* a = nullptr;
    const BlockQuantSpec* b = nullptr;
    bool fp32() const { return !a && !b; }
};

// Rotary frequencies of one model (model/rope_params.h builds them from a config): pair i of a
// rope_dim-wide slice turns by pos * inv_freq(i), with
//   base(i) = theta^(-2i / rope_dim)
//   inv_freq(i) = base(i)                                      (factor <= 1: plain RoPE)
//   inv_freq(i) = base(i) * (1 - ramp(i)) + base(i) / factor * ramp(i)          (YaRN)
//   ramp(i) = clamp((i - ramp_low) / (ramp_high - ramp_low), 0, 1)
// and both cos and sin are multiplied by mscale (YaRN's attention temperature on the rotated
// part; 1 otherwise). Computed in double by every backend.
struct RopeParams {
    double theta = 10000.0;
    double factor = 1.0;
    double ramp_low = 0.0, ramp_high = 1.0;
    double mscale = 1.0;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual const char* name() const = 0;
    virtual void set_threads(int threads) = 0;
    virtual int threads() const = 0;
    // The memory every pointer an op takes lives in (host for the CPU backend). Model and
    // trainer allocate through it (DeviceScope, ParameterStore::pack).
    virtual Allocator& allocator() = 0;
    // Where results are; "cpu (2 threads)", "cuda:0 (NVIDIA H200, 139.8 GiB)".
    virtual std::string describe() const { return name(); }

    // C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C. transA: A is stored [K,M];
    // transB: B is stored [N,K] (the y = x W^T case). Leading dimensions are row strides.
    virtual void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc) = 0;

    // Low-precision GEMM of the precision modes: as gemm, but each operand is first cast the way
    // its spec says (quant/block_scaling.h: element format, tiles in the operand's STORED layout
    // - A is stored [M,K], or [K,M] when transA; B is [K,N], or [N,K] when transB - with one
    // scale per tile), then multiplied with fp32 accumulation. That is what an FP8 / BF16
    // tensor-core GEMM with DeepSeek's fine-grained scaling and promotion computes, up to the
    // order of the fp32 sums.
    virtual void gemm_quantized(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                                float alpha, const float* A, int64_t lda,
                                const BlockQuantSpec& a_spec, const float* B, int64_t ldb,
                                const BlockQuantSpec& b_spec, float beta, float* C,
                                int64_t ldc) = 0;

    // --- elementwise and copies ---
    // dst[r, 0:cols] (=|+=) src[r, 0:cols] for r < rows, with row strides (views into wider rows).
    virtual void copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                         int64_t rows, int64_t cols) = 0;
    virtual void add_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                        int64_t rows, int64_t cols) = 0;
    virtual void zero(float* x, int64_t n) = 0;
    virtual void scale(float* x, float alpha, int64_t n) = 0;
    // Sum in double with a fixed order, for losses.
    virtual double sum(const float* x, int64_t n) = 0;

    // --- embedding: out[t] = table[tokens[t]] ([n, dim]); backward dtable[tokens[t]] += dout[t]
    virtual void embedding_forward(const int32_t* tokens, int64_t n, const float* table,
                                   int64_t vocab, int64_t dim, float* out) = 0;
    virtual void embedding_backward(const int32_t* tokens, int64_t n, const float* dout,
                                    int64_t vocab, int64_t dim, float* dtable) = 0;

    // --- RMSNorm over each row: y = w * x * rstd, rstd = 1 / sqrt(mean(x^2) + eps).
    // rstd [rows] is saved for the backward pass. Strides allow normalizing a column slice.
    virtual void rmsnorm_forward(const float* x, int64_t x_stride, const float* w, int64_t rows,
                                 int64_t dim, float eps, float* y, int64_t y_stride,
                                 float* rstd) = 0;
    virtual void rmsnorm_backward(const float* dy, int64_t dy_stride, const float* x,
                                  int64_t x_stride, const float* w, const float* rstd,
                                  int64_t rows, int64_t dim, float* dx, int64_t dx_stride,
                                  float* dw) = 0;

    // --- Residual stream, fused (a decoder layer's two joints). Dense [rows, dim] rows.
    // residual_rmsnorm_forward: sum = a + b, then y = rmsnorm(sum) * w with rstd [rows] kept -
    // the residual add that ends the attention fused with the norm that starts the FFN.
    // residual_add: out = a + b (n values) - the add that ends the FFN. Host defaults
    // (backend/residual.cpp) are the unfused ops (copy_2d, add_2d, rmsnorm_forward), so a
    // backend that keeps them gives the same bits as before; CudaBackend has one kernel each.
    virtual void residual_rmsnorm_forward(const float* a, const float* b, const float* w,
                                          int64_t rows, int64_t dim, float eps, float* sum,
                                          float* y, float* rstd);
    virtual void residual_add(const float* a, const float* b, int64_t n, float* out);

    // --- Rotary embedding, in place, DeepSeek's interleaved convention: pair i is
    // (x[2i], x[2i+1]) rotated by angle pos * inv_freq(i) (RopeParams: theta^(-2i/rope_dim), or
    // YaRN's blend) and multiplied by rope.mscale. Applied to `heads` slices of rope_dim values
    // starting at column `offset` of each head; head h of row r starts at
    // x + r*row_stride + h*head_stride; positions [rows]. inverse rotates by -angle (still times
    // mscale), which is the backward pass (apply it to the gradient).
    virtual void rope(float* x, int64_t rows, int64_t row_stride, int64_t heads,
                      int64_t head_stride, int64_t offset, int64_t rope_dim,
                      const int32_t* positions, const RopeParams& rope, bool inverse) = 0;

    // --- Causal softmax attention, B sequences of T tokens, H heads, optional sliding window.
    // q, k: [n, H, dk]; v: [n, H, dv]; out: [n, H, dv]; probs: [B, H, T, T] saved for backward.
    // scores = q.k * scale, softmax in fp32 over the visible keys: query i sees key j iff
    // j <= i and (window == 0 or j > i - window), so window W means the W most recent keys,
    // itself included; 0 = full causal. Every masked entry of probs is exactly 0, and an
    // implementation should skip the work outside the band (that is the point of a window).
    virtual void attention_forward(const float* q, const float* k, const float* v, int64_t B,
                                   int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                   int64_t window, float* probs, float* out) = 0;
    // window must be the one of the forward pass that produced probs.
    virtual void attention_backward(const float* dout, const float* q, const float* k,
                                    const float* v, const float* probs, int64_t B, int64_t T,
                                    int64_t H, int64_t dk, int64_t dv, float scale,
                                    int64_t window, float* dq, float* dk_, float* dv_) = 0;

    // --- Fused (flash-style) attention: the function of attention_forward / _backward without
    // the [B, H, T, T] probabilities. lse [B, H, T] keeps each query's natural log-sum-exp of its
    // scaled visible scores; the backward recomputes the probabilities from q, k and lse, and
    // needs the forward's `out` (for D_t = dout_t . out_t). dq, dk_, dv_ accumulate, as in
    // attention_backward. prefers_fused_attention(): whether the model should use these (a GPU,
    // where [B, H, T, T] costs memory and bandwidth); the defaults below are plain loops on host
    // memory, the reference the device kernels are tested against.
    virtual bool prefers_fused_attention() const { return false; }
    // Masked softmax of cached attention scores (generation: model/mla_attention's absorbed
    // form). s [n*H, cols]: row r = i*H + h belongs to query i at position start + i and sees
    // the columns t <= start + i (and, with window > 0, only t > start + i - window); each row
    // becomes softmax(scale * s) over those columns and 0 elsewhere. A row sums in a fixed
    // order. Host default (backend/causal_softmax.cpp); CudaBackend has a kernel.
    virtual void causal_softmax(float* s, int64_t n, int64_t H, int64_t cols, int64_t start,
                                int64_t window, float scale);
    // Error "causal_softmax: ..." unless n queries from `start` fit `cols` columns (every
    // backend checks the same way).
    static void check_causal_softmax(int64_t n, int64_t H, int64_t cols, int64_t start);
    // A device backend may check indices (tokens, targets, experts) without waiting for the
    // device and report an invalid one here, or from the next op that returns a scalar; the
    // model calls it at the end of each forward pass. The CPU throws from the op itself.
    virtual void flush_checks() {}
    virtual void fused_attention_forward(const float* q, const float* k, const float* v,
                                         int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv,
                                         float scale, int64_t window, float* lse, float* out,
                                         AttentionMath math = AttentionMath::Fp32);
    virtual void fused_attention_backward(const float* dout, const float* q, const float* k,
                                          const float* v, const float* out, const float* lse,
                                          int64_t B, int64_t T, int64_t H, int64_t dk,
                                          int64_t dv, float scale, int64_t window, float* dq,
                                          float* dk_, float* dv_,
                                          AttentionMath math = AttentionMath::Fp32);

    // --- Dynamic top-k sparse attention (DeepSeek's sparse attention, model/mla_attention.h):
    // a lightweight indexer scores every causal key of a query, the top-k keys are chosen per
    // query (shared by all heads), and attention runs over those keys only. The host backend
    // implements these (backend/cpu/cpu_sparse_attention.cpp); the defaults throw an Error that
    // names the backend, so a device backend without kernels says so instead of failing later.
    //
    // Indexer scores of B sequences: queries i < Tq at positions start + i, keys s < Tk:
    //   I[b, i, s] = sum_j w[i, j] * relu(scale * qi[i, j] . ki[s])   for s <= start + i
    //   I[b, i, s] = -inf                                             otherwise.
    // qi [B*Tq, HI, dI]; ki [B*Tk, dI]; w [B*Tq, HI]; scores [B, Tq, Tk] (overwritten).
    // Whether this backend implements the ops below; the model refuses index_topk > 0 otherwise.
    virtual bool supports_sparse_attention() const { return false; }
    virtual void indexer_scores_forward(const float* qi, const float* ki, const float* w,
                                        int64_t B, int64_t Tq, int64_t Tk, int64_t start,
                                        int64_t HI, int64_t dI, float scale, float* scores);
    // Gradients of the scores (dscores [B, Tq, Tk], 0 where a key is not used), accumulated:
    // dqi [B*Tq, HI, dI], dki [B*Tk, dI], dw [B*Tq, HI].
    virtual void indexer_scores_backward(const float* dscores, const float* qi, const float* ki,
                                         const float* w, int64_t B, int64_t Tq, int64_t Tk,
                                         int64_t start, int64_t HI, int64_t dI, float scale,
                                         float* dqi, float* dki, float* dw);
    // idx [B, Tq, K]: the min(K, start + i + 1) causal keys of query i with the largest scores
    // (ties: the lower key index), in ascending key order, padded with -1. Deterministic.
    virtual void topk_keys(const float* scores, int64_t B, int64_t Tq, int64_t Tk, int64_t start,
                           int64_t K, int32_t* idx);
    // Causal attention of B sequences of T tokens over the selected keys idx [B, T, K] (from
    // topk_keys with start 0; -1 entries are skipped): per head h of query t,
    //   p[t, h, :] = softmax over the selected s of scale * q[t, h] . k[s, h];  out = sum p v[s, h].
    // q, k [B*T, H, dk]; v, out [B*T, H, dv]; probs [B*T, H, K] saved for the backward pass
    // (0 at padding). Work and memory are O(T * K), not O(T^2): the unselected keys are never
    // touched.
    virtual void sparse_attention_forward(const float* q, const float* k, const float* v,
                                          const int32_t* idx, int64_t B, int64_t T, int64_t H,
                                          int64_t dk, int64_t dv, int64_t K, float scale,
                                          float* probs, float* out);
    virtual void sparse_attention_backward(const float* dout, const float* q, const float* k,
                                           const float* v, const float* probs,
                                           const int32_t* idx, int64_t B, int64_t T, int64_t H,
                                           int64_t dk, int64_t dv, int64_t K, float scale,
                                           float* dq, float* dk_, float* dv_);
    // The indexer's training signal (spec: DeepSeek-V3.2's KL objective). Per query row r of
    // B*T, the target p_r is the main attention summed over the H heads and divided by H, over
    // the row's key set: the selected keys (idx [B, T, K], attention probs [B*T, H, K]) or, with
    // idx null (dense warm-up), every causal key (attention probs [B, H, T, T]). With
    // q_r = softmax of the row's indexer scores [B, T, T] over the same key set,
    //   loss = mean over rows of KL(p_r || q_r)   (returned),
    //   dscores[b, t, s] = grad_scale * (q_r(s) - p_r(s)) / (B * T) on the key set, 0 elsewhere
    //   (overwritten: the whole [B, T, T]).
    virtual double indexer_loss(const float* scores, const float* probs, const int32_t* idx,
                                int64_t B, int64_t T, int64_t H, int64_t K, float grad_scale,
                                float* dscores);
    // Generation: entries of s [n*H, cols] (row i*H + h of query i) whose column is not among
    // query i's selected keys idx [n, K] become -inf, so causal_softmax gives them weight 0.
    virtual void mask_unselected_keys(float* s, int64_t n, int64_t H, int64_t cols,
                                      const int32_t* idx, int64_t K);

    // --- SwiGLU: out = silu(g) * u over n values (g, u are the gate_proj and up_proj outputs).
    virtual void swiglu_forward(const float* g, const float* u, int64_t n, float* out) = 0;
    virtual void swiglu_backward(const float* dout, const float* g, const float* u, int64_t n,
                                 float* dg, float* du) = 0;

    // --- Cross-entropy, targets < 0 are ignored (loss 0, gradient 0).
    // losses[t] = logsumexp(logits[t]) - logits[t, targets[t]].
    virtual void cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n,
                                       int64_t vocab, float* losses) = 0;
    // dlogits[t] += scale * (softmax(logits[t]) - onehot(targets[t])).
    virtual void cross_entropy_backward(const float* logits, const int32_t* targets, int64_t n,
                                        int64_t vocab, float scale, float* dlogits) = 0;

    // --- MoE router (spec section 3), per token row of logits [n, E]:
    //   scores = sigmoid(logits) or softmax(logits)                       -> scores [n, E]
    //   sel = scores + bias
    //   n_group > 1: a group's score is the sum of its top-2 sel when bias is set, else its max;
    //     only the topk_group best groups stay eligible (ties: lower group index first)
    //   topk_idx [n, K]: the K eligible experts with the largest sel, in descending order of sel
    //     (ties: lower expert index first)
    //   topk_weight [n, K] = scores at those experts (unbiased); if norm_topk_prob they are
    //     divided by their sum (+1e-20); then multiplied by routed_scaling_factor.
    virtual void moe_gate_forward(const float* logits, int64_t n, const GateParams& p,
                                  float* scores, int32_t* topk_idx, float* topk_weight) = 0;
    // Gradient through the weights and scores into the logits (the choice of experts itself is
    // not differentiable). d_scores_extra [n, E] (may be null) is an additional gradient with
    // respect to scores, from the balance loss. dlogits [n, E] += result.
    virtual void moe_gate_backward(const float* d_topk_weight, const float* d_scores_extra,
                                   const float* scores, const int32_t* topk_idx,
                                   const float* topk_weight, int64_t n, const GateParams& p,
                                   float* dlogits) = 0;

    // Complementary sequence-wise balance loss (spec section 4), averaged over the B sequences:
    //   per sequence: f_i = E / (K*T) * #{t : i in topk_t}, P_i = mean_t s_{i,t} / sum_j s_{j,t}
    //   loss = alpha / B * sum_b sum_i f_i * P_i.   scores [B*T, E], topk_idx [B*T, K].
    virtual double seq_aux_loss_forward(const float* scores, const int32_t* topk_idx, int64_t B,
                                        int64_t T, int64_t E, int64_t K, float alpha) = 0;
    // d_scores [B*T, E] += dloss * d loss / d scores (gradient flows through P only).
    virtual void seq_aux_loss_backward(const float* scores, const int32_t* topk_idx, int64_t B,
                                       int64_t T, int64_t E, int64_t K, float alpha, float dloss,
                                       float* d_scores) = 0;

    // --- Token dispatch by expert (dropless). A "routed row" is one (token, slot) pair; there
    // are n*K of them. The plan groups them by expert, tokens ascending within an expert:
    //   offsets [E+1]: routed rows of expert e are [offsets[e], offsets[e+1])
    //   row_token [n*K]: the token of each routed row
    //   slot_row [n*K]: for token t and slot k, the routed row at index t*K + k
    // All three are in the backend's memory (a device's on a GPU: the host does not need the
    // plan, the grouped expert GEMMs below read the offsets where they are).
    virtual void moe_route_plan(const int32_t* topk_idx, int64_t n, int64_t K, int64_t E,
                                int64_t* offsets, int32_t* row_token, int32_t* slot_row) = 0;
    // xp[r] = x[row_token[r]] for r < rows; x [n, dim], xp [n*K, dim].
    virtual void moe_permute(const float* x, const int32_t* row_token, int64_t rows, int64_t dim,
                             float* xp) = 0;
    // dx[t] += sum_k dxp[slot_row[t*K + k]].
    virtual void moe_permute_backward(const float* dxp, const int32_t* slot_row, int64_t n,
                                      int64_t K, int64_t dim, float* dx) = 0;
    // y[t] += sum_k w[t, k] * yp[slot_row[t*K + k]].
    virtual void moe_unpermute(const float* yp, const float* w, const int32_t* slot_row,
                               int64_t n, int64_t K, int64_t dim, float* y) = 0;
    // dyp[slot_row[t*K+k]] += w[t,k] * dy[t];  dw[t,k] += dot(dy[t], yp[slot_row[t*K+k]]).
    virtual void moe_unpermute_backward(const float* dy, const float* yp, const float* w,
                                        const int32_t* slot_row, int64_t n, int64_t K,
                                        int64_t dim, float* dyp, float* dw) = 0;

    // --- Grouped linear layers: the routed experts of a layer in one call per projection.
    // Group g owns rows [offsets[g], offsets[g+1]) of the row buffers (offsets [groups+1], as
    // moe_route_plan writes them). `offsets` and the pointer tables `w` / `dw` ([groups]) are in
    // the backend's memory: a device backend never reads them on the host, so the step needs no
    // copy of the route plan. W_g is [out, in] row-major, as in linear_forward; `rows` =
    // offsets[groups] (the host knows it: n * K), offsets[0] = 0.
    //   forward:         y[r] = x[r] W_g^T        y [rows, out], overwritten
    //   backward_data:   dx[r] += dy[r] W_g       dx [rows, in]
    //   backward_weight: dW_g += dy_g^T x_g       every dW_g [out, in]; empty groups add nothing
    // casts: the operand casts of a low-precision projection (gemm_quantized's specs, applied
    // per group as projection_forward / _backward apply them per expert): `a` to x or dy, `b` to
    // W (forward, dgrad) or to x (wgrad). Null: fp32.
    // The defaults loop over the groups with gemm() / gemm_quantized() on host memory (the CPU
    // backend); each group's arithmetic is then that of a projection on its rows.
    virtual void grouped_linear_forward(const float* x, const int64_t* offsets, int64_t groups,
                                        int64_t rows, const float* const* w, int64_t in,
                                        int64_t out, float* y, const GroupedCasts& casts = {});
    virtual void grouped_linear_backward_data(const float* dy, const int64_t* offsets,
                                              int64_t groups, int64_t rows, const float* const* w,
                                              int64_t in, int64_t out, float* dx,
                                              const GroupedCasts& casts = {});
    virtual void grouped_linear_backward_weight(const float* dy, const float* x,
                                                const int64_t* offsets, int64_t groups,
                                                int64_t rows, float* const* dw, int64_t in,
                                                int64_t out, const GroupedCasts& casts = {});

    // --- optimizer and load balancing
    // sum(x^2) in double with a fixed order (global gradient norm for clipping).
    virtual double sum_squares(const float* x, int64_t n) = 0;
    // AdamW with decoupled weight decay, fp32 moments. g' = grad_scale * g (clipping and
    // gradient accumulation folded into one factor); with bc1 = 1 - beta1^step,
    // bc2 = 1 - beta2^step (step counts from 1):
    //   m = beta1 m + (1 - beta1) g';  v = beta2 v + (1 - beta2) g'^2
    //   p -= lr * ((m / bc1) / (sqrt(v / bc2) + eps) + weight_decay * p)
    virtual void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                              float beta1, float beta2, float eps, float weight_decay,
                              float grad_scale, int64_t step) = 0;
    // Auxiliary-loss-free balancing (spec section 4): with c the tokens each expert received
    // (host memory) and c_mean their mean, bias[i] += gamma * sign(c_mean - c[i]).
    virtual void balance_bias_update(float* bias, const int64_t* counts, int64_t n_experts,
                                     float gamma) = 0;
};

}  // namespace moe
