// Elementwise kernels: copies, scaling, SwiGLU, AdamW, embedding. One thread per output element,
// so each element has exactly one writer.
#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

__global__ void copy_2d_k(const float* src, int64_t ss, float* dst, int64_t ds, int64_t rows,
                          int64_t cols, bool add) {
    MOE_GRID_LOOP(i, rows * cols) {
        const int64_t r = i / cols, c = i % cols;
        const float v = src[r * ss + c];
        dst[r * ds + c] = add ? dst[r * ds + c] + v : v;
    }
}

__global__ void scale_2d_k(float* x, int64_t ld, int64_t rows, int64_t cols, float alpha,
                           bool beta_rule) {
    MOE_GRID_LOOP(i, rows * cols) {
        float* p = x + (i / cols) * ld + i % cols;
        *p = (beta_rule && alpha == 0.0f) ? 0.0f : *p * alpha;
    }
}

__global__ void to_bf16_bits_k(const float* x, int64_t n, uint16_t* out) {
    MOE_GRID_LOOP(i, n) out[i] = static_cast<uint16_t>(__float_as_uint(x[i]) >> 16);
}

__global__ void swiglu_forward_k(const float* g, const float* u, int64_t n, float* out) {
    MOE_GRID_LOOP(i, n) out[i] = g[i] * sigmoidf_stable(g[i]) * u[i];
}

__global__ void swiglu_backward_k(const float* dout, const float* g, const float* u, int64_t n,
                                  float* dg, float* du) {
    MOE_GRID_LOOP(i, n) {
        const float s = sigmoidf_stable(g[i]);
        dg[i] += dout[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
        du[i] += dout[i] * (g[i] * s);
    }
}

__global__ void adamw_k(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                        float b1, float b2, float eps, float wd, float gs, float bc1, float bc2) {
    MOE_GRID_LOOP(i, n) {
        const float gi = g[i] * gs;
        const float mi = b1 * m[i] + (1.0f - b1) * gi;
        const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + wd * p[i]);
    }
}

__global__ void embedding_forward_k(const int32_t* tokens, int64_t n, const float* table,
                                    int64_t vocab, int64_t dim, float* out, int* bad) {
    MOE_GRID_LOOP(i, n * dim) {
        const int64_t t = i / dim, c = i % dim;
        const int32_t tok = tokens[t];
        if (tok < 0 || tok >= vocab) {
            atomicMin(bad, static_cast<int>(t));
            continue;
        }
        out[i] = table[int64_t(tok) * dim + c];
    }
}

// Tokens repeat, so a scatter by token would race: each thread owns one column and walks all
// tokens in order (the CPU's order too), so every element is summed in token order.
__global__ void embedding_backward_k(const int32_t* tokens, int64_t n, const float* dout,
                                     int64_t vocab, int64_t dim, float* dtable, int* bad) {
    MOE_GRID_LOOP(c, dim) {
        for (int64_t t = 0; t < n; ++t) {
            const int32_t tok = tokens[t];
            if (tok < 0 || tok >= vocab) {
                atomicMin(bad, static_cast<int>(t));
                continue;
            }
            dtable[int64_t(tok) * dim + c] += dout[t * dim + c];
        }
    }
}

}  // namespace

cudaError_t copy_2d(const float* src, int64_t ss, float* dst, int64_t ds, int64_t rows,
                    int64_t cols, bool add) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    copy_2d_k<<<grid_for(rows * cols), kThreads>>>(src, ss, dst, ds, rows, cols, add);
    return launched();
}

cudaError_t scale_2d(float* x, int64_t ld, int64_t rows, int64_t cols, float alpha,
                     bool beta_rule) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    scale_2d_k<<<grid_for(rows * cols), kThreads>>>(x, ld, rows, cols, alpha, beta_rule);
    return launched();
}

cudaError_t to_bf16_bits(const float* x, int64_t n, uint16_t* out) {
    if (n <= 0) return cudaSuccess;
    to_bf16_bits_k<<<grid_for(n), kThreads>>>(x, n, out);
    return launched();
}

cudaError_t swiglu_forward(const float* g, const float* u, int64_t n, float* out) {
    if (n <= 0) return cudaSuccess;
    swiglu_forward_k<<<grid_for(n), kThreads>>>(g, u, n, out);
    return launched();
}

cudaError_t swiglu_backward(const float* dout, const float* g, const float* u, int64_t n,
                            float* dg, float* du) {
    if (n <= 0) return cudaSuccess;
    swiglu_backward_k<<<grid_for(n), kThreads>>>(dout, g, u, n, dg, du);
    return launched();
}

cudaError_t adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float grad_scale, float bc1,
                  float bc2) {
    if (n <= 0) return cudaSuccess;
    adamw_k<<<grid_for(n), kThreads>>>(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay,
                                       grad_scale, bc1, bc2);
    return launched();
}

cudaError_t embedding_forward(const int32_t* tokens, int64_t n, const float* table,
                              int64_t vocab, int64_t dim, float* out, int* bad) {
    if (n <= 0 || dim <= 0) return cudaSuccess;
    embedding_forward_k<<<grid_for(n * dim), kThreads>>>(tokens, n, table, vocab, dim, out, bad);
    return launched();
}

cudaError_t embedding_backward(const int32_t* tokens, int64_t n, const float* dout,
                               int64_t vocab, int64_t dim, float* dtable, int* bad) {
    if (n <= 0 || dim <= 0) return cudaSuccess;
    embedding_backward_k<<<grid_for(dim, 128), 128>>>(tokens, n, dout, vocab, dim, dtable, bad);
    return launched();
}

}  // namespace moe::gpu::kern
