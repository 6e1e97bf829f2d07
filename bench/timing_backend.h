#pragma once
// TimingBackend: a Backend decorator that forwards every op to another backend and adds up the
// wall time spent in each op, so a training step can be profiled op by op without touching the
// model. GEMMs are additionally counted in FLOPs (2*M*N*K) and grouped by shape, which gives the
// engine's achieved GEMM rate and the shapes worth comparing against a standalone sgemm.
//
// When disabled it only forwards (one extra virtual call per op), so the same model instance
// can run unprofiled steps for the headline figure and profiled steps for the breakdown.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "backend/backend.h"

namespace moe::bench {

class TimingBackend final : public Backend {
public:
    enum Op {
        kGemm, kCopy2d, kAdd2d, kZero, kScale, kSum, kEmbeddingFwd, kEmbeddingBwd, kRmsnormFwd,
        kRmsnormBwd, kRope, kAttentionFwd, kAttentionBwd, kSwigluFwd, kSwigluBwd, kCeFwd, kCeBwd,
        kGateFwd, kGateBwd, kAuxFwd, kAuxBwd, kRoutePlan, kPermute, kPermuteBwd, kUnpermute,
        kUnpermuteBwd, kSumSquares, kAdamw, kBiasUpdate, kOpCount
    };
    static constexpr std::array<const char*, kOpCount> kOpNames = {
        "gemm", "copy_2d", "add_2d", "zero", "scale", "sum", "embedding_forward",
        "embedding_backward", "rmsnorm_forward", "rmsnorm_backward", "rope",
        "attention_forward", "attention_backward", "swiglu_forward", "swiglu_backward",
        "cross_entropy_forward", "cross_entropy_backward", "moe_gate_forward",
        "moe_gate_backward", "seq_aux_loss_forward", "seq_aux_loss_backward", "moe_route_plan",
        "moe_permute", "moe_permute_backward", "moe_unpermute", "moe_unpermute_backward",
        "sum_squares", "adamw_update", "balance_bias_update"};

    struct OpStat {
        int64_t calls = 0;
        double seconds = 0.0;
    };
    struct GemmStat {
        int64_t calls = 0;
        double seconds = 0.0;
        double flops = 0.0;
    };
    // (transA, transB, M, N, K)
    using GemmShape = std::tuple<bool, bool, int64_t, int64_t, int64_t>;

    explicit TimingBackend(Backend& inner) : inner_(inner) {}

    void set_enabled(bool on) { enabled_ = on; }
    void reset() {
        stats_ = {};
        gemm_shapes_.clear();
    }
    const std::array<OpStat, kOpCount>& stats() const { return stats_; }
    const std::map<GemmShape, GemmStat>& gemm_shapes() const { return gemm_shapes_; }
    double total_seconds() const {
        double s = 0.0;
        for (const OpStat& o : stats_) s += o.seconds;
        return s;
    }
    double gemm_flops() const {
        double f = 0.0;
        for (const auto& [shape, g] : gemm_shapes_) f += g.flops;
        return f;
    }

    const char* name() const override { return inner_.name(); }
    void set_threads(int threads) override { inner_.set_threads(threads); }
    int threads() const override { return inner_.threads(); }
    Allocator& allocator() override { return inner_.allocator(); }
    std::string describe() const override { return inner_.describe(); }

    void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc) override {
        if (!enabled_) {
            inner_.gemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
            return;
        }
        const auto t0 = Clock::now();
        inner_.gemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
        stats_[kGemm].calls++;
        stats_[kGemm].seconds += dt;
        GemmStat& g = gemm_shapes_[GemmShape{transA, transB, M, N, K}];
        g.calls++;
        g.seconds += dt;
        g.flops += 2.0 * double(M) * double(N) * double(K);
    }

    // Quantized GEMMs (the precision modes) count as GEMM time, casts included.
    void gemm_quantized(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const BlockQuantSpec& a_spec, const float* B,
                        int64_t ldb, const BlockQuantSpec& b_spec, float beta, float* C,
                        int64_t ldc) override {
        timed(kGemm, [&] {
            inner_.gemm_quantized(transA, transB, M, N, K, alpha, A, lda, a_spec, B, ldb, b_spec,
                                  beta, C, ldc);
        });
    }

