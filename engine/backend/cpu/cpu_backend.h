#pragma once
// CpuBackend: the reference implementation of Backend on the host. GEMMs go to OpenBLAS; every
// other op is a plain loop parallelized with OpenMP over rows, tokens or (sequence, head) pairs.
//
// Determinism: each output element is written by exactly one thread, in an order fixed by the
// shapes alone. GEMMs are cut into output tiles fixed by the shape, each one serial OpenBLAS
// call; the cross-row reductions (rmsnorm dw, sum) use per-block partials combined in block
// order. So results are bitwise identical run to run AND for any thread count. Across CPUs
// only the GEMM tiles differ (OpenBLAS picks another kernel per CPU); the engine's own loops
// are plain C++ without FMA contraction and give the same bits on every x86-64.
//
// Allocation: scratch (partials, per-thread rows) lives in member buffers that grow only when a
// call needs more than before, so a training step in the steady state allocates nothing.
// Not thread-safe: one caller at a time per instance.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "backend/backend.h"

namespace moe {

class CpuBackend : public Backend {
public:
    explicit CpuBackend(int threads = 0);  // 0 = all cores

    const char* name() const override { return "cpu"; }
    void set_threads(int threads) override;
    int threads() const override { return threads_; }
    Allocator& allocator() override { return host_allocator(); }
    std::string describe() const override {
        return "cpu (" + std::to_string(threads_) + " threads)";
    }

    void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc) override;
    // The routed experts' GEMMs: every group's tiles in one parallel region (one fork/join per
    // projection instead of one per expert), each tile the serial call gemm() makes for that
    // group, so the results are bit for bit those of the per-group loop.
    // With casts (low precision), the per-group loop of Backend's defaults.
    void grouped_linear_forward(const float* x, const int64_t* offsets, int64_t groups,
                                int64_t rows, const float* const* w, int64_t in, int64_t out,
                                float* y, const GroupedCasts& casts = {}) override;
    void grouped_linear_backward_data(const float* dy, const int64_t* offsets, int64_t groups,
                                      int64_t rows, const float* const* w, int64_t in,
                                      int64_t out, float* dx,
                                      const GroupedCasts& casts = {}) override;
    void grouped_linear_backward_weight(const float* dy, const float* x, const int64_t* offsets,
                                        int64_t groups, int64_t rows, float* const* dw,
                                        int64_t in, int64_t out,
                                        const GroupedCasts& casts = {}) override;
    void gemm_quantized(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const BlockQuantSpec& a_spec, const float* B,
                        int64_t ldb, const BlockQuantSpec& b_spec, float beta, float* C,
                        int64_t ldc) override;

