// CpuBackend: construction, threads, GEMM (OpenBLAS), copies, elementwise ops, sum, embedding,
// SwiGLU and cross-entropy.
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_blocked_reduce.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "backend/cpu/cpu_math.h"
#include "core/error.h"

namespace moe {

using cpu::sigmoid;

CpuBackend::CpuBackend(int threads) {
    set_threads(threads);
}

void CpuBackend::set_threads(int threads) {
    threads_ = threads > 0 ? threads : std::max(1, omp_get_num_procs());
    // OpenBLAS itself always runs serial: the engine splits every GEMM into tiles fixed by the
    // shape (gemm below), so OpenBLAS's own partitioning, which differs between its kernels
    // (SkylakeX runs small products serially, Haswell/Zen threads them and then sums in
    // another order), never reaches the results.
    openblas_set_num_threads(1);
}

namespace {

// The output tile of one OpenBLAS call in CpuBackend::gemm: a function of the shape alone.
struct GemmTiling {
    bool by_rows;   // tiles are row panels of C (else column panels)
    int64_t tile;   // rows (or columns) per tile
    int64_t count;  // number of tiles
};

GemmTiling gemm_tiling(int64_t M, int64_t N) {
    GemmTiling t;
    t.by_rows = M >= N;
    const int64_t len = t.by_rows ? M : N;
    // Panels of >= 128 keep OpenBLAS's packing of the other operand a small share of the work
    // (it is repacked once per panel); 256 once there are enough panels for any core count.
    t.tile = len >= 2048 ? 256 : 128;
    t.count = (len + t.tile - 1) / t.tile;
    return t;
}

}  // namespace

// C[M,N] = alpha * op(A) op(B) + beta * C, row-major.
void CpuBackend::gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                      float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        // Empty product: only the beta scaling remains (beta == 0 overwrites, as in BLAS).
        for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    // Serial OpenBLAS (set_threads); something else in the process may have changed it.
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
    // Each tile is one serial OpenBLAS call on one thread, and the tiles depend only on the
    // shape: every element of C is summed in the same order whatever the thread count.
    const GemmTiling tiling = gemm_tiling(M, N);
    const int nt = static_cast<int>(std::min<int64_t>(tiling.count, team(M * N * K)));
    const CBLAS_TRANSPOSE ta = transA ? CblasTrans : CblasNoTrans;
    const CBLAS_TRANSPOSE tb = transB ? CblasTrans : CblasNoTrans;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < tiling.count; ++t) {
        const int64_t begin = t * tiling.tile;
        const int64_t len = std::min(tiling.tile, (tiling.by_rows ? M : N) - begin);
        // Row panel: rows [begin, begin+len) of op(A) and C. Column panel: columns of op(B), C.
        const float* a = A;
        const float* b = B;
        float* c = C;
        int64_t m = M, n = N;
        if (tiling.by_rows) {
            a = transA ? A + begin : A + begin * lda;
            c = C + begin * ldc;
            m = len;
        } else {
            b = transB ? B + begin * ldb : B + begin;
            c = C + begin;
            n = len;
        }
        cblas_sgemm(CblasRowMajor, ta, tb, static_cast<blasint>(m), static_cast<blasint>(n),
                    static_cast<blasint>(K), alpha, a, static_cast<blasint>(lda), b,
                    static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
    }
}

// All tiles of all calls in one region: each tile is exactly the serial cblas call gemm()
// makes for that call's shape, so the bits do not change; only the fork/joins do.
void CpuBackend::run_gemms(const std::vector<GemmCall>& calls) {
    gemm_tiles_.clear();
    int64_t work = 0;
    for (size_t c = 0; c < calls.size(); ++c) {
        const GemmCall& g = calls[c];
        const GemmTiling t = gemm_tiling(g.M, g.N);
        for (int64_t k = 0; k < t.count; ++k) gemm_tiles_.emplace_back(int64_t(c), k);
        work += g.M * g.N * g.K;
    }
    if (gemm_tiles_.empty()) return;
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
    const int nt = static_cast<int>(std::min<int64_t>(int64_t(gemm_tiles_.size()), team(work)));
    const int64_t count = static_cast<int64_t>(gemm_tiles_.size());
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (int64_t i = 0; i < count; ++i) {
        const GemmCall& g = calls[static_cast<size_t>(gemm_tiles_[i].first)];
        const GemmTiling tiling = gemm_tiling(g.M, g.N);
        const int64_t begin = gemm_tiles_[i].second * tiling.tile;
        const int64_t len = std::min(tiling.tile, (tiling.by_rows ? g.M : g.N) - begin);
        const float* a = g.A;
        const float* b = g.B;
        float* c = g.C;
        int64_t m = g.M, n = g.N;
        if (tiling.by_rows) {
            a = g.transA ? g.A + begin : g.A + begin * g.lda;
            c = g.C + begin * g.ldc;
            m = len;
        } else {
            b = g.transB ? g.B + begin * g.ldb : g.B + begin;
            c = g.C + begin;
            n = len;
        }
        cblas_sgemm(CblasRowMajor, g.transA ? CblasTrans : CblasNoTrans,
                    g.transB ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
                    static_cast<blasint>(n), static_cast<blasint>(g.K), 1.0f, a,
                    static_cast<blasint>(g.lda), b, static_cast<blasint>(g.ldb), g.beta, c,
                    static_cast<blasint>(g.ldc));
    }
}

