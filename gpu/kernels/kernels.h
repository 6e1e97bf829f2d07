#pragma once
// The CUDA kernels behind CudaBackend as plain C++17 functions on DEVICE pointers, launched on the
// legacy default stream (so they are ordered with cudaMemcpy and with each other). Only the .cu
// files in this folder are compiled by nvcc; CudaBackend (a .cpp compiled as C++20 with the rest
// of the engine) includes this header and backend.h, so nvcc never sees engine headers.
//
// Every function returns the launch's cudaError_t (cudaGetLastError after the launch); the
// backend turns a failure into moe::Error naming the op. Ops that validate indices (tokens,
// targets, experts) take `bad`, a device int that the kernel lowers (atomicMin on an int: the
// result does not depend on the order) to the first offending row; the caller reads it back.
//
// Determinism: no float atomics anywhere. Every sum has one owner thread or a fixed tree.
#include <cstdint>

#include <cuda_runtime_api.h>

namespace moe::gpu::kern {

// --- elementwise (elementwise.cu) ---
cudaError_t copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                    int64_t rows, int64_t cols, bool add);
// x[r, c] *= alpha with a row stride; with beta_rule, alpha == 0 writes 0 (BLAS's beta == 0
// rule: NaN in C is overwritten).
cudaError_t scale_2d(float* x, int64_t ld, int64_t rows, int64_t cols, float alpha,
                     bool beta_rule);
// Values already on the bf16 grid (fake_quantize with BF16) to their bf16 bit patterns: the
// upper 16 bits, exact. The input of the bf16 tensor-core GEMM.
cudaError_t to_bf16_bits(const float* x, int64_t n, uint16_t* out);
cudaError_t swiglu_forward(const float* g, const float* u, int64_t n, float* out);
cudaError_t swiglu_backward(const float* dout, const float* g, const float* u, int64_t n,
                            float* dg, float* du);
cudaError_t adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float grad_scale, float bc1,
                  float bc2);
cudaError_t embedding_forward(const int32_t* tokens, int64_t n, const float* table,
                              int64_t vocab, int64_t dim, float* out, int* bad);
cudaError_t embedding_backward(const int32_t* tokens, int64_t n, const float* dout,
                               int64_t vocab, int64_t dim, float* dtable, int* bad);

// --- fixed-order reductions in double (reduce.cu) ---
// Partial sums of 4096-element blocks (a fixed tree inside each), then one block adds the
// partials the same way: the result depends only on n. partials holds reduce_blocks(n) doubles.
int64_t reduce_blocks(int64_t n);
cudaError_t reduce_float(const float* x, int64_t n, bool squares, double* partials,
                         double* result);
cudaError_t reduce_double(const double* x, int64_t n, double* partials, double* result);

// --- RMSNorm and RoPE (norm_rope.cu) ---
cudaError_t rmsnorm_forward(const float* x, int64_t x_stride, const float* w, int64_t rows,
                            int64_t dim, float eps, float* y, int64_t y_stride, float* rstd);
cudaError_t rmsnorm_backward(const float* dy, int64_t dy_stride, const float* x,
                             int64_t x_stride, const float* w, const float* rstd, int64_t rows,
                             int64_t dim, float* dx, int64_t dx_stride, float* dw);
// RoPE frequencies as backend.h's RopeParams (theta, YaRN factor and ramp, mscale).
struct RopeArgs {
    double theta, factor, ramp_low, ramp_high, mscale;
};
// Backend::residual_rmsnorm_forward / residual_add (dense rows).
cudaError_t residual_rmsnorm_forward(const float* a, const float* b, const float* w, int64_t rows,
                                     int64_t dim, float eps, float* sum, float* y, float* rstd);
cudaError_t residual_add(const float* a, const float* b, int64_t n, float* out);
cudaError_t rope(float* x, int64_t rows, int64_t row_stride, int64_t heads, int64_t head_stride,
                 int64_t offset, int64_t rope_dim, const int32_t* positions, const RopeArgs& a,
                 bool inverse);

// --- attention (attention.cu); dS is scratch [B*H, T, T] ---
cudaError_t attention_forward(const float* q, const float* k, const float* v, int64_t B,
                              int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                              int64_t window, float* probs, float* out);
cudaError_t attention_backward(const float* dout, const float* q, const float* k,
                               const float* v, const float* probs, int64_t B, int64_t T,
                               int64_t H, int64_t dk, int64_t dv, float scale, int64_t window,
                               float* dS, float* dq, float* dk_, float* dv_);
// Fused attention (flash_attention.cu): Backend::fused_attention_*; dk, dv <= the max dim.
// dvec: device scratch of B*H*T floats (D_t = dout_t . out_t between the two backward passes).
int64_t fused_attention_max_dim();
cudaError_t fused_attention_forward(const float* q, const float* k, const float* v, int64_t B,
                                    int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                    int64_t window, float* lse, float* out);
cudaError_t fused_attention_backward(const float* dout, const float* q, const float* k,
                                     const float* v, const float* out, const float* lse,
                                     int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv,
                                     float scale, int64_t window, float* dvec, float* dq,
                                     float* dk_, float* dv_);
// The same on tensor cores (flash_attention_tc.cu; sm_80+): operands rounded to bf16, fp32
// sums. Shared memory per block: fused_attention_tc_smem(dk, dv) bytes (the largest pass);
// grid.y = B*H must be <= 65535.
int64_t fused_attention_tc_smem(int64_t dk, int64_t dv);
cudaError_t fused_attention_forward_tc(const float* q, const float* k, const float* v, int64_t B,
                                       int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                       int64_t window, float* lse, float* out);