    void copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                 int64_t rows, int64_t cols) override;
    void add_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                int64_t rows, int64_t cols) override;
    void zero(float* x, int64_t n) override;
    void scale(float* x, float alpha, int64_t n) override;
    double sum(const float* x, int64_t n) override;

    void embedding_forward(const int32_t* tokens, int64_t n, const float* table, int64_t vocab,
                           int64_t dim, float* out) override;
    void embedding_backward(const int32_t* tokens, int64_t n, const float* dout, int64_t vocab,
                            int64_t dim, float* dtable) override;

    void rmsnorm_forward(const float* x, int64_t x_stride, const float* w, int64_t rows,
                         int64_t dim, float eps, float* y, int64_t y_stride,
                         float* rstd) override;
    void rmsnorm_backward(const float* dy, int64_t dy_stride, const float* x, int64_t x_stride,
                          const float* w, const float* rstd, int64_t rows, int64_t dim,
                          float* dx, int64_t dx_stride, float* dw) override;

    void rope(float* x, int64_t rows, int64_t row_stride, int64_t heads, int64_t head_stride,
              int64_t offset, int64_t rope_dim, const int32_t* positions, const RopeParams& rope,
              bool inverse) override;

    void attention_forward(const float* q, const float* k, const float* v, int64_t B, int64_t T,
                           int64_t H, int64_t dk, int64_t dv, float scale, int64_t window,
                           float* probs, float* out) override;
    void attention_backward(const float* dout, const float* q, const float* k, const float* v,
                            const float* probs, int64_t B, int64_t T, int64_t H, int64_t dk,
                            int64_t dv, float scale, int64_t window, float* dq, float* dk_,
                            float* dv_) override;

    // Dynamic top-k sparse attention (cpu_sparse_attention.cpp).
    bool supports_sparse_attention() const override { return true; }
    void indexer_scores_forward(const float* qi, const float* ki, const float* w, int64_t B,
                                int64_t Tq, int64_t Tk, int64_t start, int64_t HI, int64_t dI,
                                float scale, float* scores) override;
    void indexer_scores_backward(const float* dscores, const float* qi, const float* ki,
                                 const float* w, int64_t B, int64_t Tq, int64_t Tk, int64_t start,
                                 int64_t HI, int64_t dI, float scale, float* dqi, float* dki,
                                 float* dw) override;
    void topk_keys(const float* scores, int64_t B, int64_t Tq, int64_t Tk, int64_t start,
                   int64_t K, int32_t* idx) override;
    void sparse_attention_forward(const float* q, const float* k, const float* v,
                                  const int32_t* idx, int64_t B, int64_t T, int64_t H, int64_t dk,
                                  int64_t dv, int64_t K, float scale, float* probs,
                                  float* out) override;
    void sparse_attention_backward(const float* dout, const float* q, const float* k,
                                   const float* v, const float* probs, const int32_t* idx,
                                   int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv,
                                   int64_t K, float scale, float* dq, float* dk_,
                                   float* dv_) override;
    double indexer_loss(const float* scores, const float* probs, const int32_t* idx, int64_t B,
                        int64_t T, int64_t H, int64_t K, float grad_scale,
                        float* dscores) override;
    void mask_unselected_keys(float* s, int64_t n, int64_t H, int64_t cols, const int32_t* idx,
                              int64_t K) override;

    void swiglu_forward(const float* g, const float* u, int64_t n, float* out) override;
    void swiglu_backward(const float* dout, const float* g, const float* u, int64_t n, float* dg,
                         float* du) override;

    void cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n,
                               int64_t vocab, float* losses) override;
    void cross_entropy_backward(const float* logits, const int32_t* targets, int64_t n,
                                int64_t vocab, float scale, float* dlogits) override;

    void moe_gate_forward(const float* logits, int64_t n, const GateParams& p, float* scores,
                          int32_t* topk_idx, float* topk_weight) override;
    void moe_gate_backward(const float* d_topk_weight, const float* d_scores_extra,
                           const float* scores, const int32_t* topk_idx,
                           const float* topk_weight, int64_t n, const GateParams& p,
                           float* dlogits) override;

    double seq_aux_loss_forward(const float* scores, const int32_t* topk_idx, int64_t B,
                                int64_t T, int64_t E, int64_t K, float alpha) override;
    void seq_aux_loss_backward(const float* scores, const int32_t* topk_idx, int64_t B,
                               int64_t T, int64_t E, int64_t K, float alpha, float dloss,
                               float* d_scores) override;

    void moe_route_plan(const int32_t* topk_idx, int64_t n, int64_t K, int64_t E,
                        int64_t* offsets, int32_t* row_token, int32_t* slot_row) override;
    void moe_permute(const float* x, const int32_t* row_token, int64_t rows, int64_t dim,
                     float* xp) override;
    void moe_permute_backward(const float* dxp, const int32_t* slot_row, int64_t n, int64_t K,
                              int64_t dim, float* dx) override;
    void moe_unpermute(const float* yp, const float* w, const int32_t* slot_row, int64_t n,
                       int64_t K, int64_t dim, float* y) override;
    void moe_unpermute_backward(const float* dy, const float* yp, const float* w,
                                const int32_t* slot_row, int64_t n, int64_t K, int64_t dim,
                                float* dyp, float* dw) override;

    double sum_squares(const float* x, int64_t n) override;
    void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                      int64_t step) override;
    void balance_bias_update(float* bias, const int64_t* counts, int64_t n_experts,
                             float gamma) override;

private:
    // Below this many scalar operations a parallel region costs more than it saves. Per-row ops
    // give the same bits either way; reductions depend only on (threads_, size).
    static constexpr int64_t kMinParallelWork = 1 << 14;

    // Thread count for a region doing `work` scalar operations.
    int team(int64_t work) const { return work >= kMinParallelWork ? threads_ : 1; }

    template <class T>
    static T* grow(std::vector<T>& v, size_t n) {
        if (v.size() < n) v.resize(n);
        return v.data();
    }

    // A reduction over fixed 4096-element blocks (block_sum(ptr, len) -> double), the block
    // results added in block order: the result does not even depend on the thread count.
    // Defined in cpu_blocked_reduce.h (it holds an OpenMP pragma; only backend files see it).
    template <class BlockSum>
    double blocked_reduce(const float* x, int64_t n, BlockSum block_sum);

    // One row-major sgemm (alpha 1) of a batch run by run_gemms.
    struct GemmCall {
        bool transA, transB;
        int64_t M, N, K;
        const float* A;
        int64_t lda;
        const float* B;
        int64_t ldb;
        float beta;
        float* C;
        int64_t ldc;
    };
    // Runs every call's shape-fixed tiles (gemm's) in one parallel region.
    void run_gemms(const std::vector<GemmCall>& calls);

    int threads_ = 1;
    std::vector<GemmCall> gemm_calls_;  // grouped GEMMs' calls (grow only: no steady allocation)
    std::vector<std::pair<int64_t, int64_t>> gemm_tiles_;  // (call, tile) of run_gemms
    std::vector<double> partial_;      // per-block partial reductions (rmsnorm dw)
    std::vector<double> blocks_;       // per-block partial sums (sum, seq aux loss)
    std::vector<float> row_scratch_;   // per-thread rows (attention dP, gate work space)
    std::vector<uint8_t> flags_;       // per-thread flags (gate eligibility)
    std::vector<int64_t> cursor_;      // route plan fill positions [E]
    std::vector<float> seq_f_;         // seq aux loss f_i per sequence [B, E]
    std::vector<float> quant_a_, quant_b_;  // gemm_quantized: the cast copies of A and B
    // sparse_attention_backward: the reverse index (queries of each key) and dS.
    std::vector<int64_t> sparse_key_start_, sparse_key_entries_, sparse_key_fill_;
    std::vector<float> sparse_ds_;
    std::vector<int32_t> sparse_cand_;    // top-k candidates, the KL's key sets (per thread)
    std::vector<double> sparse_target_, sparse_kl_;  // the KL's targets (per thread), row losses
};

}  // namespace moe