void CpuBackend::grouped_linear_forward(const float* x, const int64_t* offsets, int64_t groups,
                                        int64_t rows, const float* const* w, int64_t in,
                                        int64_t out, float* y, const GroupedCasts& casts) {
    if (!casts.fp32())
        return Backend::grouped_linear_forward(x, offsets, groups, rows, w, in, out, y, casts);
    gemm_calls_.clear();
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t r0 = offsets[g], m = offsets[g + 1] - r0;
        if (m > 0 && in > 0 && out > 0)
            gemm_calls_.push_back(
                {false, true, m, out, in, x + r0 * in, in, w[g], in, 0.0f, y + r0 * out, out});
    }
    run_gemms(gemm_calls_);
}

void CpuBackend::grouped_linear_backward_data(const float* dy, const int64_t* offsets,
                                              int64_t groups, int64_t rows,
                                              const float* const* w, int64_t in, int64_t out,
                                              float* dx, const GroupedCasts& casts) {
    if (!casts.fp32())
        return Backend::grouped_linear_backward_data(dy, offsets, groups, rows, w, in, out, dx,
                                                     casts);
    gemm_calls_.clear();
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t r0 = offsets[g], m = offsets[g + 1] - r0;
        if (m > 0 && in > 0 && out > 0)
            gemm_calls_.push_back(
                {false, false, m, in, out, dy + r0 * out, out, w[g], in, 1.0f, dx + r0 * in, in});
    }
    run_gemms(gemm_calls_);
}

void CpuBackend::grouped_linear_backward_weight(const float* dy, const float* x,
                                                const int64_t* offsets, int64_t groups,
                                                int64_t rows, float* const* dw, int64_t in,
                                                int64_t out, const GroupedCasts& casts) {
    if (!casts.fp32())
        return Backend::grouped_linear_backward_weight(dy, x, offsets, groups, rows, dw, in, out,
                                                       casts);
    gemm_calls_.clear();
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t r0 = offsets[g], m = offsets[g + 1] - r0;
        if (m > 0 && in > 0 && out > 0)
            gemm_calls_.push_back(
                {true, false, out, in, m, dy + r0 * out, out, x + r0 * in, in, 1.0f, dw[g], in});
    }
    run_gemms(gemm_calls_);
}

void CpuBackend::copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                         int64_t rows, int64_t cols) {
    const int nt = team(rows * cols);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows; ++r)
        std::memcpy(dst + r * dst_stride, src + r * src_stride, sizeof(float) * cols);
}

void CpuBackend::add_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                        int64_t rows, int64_t cols) {
    const int nt = team(rows * cols);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows; ++r) {
        const float* s = src + r * src_stride;
        float* d = dst + r * dst_stride;
        for (int64_t c = 0; c < cols; ++c) d[c] += s[c];
    }
}

void CpuBackend::zero(float* x, int64_t n) {
    if (n <= 0) return;
    const int nt = team(n);
#pragma omp parallel num_threads(nt)
    {
        int64_t b, e;
        cpu::chunk(n, omp_get_num_threads(), omp_get_thread_num(), b, e);
        if (e > b) std::memset(x + b, 0, sizeof(float) * (e - b));
    }
}