    void copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                 int64_t rows, int64_t cols) override {
        timed(kCopy2d, [&] { inner_.copy_2d(src, src_stride, dst, dst_stride, rows, cols); });
    }
    void add_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                int64_t rows, int64_t cols) override {
        timed(kAdd2d, [&] { inner_.add_2d(src, src_stride, dst, dst_stride, rows, cols); });
    }
    void zero(float* x, int64_t n) override {
        timed(kZero, [&] { inner_.zero(x, n); });
    }
    void scale(float* x, float alpha, int64_t n) override {
        timed(kScale, [&] { inner_.scale(x, alpha, n); });
    }
    double sum(const float* x, int64_t n) override {
        return timed(kSum, [&] { return inner_.sum(x, n); });
    }
    void embedding_forward(const int32_t* tokens, int64_t n, const float* table, int64_t vocab,
                           int64_t dim, float* out) override {
        timed(kEmbeddingFwd,
              [&] { inner_.embedding_forward(tokens, n, table, vocab, dim, out); });
    }
    void embedding_backward(const int32_t* tokens, int64_t n, const float* dout, int64_t vocab,
                            int64_t dim, float* dtable) override {
        timed(kEmbeddingBwd,
              [&] { inner_.embedding_backward(tokens, n, dout, vocab, dim, dtable); });
    }
    void rmsnorm_forward(const float* x, int64_t x_stride, const float* w, int64_t rows,
                         int64_t dim, float eps, float* y, int64_t y_stride,
                         float* rstd) override {
        timed(kRmsnormFwd, [&] {
            inner_.rmsnorm_forward(x, x_stride, w, rows, dim, eps, y, y_stride, rstd);
        });
    }
    void rmsnorm_backward(const float* dy, int64_t dy_stride, const float* x, int64_t x_stride,
                          const float* w, const float* rstd, int64_t rows, int64_t dim,
                          float* dx, int64_t dx_stride, float* dw) override {
        timed(kRmsnormBwd, [&] {
            inner_.rmsnorm_backward(dy, dy_stride, x, x_stride, w, rstd, rows, dim, dx,
                                    dx_stride, dw);
        });
    }
    void rope(float* x, int64_t rows, int64_t row_stride, int64_t heads, int64_t head_stride,
              int64_t offset, int64_t rope_dim, const int32_t* positions, const RopeParams& rope,
              bool inverse) override {
        timed(kRope, [&] {
            inner_.rope(x, rows, row_stride, heads, head_stride, offset, rope_dim, positions,
                        rope, inverse);
        });
    }
    void attention_forward(const float* q, const float* k, const float* v, int64_t B, int64_t T,
                           int64_t H, int64_t dk, int64_t dv, float scale, int64_t window,
                           float* probs, float* out) override {
        timed(kAttentionFwd, [&] {
            inner_.attention_forward(q, k, v, B, T, H, dk, dv, scale, window, probs, out);
        });
    }
    void attention_backward(const float* dout, const float* q, const float* k, const float* v,
                            const float* probs, int64_t B, int64_t T, int64_t H, int64_t dk,
                            int64_t dv, float scale, int64_t window, float* dq, float* dk_,
                            float* dv_) override {
        timed(kAttentionBwd, [&] {
            inner_.attention_backward(dout, q, k, v, probs, B, T, H, dk, dv, scale, window, dq,
                                      dk_, dv_);
        });
    }
    void swiglu_forward(const float* g, const float* u, int64_t n, float* out) override {
        timed(kSwigluFwd, [&] { inner_.swiglu_forward(g, u, n, out); });
    }
    void swiglu_backward(const float* dout, const float* g, const float* u, int64_t n, float* dg,
                         float* du) override {
        timed(kSwigluBwd, [&] { inner_.swiglu_backward(dout, g, u, n, dg, du); });
    }
    void cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n,
                               int64_t vocab, float* losses) override {
        timed(kCeFwd, [&] { inner_.cross_entropy_forward(logits, targets, n, vocab, losses); });
    }
    void cross_entropy_backward(const float* logits, const int32_t* targets, int64_t n,
                                int64_t vocab, float scale, float* dlogits) override {
        timed(kCeBwd, [&] {
            inner_.cross_entropy_backward(logits, targets, n, vocab, scale, dlogits);
        });
    }
    void moe_gate_forward(const float* logits, int64_t n, const GateParams& p, float* scores,
                          int32_t* topk_idx, float* topk_weight) override {
        timed(kGateFwd,
              [&] { inner_.moe_gate_forward(logits, n, p, scores, topk_idx, topk_weight); });
    }
    void moe_gate_backward(const float* d_topk_weight, const float* d_scores_extra,
                           const float* scores, const int32_t* topk_idx,
                           const float* topk_weight, int64_t n, const GateParams& p,
                           float* dlogits) override {
        timed(kGateBwd, [&] {
            inner_.moe_gate_backward(d_topk_weight, d_scores_extra, scores, topk_idx,
                                     topk_weight, n, p, dlogits);
        });
    }
    double seq_aux_loss_forward(const float* scores, const int32_t* topk_idx, int64_t B,
                                int64_t T, int64_t E, int64_t K, float alpha) override {
        return timed(kAuxFwd, [&] {
            return inner_.seq_aux_loss_forward(scores, topk_idx, B, T, E, K, alpha);
        });
    }
    void seq_aux_loss_backward(const float* scores, const int32_t* topk_idx, int64_t B,
                               int64_t T, int64_t E, int64_t K, float alpha, float dloss,
                               float* d_scores) override {
        timed(kAuxBwd, [&] {
            inner_.seq_aux_loss_backward(scores, topk_idx, B, T, E, K, alpha, dloss, d_scores);
        });
    }
    void moe_route_plan(const int32_t* topk_idx, int64_t n, int64_t K, int64_t E,
                        int64_t* offsets, int32_t* row_token, int32_t* slot_row) override {
        timed(kRoutePlan, [&] {
            inner_.moe_route_plan(topk_idx, n, K, E, offsets, row_token, slot_row);
        });
    }
    void moe_permute(const float* x, const int32_t* row_token, int64_t rows, int64_t dim,
                     float* xp) override {
        timed(kPermute, [&] { inner_.moe_permute(x, row_token, rows, dim, xp); });
    }
    void moe_permute_backward(const float* dxp, const int32_t* slot_row, int64_t n, int64_t K,
                              int64_t dim, float* dx) override {
        timed(kPermuteBwd, [&] { inner_.moe_permute_backward(dxp, slot_row, n, K, dim, dx); });
    }
    void moe_unpermute(const float* yp, const float* w, const int32_t* slot_row, int64_t n,
                       int64_t K, int64_t dim, float* y) override {
        timed(kUnpermute, [&] { inner_.moe_unpermute(yp, w, slot_row, n, K, dim, y); });
    }
    void moe_unpermute_backward(const float* dy, const float* yp, const float* w,
                                const int32_t* slot_row, int64_t n, int64_t K, int64_t dim,
                                float* dyp, float* dw) override {
        timed(kUnpermuteBwd, [&] {
            inner_.moe_unpermute_backward(dy, yp, w, slot_row, n, K, dim, dyp, dw);
        });
    }
    double sum_squares(const float* x, int64_t n) override {
        return timed(kSumSquares, [&] { return inner_.sum_squares(x, n); });
    }
    void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                      int64_t step) override {
        timed(kAdamw, [&] {
            inner_.adamw_update(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale,
                                step);
        });
    }
    void balance_bias_update(float* bias, const int64_t* counts, int64_t n_experts,
                             float gamma) override {
        timed(kBiasUpdate, [&] { inner_.balance_bias_update(bias, counts, n_experts, gamma); });
    }

private:
    using Clock = std::chrono::steady_clock;

    // Runs f, adding its wall time to op's account when enabled; returns f's result.
    template <class F>
    auto timed(Op op, F&& f) -> decltype(f()) {
        if (!enabled_) return f();
        const auto t0 = Clock::now();
        struct Stop {  // records on every exit path, value-returning or not
            OpStat& s;
            Clock::time_point t0;
            ~Stop() {
                s.calls++;
                s.seconds += std::chrono::duration<double>(Clock::now() - t0).count();
            }
        } stop{stats_[op], t0};
        return f();
    }

    Backend& inner_;
    bool enabled_ = true;
    std::array<OpStat, kOpCount> stats_{};
    std::map<GemmShape, GemmStat> gemm_shapes_;
};

}  // namespace moe::bench