cudaError_t fused_attention_backward_tc(const float* dout, const float* q, const float* k,
                                        const float* v, const float* out, const float* lse,
                                        int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv,
                                        float scale, int64_t window, float* dvec, float* dq,
                                        float* dk_, float* dv_);

// --- cross-entropy (cross_entropy.cu) ---
cudaError_t cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n,
                                  int64_t vocab, float* losses, int* bad);
cudaError_t cross_entropy_backward(const float* logits, const int32_t* targets, int64_t n,
                                   int64_t vocab, float scale, float* dlogits, int* bad);

// --- MoE router and balance loss (gate.cu); parameters already validated by the caller ---
struct GateArgs {
    int64_t E, K, G, topk_group;  // G = 1: no group limit
    bool softmax, norm_topk_prob;
    float routed_scaling_factor;
    const float* bias;  // device [E] or null
};
// scratch: n * (E + G) bytes of flags and n * G floats of group scores.
cudaError_t gate_forward(const float* logits, int64_t n, const GateArgs& a, float* scores,
                         int32_t* topk_idx, float* topk_weight, uint8_t* flags,
                         float* gscore);
cudaError_t gate_backward(const float* d_topk_weight, const float* d_scores_extra,
                          const float* scores, const int32_t* topk_idx, int64_t n,
                          const GateArgs& a, float* dlogits);
// f [B, E] (scratch), terms [B*T] doubles (scratch): the caller reduces terms.
cudaError_t seq_aux_terms(const float* scores, const int32_t* topk_idx, int64_t B, int64_t T,
                          int64_t E, int64_t K, float* f, double* terms);
cudaError_t seq_aux_backward(const float* scores, const int32_t* topk_idx, int64_t B, int64_t T,
                             int64_t E, int64_t K, double c, float* f, float* d_scores);

// --- dispatch (dispatch.cu) ---
// offsets [E+1] int64 on the device; row_token, slot_row as in backend.h.
cudaError_t route_plan(const int32_t* topk_idx, int64_t n, int64_t K, int64_t E,
                       int64_t* offsets, int32_t* row_token, int32_t* slot_row, int* bad);
cudaError_t permute(const float* x, const int32_t* row_token, int64_t rows, int64_t dim,
                    float* xp);
cudaError_t permute_backward(const float* dxp, const int32_t* slot_row, int64_t n, int64_t K,
                             int64_t dim, float* dx);
cudaError_t unpermute(const float* yp, const float* w, const int32_t* slot_row, int64_t n,
                      int64_t K, int64_t dim, float* y);
cudaError_t unpermute_backward(const float* dy, const float* yp, const float* w,
                               const int32_t* slot_row, int64_t n, int64_t K, int64_t dim,
                               float* dyp, float* dw);

// --- grouped expert GEMMs (grouped_gemm.cu): Backend::grouped_linear_* with offsets [groups+1]
// and the pointer tables on the device. rows: offsets[groups] (an upper bound is enough).
// Forward (dgrad false): c[r] = a[r] W_g^T, c [rows, out]; dgrad: c[r] += a[r] W_g, c [rows, in].
// tile_start: device scratch of groups + 1 int64. bf16: both operands rounded to bf16 on load,
// tensor cores with fp32 accumulation (sm_80+); else fp32 FMA.
cudaError_t grouped_linear_rows(const float* a, const int64_t* offsets, int64_t groups,
                                int64_t rows, const float* const* w, int64_t in, int64_t out,
                                float* c, bool dgrad, bool bf16, int64_t* tile_start);
// dW_g += dy_g^T x_g for every group with rows.
cudaError_t grouped_linear_wgrad(const float* dy, const float* x, const int64_t* offsets,
                                 int64_t groups, float* const* dw, int64_t in, int64_t out,
                                 bool bf16);

// --- fake quantization (fake_quant.cu): engine/quant/block_scaling.h's cast, bit for bit ---
struct CastArgs {
    int64_t tile_rows, tile_cols;  // resolved extents (>= 1)
    float max_finite;              // format_max(format)
    bool scaled, pow2_scales;
    bool saturate;                 // past the max: +-max (else +-Inf)
    bool bf16;                     // round on the bits (else on the value grid)
    int mantissa_bits, min_exponent;
};
// out [rows, cols] dense = dequantize(quantize(x)); scales [grid_rows * grid_cols] scratch.
cudaError_t fake_quantize(const float* x, int64_t rows, int64_t cols, int64_t ld,
                          const CastArgs& a, float* scales, float* out);

// --- Backend::causal_softmax (causal_softmax.cu): one block per row of s [n*H, cols] ---
cudaError_t causal_softmax(float* s, int64_t n, int64_t H, int64_t cols, int64_t start,
                           int64_t window, float scale);

// --- FP8 operands for cuBLASLt's block-scaled GEMM (fp8_pack.cu) ---
// From fake_quantize's output q [rows, cols] (dense) and its scale grid (tiles tile_rows x
// tile_cols, row-major): codes, one E4M3 (or E5M2) byte per element with K contiguous -
// [rows, cols] as stored when K runs along the columns, the transpose [cols, rows] when it runs
// along the rows (k_rows) - and the scales in cuBLASLt's layout: VEC128_32F (block false,
// one scale per 128 along K: lt[kb * outer + o]) or BLK128x128_32F (block true:
// lt[ob * round_up(k_blocks, 4) + kb], the padding set to 1). The codes are exactly the
// emulation's: q / scale is a code up to float rounding, cast back without change.
cudaError_t pack_fp8_operand(const float* q, int64_t rows, int64_t cols, const float* grid_scales,
                             int64_t tile_rows, int64_t tile_cols, bool k_rows, bool e5m2,
                             bool block, uint8_t* codes, float* lt_scales);

}  // namespace moe::gpu::kern