void CpuBackend::scale(float* x, float alpha, int64_t n) {
    const int nt = team(n);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

double CpuBackend::sum(const float* x, int64_t n) {
    return blocked_reduce(x, n, [](const float* b, int64_t len) {
        double s = 0.0;
        for (int64_t i = 0; i < len; ++i) s += b[i];
        return s;
    });
}

// --- embedding ---

static void check_tokens(const int32_t* tokens, int64_t n, int64_t vocab, const char* op) {
    for (int64_t t = 0; t < n; ++t)
        if (tokens[t] < 0 || tokens[t] >= vocab)
            throw Error(std::string(op) + ": token " + std::to_string(tokens[t]) + " at row " +
                        std::to_string(t) + " is outside the vocabulary [0, " +
                        std::to_string(vocab) + ")");
}

// out [n, dim] = table [vocab, dim] rows at tokens [n]
void CpuBackend::embedding_forward(const int32_t* tokens, int64_t n, const float* table,
                                   int64_t vocab, int64_t dim, float* out) {
    check_tokens(tokens, n, vocab, "embedding_forward");
    const int nt = team(n * dim);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < n; ++t)
        std::memcpy(out + t * dim, table + static_cast<int64_t>(tokens[t]) * dim,
                    sizeof(float) * dim);
}

// dtable [vocab, dim] += dout [n, dim] scattered by tokens. Tokens repeat, so threads split the
// columns and each walks all tokens in order: no two threads touch the same element, and each
// element's sum order is the token order whatever the thread count.
void CpuBackend::embedding_backward(const int32_t* tokens, int64_t n, const float* dout,
                                    int64_t vocab, int64_t dim, float* dtable) {
    check_tokens(tokens, n, vocab, "embedding_backward");
    const int nt = std::min<int64_t>(team(n * dim), std::max<int64_t>(1, dim / 16));
#pragma omp parallel num_threads(nt)
    {
        int64_t c0, c1;
        cpu::chunk(dim, omp_get_num_threads(), omp_get_thread_num(), c0, c1);
        for (int64_t t = 0; t < n; ++t) {
            const float* src = dout + t * dim;
            float* dst = dtable + static_cast<int64_t>(tokens[t]) * dim;
            for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
        }
    }
}

// --- SwiGLU: out = silu(g) * u, silu(g) = g * sigmoid(g) ---

void CpuBackend::swiglu_forward(const float* g, const float* u, int64_t n, float* out) {
    const int nt = team(n * 8);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; ++i) out[i] = g[i] * sigmoid(g[i]) * u[i];
}

// d silu(g)/dg = s * (1 + g * (1 - s)), s = sigmoid(g).
void CpuBackend::swiglu_backward(const float* dout, const float* g, const float* u, int64_t n,
                                 float* dg, float* du) {
    const int nt = team(n * 8);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; ++i) {
        const float s = sigmoid(g[i]);
        const float silu = g[i] * s;
        dg[i] += dout[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        du[i] += dout[i] * silu;
    }
}

// --- cross-entropy ---

static void check_targets(const int32_t* targets, int64_t n, int64_t vocab, const char* op) {
    for (int64_t t = 0; t < n; ++t)
        if (targets[t] >= vocab)
            throw Error(std::string(op) + ": target " + std::to_string(targets[t]) + " at row " +
                        std::to_string(t) + " is outside the vocabulary [0, " +
                        std::to_string(vocab) + ")");
}

// Row max and sum of exp(x - max) in double: logsumexp = max + log(sum).
static void row_max_sumexp(const float* x, int64_t v, float& mx, double& se) {
    mx = x[0];
    for (int64_t j = 1; j < v; ++j) mx = std::max(mx, x[j]);
    se = 0.0;
    for (int64_t j = 0; j < v; ++j) se += std::exp(static_cast<double>(x[j] - mx));
}

// logits [n, vocab], targets [n], losses [n]
void CpuBackend::cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n,
                                       int64_t vocab, float* losses) {
    check_targets(targets, n, vocab, "cross_entropy_forward");
    const int nt = team(n * vocab * 4);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < n; ++t) {
        if (targets[t] < 0) {
            losses[t] = 0.0f;
            continue;
        }
        const float* x = logits + t * vocab;
        float mx;
        double se;
        row_max_sumexp(x, vocab, mx, se);
        const double lse = mx + std::log(se);
        losses[t] = static_cast<float>(lse - x[targets[t]]);
    }
}

void CpuBackend::cross_entropy_backward(const float* logits, const int32_t* targets, int64_t n,
                                        int64_t vocab, float scale, float* dlogits) {
    check_targets(targets, n, vocab, "cross_entropy_backward");
    const int nt = team(n * vocab * 4);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < n; ++t) {
        if (targets[t] < 0) continue;
        const float* x = logits + t * vocab;
        float* d = dlogits + t * vocab;
        float mx;
        double se;
        row_max_sumexp(x, vocab, mx, se);
        const double inv = 1.0 / se;
        for (int64_t j = 0; j < vocab; ++j)
            d[j] += scale * static_cast<float>(std::exp(static_cast<double>(x[j] - mx)) * inv);
        d[targets[t]] -= scale;
    }
}

}  // namespace moe
