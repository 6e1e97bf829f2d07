#pragma once
// CudaBackend: Backend (engine/backend/backend.h) on one CUDA device, same contract as
// CpuBackend with one difference in where memory lives:
//
//   Every pointer an op takes is a DEVICE pointer (cudaMalloc'd): the route plan (offsets
//   included) and the grouped GEMMs' offsets and pointer tables too. The one place the
//   contract names host memory: balance_bias_update reads `counts` from the HOST.
//   GateParams::bias is a device pointer.
//   Scalar results (sum, sum_squares, seq_aux_loss_forward) are returned to the host, which
//   synchronizes.
//
// All work goes to the legacy default stream, so ops are ordered with each other and with
// plain cudaMemcpy. GEMMs are cuBLAS SGEMM with TF32 off (true fp32, as the CPU path);
// gemm_quantized casts both operands on the device exactly like engine/quant's fake_quantize
// and then runs the same SGEMM. Everything else is a kernel in gpu/kernels/ (compiled by nvcc
// as C++17; this header and cuda_backend.cpp are C++20 like the engine, so nvcc never sees
// engine headers).
//
// Determinism: no float atomics; each sum has a fixed order, and cuBLAS is run to run
// reproducible on one GPU model. Results differ from the CPU's in the order of fp32 sums and
// in the last bit of exp (tolerances in gpu/tests/gpu_ops_test.cpp).
// Errors: every CUDA/cuBLAS call is checked; a failure throws moe::Error naming the op, the
// call and the CUDA error string. Invalid tokens, targets or experts throw the CPU's message,
// but from flush_checks (the next scalar result or end of a forward pass), not from the op:
// the step does not wait for the device to check its indices.
// Not thread-safe: one caller at a time per instance.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>
#include <string>
#include <functional>

#include "backend/backend.h"
#include "cuda_allocator.h"
#include "fp8_gemm.h"

namespace moe::gpu {

class CudaBackend final : public Backend {
public:
    // Selects `device` (cudaSetDevice) and creates the cuBLAS handle; Error when the device
    // does not exist or CUDA is unavailable (the message says why).
    explicit CudaBackend(int device = 0);
    ~CudaBackend() override;
    CudaBackend(const CudaBackend&) = delete;
    CudaBackend& operator=(const CudaBackend&) = delete;

    const char* name() const override { return "cuda"; }
    void set_threads(int) override {}  // host threads do not apply
    int threads() const override { return 1; }
    int device() const { return device_; }
    Allocator& allocator() override { return alloc_; }
    std::string describe() const override;

    void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc) override;
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

    // The model runs fused attention here: no [B, H, T, T] tensor (gpu/kernels/flash_attention.cu).
    void residual_rmsnorm_forward(const float* a, const float* b, const float* w, int64_t rows,
                                  int64_t dim, float eps, float* sum, float* y,
                                  float* rstd) override;
    void residual_add(const float* a, const float* b, int64_t n, float* out) override;
    void causal_softmax(float* s, int64_t n, int64_t H, int64_t cols, int64_t start,
                        int64_t window, float scale) override;
    bool prefers_fused_attention() const override { return !reference_paths_; }
    // Reads the flags of the index checks made since the last flush (one sync) and throws the
    // first failure; the scalar-returning ops call it after their own read.
    void flush_checks() override;
    // AttentionMath::Fp32: the SIMT kernels (fp32 products). Bf16: the tensor-core kernels
    // (flash_attention_tc.cu) where the device grants their shared memory (sm_80+) and the
    // grid fits; elsewhere the SIMT kernels, whose fp32 products are more exact than asked.
    // attention_tc_calls() counts the passes that ran on the tensor cores.
    void fused_attention_forward(const float* q, const float* k, const float* v, int64_t B,
                                 int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                 int64_t window, float* lse, float* out,
                                 AttentionMath math = AttentionMath::Fp32) override;
    void fused_attention_backward(const float* dout, const float* q, const float* k,
                                  const float* v, const float* out, const float* lse, int64_t B,
                                  int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                  int64_t window, float* dq, float* dk_, float* dv_,
                                  AttentionMath math = AttentionMath::Fp32) override;
    // Whether fused attention with these widths and rows runs on the tensor cores here.
    bool attention_on_tensor_cores(int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv) const;
    int64_t attention_tc_calls() const { return attention_tc_calls_; }
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
    // fp32 and unscaled bf16 casts: one launch per call (bf16 on tensor cores). Other casts
    // (fp16, fp8 tiles): the plan's offsets and the pointer tables are copied to the host and
    // each group runs gemm_quantized (one sync per call).
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

    // The FP8 tensor-core GEMM (null with MOE_CUDA_REFERENCE_PATHS=1): its counters tell a test
    // whether the recipe ran on the tensor cores or fell back to the emulation.
    const Fp8BlockGemm* fp8_gemm() const { return fp8_.get(); }

private:
    // Device scratch that only grows (a steady-state step allocates nothing).
    void* scratch(int slot, size_t bytes);
    // The "bad index" flag: reset before a validating kernel, read (synchronizing) after it.
    int grouped_kind(const GroupedCasts& casts) const;
    // Host copies for the fp16/fp8 grouped fallback (grow only).
    std::vector<int64_t> host_offsets_;
    std::vector<const float*> host_w_table_;
    std::vector<float*> host_dw_table_;
    bool reference_paths_ = false;  // MOE_CUDA_REFERENCE_PATHS=1
    int cc_major_ = 0;                // compute capability
    int64_t smem_optin_ = 0;          // shared memory a block may opt in to, bytes
    int64_t attention_tc_calls_ = 0;
    template <class Ptr>
    void host_tables(const int64_t* offsets, int64_t groups, const Ptr* table,
                     std::vector<int64_t>& host_offsets, std::vector<Ptr>& host_table);
    // Deferred index checks (cuda_backend.cpp): a flag for the kernel, read by flush_checks.
    struct PendingCheck {
        const char* op;
        const int32_t* values;  // the indices checked (device)
        std::function<std::string(int row, int32_t value)> describe;
    };
    int* defer_check(const char* op, const int32_t* values,
                     std::function<std::string(int, int32_t)> describe);
    static constexpr size_t kMaxPending = 256;
    static constexpr int kNoBadRowByte = 0x7f;  // memset byte: flag 0x7f7f7f7f = no bad row
    std::vector<PendingCheck> pending_;
    std::vector<int> check_rows_;  // flush_checks' copy of the flags
    void* check_flags_ = nullptr;  // kMaxPending ints
    bool try_fp8(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* qa, const BlockQuantSpec& a_spec, const float* qb,
                 const BlockQuantSpec& b_spec, float beta, float* C, int64_t ldc);
    std::unique_ptr<Fp8BlockGemm> fp8_;  // null with MOE_CUDA_REFERENCE_PATHS=1
    void cast_operand(const char* op, const float* src, int64_t rows, int64_t cols, int64_t ld,
                      const BlockQuantSpec& spec, int slot, float* dst);

    int device_ = 0;
    CudaAllocator alloc_;
    void* cublas_ = nullptr;  // cublasHandle_t (kept opaque: no cuBLAS header here)
    static constexpr int kSlots = 12;
    void* scratch_[kSlots] = {};
    size_t scratch_bytes_[kSlots] = {};
};

}  // namespace moe::gpu
