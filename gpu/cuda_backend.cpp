// CudaBackend: argument checks, scratch, error handling, cuBLAS GEMMs, and the calls into
// gpu/kernels/. Compiled by the host compiler as C++20 (it includes engine headers).
#include "cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "fp8_gemm.h"
#include "kernels/kernels.h"

namespace moe::gpu {

namespace {

void check(cudaError_t e, const char* op, const char* call) {
    if (e != cudaSuccess)
        throw Error(std::string("CUDA backend, ") + op + ": " + call + " failed: " +
                    cudaGetErrorString(e));
}

void check_blas(cublasStatus_t s, const char* op, const char* call) {
    if (s != CUBLAS_STATUS_SUCCESS)
        throw Error(std::string("CUDA backend, ") + op + ": " + call + " failed: " +
                    cublasGetStatusString(s));
}

// A kernel launch (the kernel API returns the launch's error).
void launch(cudaError_t e, const char* op) { check(e, op, "kernel launch"); }

int to_int(int64_t v, const char* op, const char* what) {
    if (v < 0 || v > INT_MAX)
        throw Error(std::string("CUDA backend, ") + op + ": " + what + " = " +
                    std::to_string(v) + " does not fit cuBLAS's int");
    return static_cast<int>(v);
}

cublasHandle_t blas(void* h) { return static_cast<cublasHandle_t>(h); }


kern::GateArgs gate_args(const GateParams& p) {
    return {p.n_experts, p.top_k, p.n_group > 1 ? p.n_group : 1, p.topk_group,
            p.scoring == ScoringFunc::Softmax, p.norm_topk_prob, p.routed_scaling_factor, p.bias};
}

// Scratch slots (each grows independently).
enum Slot {
    kFlag = 0,
    kPartials,
    kQuantA,
    kQuantB,
    kScalesA,
    kScalesB,
    kWorkA,
    kWorkB,
    kCodesA,
    kCodesB,
    kLtScalesA,
    kLtScalesB
};

// How an operand of gemm_quantized maps onto cuBLASLt's block-scaled FP8 GEMM, if it does:
// scaled E4M3/E5M2 with tiles of 128 along K and 1 (VEC128) or 128 (BLK128x128) across it.
// k_rows: K runs along the stored rows (transA, or B not transposed).
struct Fp8Form {
    bool ok = false, block = false, e5m2 = false;
};
Fp8Form fp8_form(const BlockQuantSpec& s, bool k_rows) {
    Fp8Form f;
    if (!s.scaled || (s.format != ElementFormat::E4M3 && s.format != ElementFormat::E5M2))
        return f;
    const int64_t along_k = k_rows ? s.tile.rows : s.tile.cols;
    const int64_t across = k_rows ? s.tile.cols : s.tile.rows;
    if (along_k != 128 || (across != 1 && across != 128)) return f;
    f.ok = true;
    f.block = across == 128;
    f.e5m2 = s.format == ElementFormat::E5M2;
    return f;
}

}  // namespace

CudaBackend::CudaBackend(int device) : device_(device), alloc_(device) {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess)
        throw Error(std::string("CUDA backend: no usable CUDA driver or device (cudaGetDeviceCount: ") +
                    cudaGetErrorString(e) + ")");
    if (device < 0 || device >= count)
        throw Error("CUDA backend: device cuda:" + std::to_string(device) + " does not exist (" +
                    std::to_string(count) + " CUDA device(s) found)");
    check(cudaSetDevice(device), "init", "cudaSetDevice");
    // MOE_CUDA_REFERENCE_PATHS=1: the model's attention keeps its probabilities and the routed
    // experts loop gemm per expert (the paths before the fused and grouped kernels), for an
    // A/B comparison on one machine.
    if (const char* ref = std::getenv("MOE_CUDA_REFERENCE_PATHS"); ref && std::string(ref) == "1")
        reference_paths_ = true;
    cublasHandle_t h = nullptr;
    check_blas(cublasCreate(&h), "init", "cublasCreate");
    cublas_ = h;
    // fp32 path: plain SGEMM, no TF32 tensor-core rounding of the operands.
    check_blas(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "init", "cublasSetMathMode");
    check_blas(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST), "init", "cublasSetPointerMode");
    if (!reference_paths_) fp8_ = std::make_unique<Fp8BlockGemm>(device);
    int major = 0, smem = 0;
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "init",
          "cudaDeviceGetAttribute");
    check(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "init",
          "cudaDeviceGetAttribute");
    cc_major_ = major;
    smem_optin_ = smem;
}

std::string CudaBackend::describe() const {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device_) != cudaSuccess) return "cuda:" + std::to_string(device_);
    char mem[32];
    std::snprintf(mem, sizeof mem, "%.1f GiB", double(prop.totalGlobalMem) / double(1ull << 30));
    return "cuda:" + std::to_string(device_) + " (" + prop.name + ", " + mem + ")";
}

CudaBackend::~CudaBackend() {
    // No throwing here: failures at teardown (a dead context) are ignored.
    for (void* p : scratch_)
        if (p) cudaFree(p);
    if (cublas_) cublasDestroy(blas(cublas_));
    if (check_flags_) cudaFree(check_flags_);
}

void* CudaBackend::scratch(int slot, size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (scratch_bytes_[slot] < bytes) {
        if (scratch_[slot]) check(cudaFree(scratch_[slot]), "scratch", "cudaFree");
        scratch_[slot] = nullptr;
        scratch_bytes_[slot] = 0;
        check(cudaMalloc(&scratch_[slot], bytes), "scratch", "cudaMalloc");
        scratch_bytes_[slot] = bytes;
    }
    return scratch_[slot];
}

// kFlag holds a double result at offset 8 (scalar reductions).

// Index checks are deferred: each checking op gets its own flag (reset with an asynchronous
// memset, lowered by the kernel to the first bad row), and the host reads all flags at once
// when it next waits for the device anyway (flush_checks: every scalar result, and the model's
// end of a forward pass). A step then has no synchronisation for its checks; an invalid index
// still ends in an Error naming the op, the value and the row, one sync later.
int* CudaBackend::defer_check(const char* op, const int32_t* values,
                              std::function<std::string(int, int32_t)> describe) {
    if (pending_.size() >= kMaxPending) flush_checks();
    if (!check_flags_) check(cudaMalloc(&check_flags_, sizeof(int) * kMaxPending), op, "cudaMalloc");
    int* flag = static_cast<int*>(check_flags_) + pending_.size();
    check(cudaMemsetAsync(flag, kNoBadRowByte, sizeof(int)), op, "cudaMemsetAsync");
    pending_.push_back({op, values, std::move(describe)});
    return flag;
}

void CudaBackend::flush_checks() {
    if (pending_.empty()) return;
    // Member buffers (cleared, capacity kept): a steady-state step allocates nothing here.
    check_rows_.resize(pending_.size());
    const cudaError_t copied = cudaMemcpy(check_rows_.data(), check_flags_,
                                          sizeof(int) * check_rows_.size(), cudaMemcpyDeviceToHost);
    int none = 0;
    std::memset(&none, kNoBadRowByte, sizeof none);
    std::string failure;
    for (size_t i = 0; copied == cudaSuccess && failure.empty() && i < pending_.size(); ++i) {
        const int row = check_rows_[i];
        if (row == none) continue;
        int32_t value = 0;
        if (cudaMemcpy(&value, pending_[i].values + row, sizeof value, cudaMemcpyDeviceToHost) !=
            cudaSuccess)
            value = -1;
        failure = std::string(pending_[i].op) + ": " + pending_[i].describe(row, value);
    }
    pending_.clear();  // reported once, even when this throws
    check(copied, "flush_checks", "cudaMemcpy");
    if (!failure.empty()) throw Error(failure);
}

namespace {

double fetch_result(void* flag_slot, const char* op) {
    double v = 0.0;
    check(cudaMemcpy(&v, static_cast<char*>(flag_slot) + 8, sizeof(v), cudaMemcpyDeviceToHost),
          op, "cudaMemcpy");
    return v;
}

}  // namespace

// --- GEMM: row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so the operands
// go to cuBLAS swapped, each with its own transpose flag and leading dimension unchanged.
void CudaBackend::gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                       float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // empty product: only beta * C remains (beta == 0 overwrites, as in BLAS)
        launch(kern::scale_2d(C, ldc, M, N, beta, true), "gemm");
        return;
    }
    check_blas(cublasSgemm(blas(cublas_), transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                           transA ? CUBLAS_OP_T : CUBLAS_OP_N, to_int(N, "gemm", "N"),
                           to_int(M, "gemm", "M"), to_int(K, "gemm", "K"), &alpha, B,
                           to_int(ldb, "gemm", "ldb"), A, to_int(lda, "gemm", "lda"), &beta, C,
                           to_int(ldc, "gemm", "ldc")),
               "gemm", "cublasSgemm");
}

// Casts a stored [rows, cols] operand into dst (dense) as fake_quantize would.
void CudaBackend::cast_operand(const char* op, const float* src, int64_t rows, int64_t cols,
                               int64_t ld, const BlockQuantSpec& spec, int slot, float* dst) {
    if (spec.tile.rows < 0 || spec.tile.cols < 0)
        throw ConfigError("tile", "extents must be >= 0, got " + std::to_string(spec.tile.rows) +
                                      "x" + std::to_string(spec.tile.cols));
    if (ld < cols)
        throw ConfigError("ld_x", "must be >= cols (" + std::to_string(cols) + "), got " +
                                      std::to_string(ld));
    kern::CastArgs a{};
    a.tile_rows = spec.tile.rows == 0 ? std::max<int64_t>(rows, 1) : spec.tile.rows;
    a.tile_cols = spec.tile.cols == 0 ? std::max<int64_t>(cols, 1) : spec.tile.cols;
    a.max_finite = format_max(spec.format);
    a.scaled = spec.scaled;
    a.pow2_scales = spec.pow2_scales;
    a.bf16 = spec.format == ElementFormat::BF16;
    // As engine/quant's element_cast: FP8 and every scaled cast saturate; an unscaled
    // BF16/FP16 cast overflows to +-Inf.
    switch (spec.format) {
        case ElementFormat::E4M3: a.mantissa_bits = 3; a.min_exponent = -6; a.saturate = true; break;
        case ElementFormat::E5M2: a.mantissa_bits = 2; a.min_exponent = -14; a.saturate = true; break;
        case ElementFormat::FP16: a.mantissa_bits = 10; a.min_exponent = -14; a.saturate = spec.scaled; break;
        case ElementFormat::BF16: a.mantissa_bits = 7; a.min_exponent = -126; a.saturate = spec.scaled; break;
        case ElementFormat::FP32: break;  // not called for FP32
    }
    const int64_t tiles = ((rows + a.tile_rows - 1) / a.tile_rows) *
                          ((cols + a.tile_cols - 1) / a.tile_cols);
    float* scales = static_cast<float*>(scratch(slot, sizeof(float) * tiles));
    launch(kern::fake_quantize(src, rows, cols, ld, a, scales, dst), op);
}

void CudaBackend::gemm_quantized(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                                 float alpha, const float* A, int64_t lda,
                                 const BlockQuantSpec& a_spec, const float* B, int64_t ldb,
                                 const BlockQuantSpec& b_spec, float beta, float* C,
                                 int64_t ldc) {
    if (M <= 0 || N <= 0 || K <= 0) {
        gemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const int64_t a_rows = transA ? K : M, a_cols = transA ? M : K;
    const int64_t b_rows = transB ? N : K, b_cols = transB ? K : N;
    // FP32 is the identity: that operand is used in place.
    const float* qa = A;
    int64_t qlda = lda;
    if (a_spec.format != ElementFormat::FP32) {
        float* dst = static_cast<float*>(scratch(kQuantA, sizeof(float) * a_rows * a_cols));
        cast_operand("gemm_quantized", A, a_rows, a_cols, lda, a_spec, kScalesA, dst);
        qa = dst;
        qlda = a_cols;
    }
    const float* qb = B;
    int64_t qldb = ldb;
    if (b_spec.format != ElementFormat::FP32) {
        float* dst = static_cast<float*>(scratch(kQuantB, sizeof(float) * b_rows * b_cols));
        cast_operand("gemm_quantized", B, b_rows, b_cols, ldb, b_spec, kScalesB, dst);
        qb = dst;
        qldb = b_cols;
    }
    if (try_fp8(transA, transB, M, N, K, alpha, qa, a_spec, qb, b_spec, beta, C, ldc)) return;
    const bool bf16 = a_spec.format == ElementFormat::BF16 && !a_spec.scaled &&
                      b_spec.format == ElementFormat::BF16 && !b_spec.scaled;
    if (!bf16) {
        gemm(transA, transB, M, N, K, alpha, qa, qlda, qb, qldb, beta, C, ldc);
        return;
    }
    // bf16 on tensor cores: the operands, already rounded to bf16 by the same cast as the CPU
    // emulation, as bf16 bit patterns; fp32 accumulation and output. Products of two bf16
    // values are exact in fp32, so this differs from the emulation only in the sum order.
    uint16_t* ha = static_cast<uint16_t*>(scratch(kWorkA, sizeof(uint16_t) * a_rows * a_cols));
    uint16_t* hb = static_cast<uint16_t*>(scratch(kWorkB, sizeof(uint16_t) * b_rows * b_cols));
    launch(kern::to_bf16_bits(qa, a_rows * a_cols, ha), "gemm_quantized");
    launch(kern::to_bf16_bits(qb, b_rows * b_cols, hb), "gemm_quantized");
    check_blas(cublasGemmEx(blas(cublas_), transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                            transA ? CUBLAS_OP_T : CUBLAS_OP_N, to_int(N, "gemm_quantized", "N"),
                            to_int(M, "gemm_quantized", "M"), to_int(K, "gemm_quantized", "K"),
                            &alpha, hb, CUDA_R_16BF, to_int(b_cols, "gemm_quantized", "ldb"), ha,
                            CUDA_R_16BF, to_int(a_cols, "gemm_quantized", "lda"), &beta, C,
                            CUDA_R_32F, to_int(ldc, "gemm_quantized", "ldc"),
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "gemm_quantized", "cublasGemmEx (bf16)");
}

// FP8 on Hopper's tensor cores: the operands, already cast by cast_operand exactly as the CPU
// emulation casts them (same codes, same scales), packed K contiguous with cuBLASLt's scale
// layouts, then one block-scaled cublasLtMatmul. It differs from the emulation only in the
// order of the sums (and the tensor cores' accumulator inside each 128-long K chunk). false:
// not this recipe, not Hopper, or a shape cuBLASLt does not take - the caller multiplies the
// fake-quantized fp32 values instead.
bool CudaBackend::try_fp8(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                          const float* qa, const BlockQuantSpec& a_spec, const float* qb,
                          const BlockQuantSpec& b_spec, float beta, float* C, int64_t ldc) {
    if (!fp8_ || !fp8_->available()) return false;
    const Fp8Form fa = fp8_form(a_spec, transA), fb = fp8_form(b_spec, !transB);
    if (!fa.ok || !fb.ok || (fa.e5m2 && fb.e5m2)) return false;
    if (!Fp8BlockGemm::shape_ok(M, N, K, C, ldc)) return false;
    const int64_t a_rows = transA ? K : M, a_cols = transA ? M : K;
    const int64_t b_rows = transB ? N : K, b_cols = transB ? K : N;
    const int64_t kb = (K + 127) / 128, kb4 = (kb + 3) / 4 * 4;
    auto lt_scale_count = [&](const Fp8Form& f, int64_t outer) {
        return f.block ? ((outer + 127) / 128) * kb4 : outer * kb;
    };
    Fp8Operand a{static_cast<uint8_t*>(scratch(kCodesA, size_t(M * K))),
                 static_cast<float*>(scratch(kLtScalesA, sizeof(float) * lt_scale_count(fa, M))),
                 fa.block, fa.e5m2};
    Fp8Operand b{static_cast<uint8_t*>(scratch(kCodesB, size_t(N * K))),
                 static_cast<float*>(scratch(kLtScalesB, sizeof(float) * lt_scale_count(fb, N))),
                 fb.block, fb.e5m2};
    launch(kern::pack_fp8_operand(qa, a_rows, a_cols, static_cast<const float*>(scratch_[kScalesA]),
                                  a_spec.tile.rows, a_spec.tile.cols, transA, fa.e5m2, fa.block,
                                  const_cast<uint8_t*>(a.codes), const_cast<float*>(a.scales)),
           "gemm_quantized");
    launch(kern::pack_fp8_operand(qb, b_rows, b_cols, static_cast<const float*>(scratch_[kScalesB]),
                                  b_spec.tile.rows, b_spec.tile.cols, !transB, fb.e5m2, fb.block,
                                  const_cast<uint8_t*>(b.codes), const_cast<float*>(b.scales)),
           "gemm_quantized");
    return fp8_->run(M, N, K, alpha, a, b, beta, C, ldc);
}

void CudaBackend::residual_rmsnorm_forward(const float* a, const float* b, const float* w,
                                           int64_t rows, int64_t dim, float eps, float* sum,
                                           float* y, float* rstd) {
    launch(kern::residual_rmsnorm_forward(a, b, w, rows, dim, eps, sum, y, rstd),
           "residual_rmsnorm_forward");
}

void CudaBackend::residual_add(const float* a, const float* b, int64_t n, float* out) {
    launch(kern::residual_add(a, b, n, out), "residual_add");
}

void CudaBackend::causal_softmax(float* s, int64_t n, int64_t H, int64_t cols, int64_t start,
                                 int64_t window, float scale) {
    check_causal_softmax(n, H, cols, start);
    launch(kern::causal_softmax(s, n, H, cols, start, window, scale), "causal_softmax");
}

// --- elementwise, copies, sums ---

void CudaBackend::copy_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                          int64_t rows, int64_t cols) {
    launch(kern::copy_2d(src, src_stride, dst, dst_stride, rows, cols, false), "copy_2d");
}

void CudaBackend::add_2d(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                         int64_t rows, int64_t cols) {
    launch(kern::copy_2d(src, src_stride, dst, dst_stride, rows, cols, true), "add_2d");
}

void CudaBackend::zero(float* x, int64_t n) {
    if (n > 0) check(cudaMemsetAsync(x, 0, sizeof(float) * n), "zero", "cudaMemsetAsync");
}

void CudaBackend::scale(float* x, float alpha, int64_t n) {
    // A plain product (x * 0 keeps NaN as NaN, as on the CPU), not BLAS's beta == 0 rule.
    launch(kern::scale_2d(x, n, 1, n, alpha, false), "scale");
}

double CudaBackend::sum(const float* x, int64_t n) {
    void* flag = scratch(kFlag, 16);
    auto* partials = static_cast<double*>(scratch(kPartials, sizeof(double) * kern::reduce_blocks(n)));
    launch(kern::reduce_float(x, n, false, partials, reinterpret_cast<double*>(static_cast<char*>(flag) + 8)), "sum");
    const double r = fetch_result(flag, "sum");
    flush_checks();  // the host waited for the device anyway
    return r;
}

double CudaBackend::sum_squares(const float* x, int64_t n) {
    void* flag = scratch(kFlag, 16);
    auto* partials = static_cast<double*>(scratch(kPartials, sizeof(double) * kern::reduce_blocks(n)));
    launch(kern::reduce_float(x, n, true, partials, reinterpret_cast<double*>(static_cast<char*>(flag) + 8)), "sum_squares");
    const double r = fetch_result(flag, "sum_squares");
    flush_checks();
    return r;
}

// --- embedding ---

void CudaBackend::embedding_forward(const int32_t* tokens, int64_t n, const float* table,
                                    int64_t vocab, int64_t dim, float* out) {
    int* bad = defer_check("embedding_forward", tokens, [vocab](int row, int32_t value) {
        return "token " + std::to_string(value) + " at row " + std::to_string(row) +
               " is outside the vocabulary [0, " + std::to_string(vocab) + ")";
    });
    launch(kern::embedding_forward(tokens, n, table, vocab, dim, out, bad), "embedding_forward");
}

void CudaBackend::embedding_backward(const int32_t* tokens, int64_t n, const float* dout,
                                     int64_t vocab, int64_t dim, float* dtable) {
    int* bad = defer_check("embedding_backward", tokens, [vocab](int row, int32_t value) {
        return "token " + std::to_string(value) + " at row " + std::to_string(row) +
               " is outside the vocabulary [0, " + std::to_string(vocab) + ")";
    });
    launch(kern::embedding_backward(tokens, n, dout, vocab, dim, dtable, bad), "embedding_backward");
}

// --- norm, rope, attention, swiglu ---

void CudaBackend::rmsnorm_forward(const float* x, int64_t x_stride, const float* w, int64_t rows,
                                  int64_t dim, float eps, float* y, int64_t y_stride,
                                  float* rstd) {
    launch(kern::rmsnorm_forward(x, x_stride, w, rows, dim, eps, y, y_stride, rstd), "rmsnorm_forward");
}

void CudaBackend::rmsnorm_backward(const float* dy, int64_t dy_stride, const float* x,
                                   int64_t x_stride, const float* w, const float* rstd,
                                   int64_t rows, int64_t dim, float* dx, int64_t dx_stride,
                                   float* dw) {
    launch(kern::rmsnorm_backward(dy, dy_stride, x, x_stride, w, rstd, rows, dim, dx, dx_stride, dw),
           "rmsnorm_backward");
}

void CudaBackend::rope(float* x, int64_t rows, int64_t row_stride, int64_t heads,
                       int64_t head_stride, int64_t offset, int64_t rope_dim,
                       const int32_t* positions, const RopeParams& rope, bool inverse) {
    const kern::RopeArgs a{rope.theta, rope.factor, rope.ramp_low, rope.ramp_high, rope.mscale};
    launch(kern::rope(x, rows, row_stride, heads, head_stride, offset, rope_dim, positions, a, inverse),
           "rope");
}

namespace {

void check_attention(const char* op, int64_t B, int64_t T, int64_t H, int64_t window) {
    if (window < 0) throw Error(std::string(op) + ": window must be >= 0, got " + std::to_string(window));
    if (B * H > 65535 || T > INT_MAX)
        throw Error(std::string(op) + ": B*H = " + std::to_string(B * H) +
                    " exceeds the CUDA kernel's grid limit of 65535 (sequence, head) pairs");
}

}  // namespace

void CudaBackend::attention_forward(const float* q, const float* k, const float* v, int64_t B,
                                    int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                    int64_t window, float* probs, float* out) {
    check_attention("attention_forward", B, T, H, window);
    launch(kern::attention_forward(q, k, v, B, T, H, dk, dv, scale, window, probs, out),
           "attention_forward");
}

void CudaBackend::attention_backward(const float* dout, const float* q, const float* k,
                                     const float* v, const float* probs, int64_t B, int64_t T,
                                     int64_t H, int64_t dk, int64_t dv, float scale,
                                     int64_t window, float* dq, float* dk_, float* dv_) {
    check_attention("attention_backward", B, T, H, window);
    auto* dS = static_cast<float*>(scratch(kWorkA, sizeof(float) * B * H * T * T));
    launch(kern::attention_backward(dout, q, k, v, probs, B, T, H, dk, dv, scale, window, dS, dq,
                                    dk_, dv_),
           "attention_backward");
}

namespace {

void check_fused_attention(const char* op, int64_t B, int64_t T, int64_t H, int64_t dk,
                           int64_t dv, int64_t window) {
    if (window < 0) throw Error(std::string(op) + ": window must be >= 0, got " + std::to_string(window));
    const int64_t max_dim = kern::fused_attention_max_dim();
    if (dk > max_dim || dv > max_dim)
        throw Error(std::string(op) + ": head widths q/k " + std::to_string(dk) + " and v " +
                    std::to_string(dv) + " exceed the fused kernel's " + std::to_string(max_dim));
    if (B * H * T / 4 >= INT_MAX)
        throw Error(std::string(op) + ": B*H*T = " + std::to_string(B * H * T) +
                    " rows exceed the kernel's grid");
}

}  // namespace

bool CudaBackend::attention_on_tensor_cores(int64_t B, int64_t T, int64_t H, int64_t dk,
                                            int64_t dv) const {
    return !reference_paths_ && cc_major_ >= 8 && B * H <= 65535 && T > 0 &&
           kern::fused_attention_tc_smem(dk, dv) <= smem_optin_;
}

void CudaBackend::fused_attention_forward(const float* q, const float* k, const float* v,
                                          int64_t B, int64_t T, int64_t H, int64_t dk,
                                          int64_t dv, float scale, int64_t window, float* lse,
                                          float* out, AttentionMath math) {
    check_fused_attention("fused_attention_forward", B, T, H, dk, dv, window);
    if (math == AttentionMath::Bf16 && attention_on_tensor_cores(B, T, H, dk, dv)) {
        launch(kern::fused_attention_forward_tc(q, k, v, B, T, H, dk, dv, scale, window, lse, out),
               "fused_attention_forward (tensor cores)");
        ++attention_tc_calls_;
        return;
    }
    launch(kern::fused_attention_forward(q, k, v, B, T, H, dk, dv, scale, window, lse, out),
           "fused_attention_forward");
}

void CudaBackend::fused_attention_backward(const float* dout, const float* q, const float* k,
                                           const float* v, const float* out, const float* lse,
                                           int64_t B, int64_t T, int64_t H, int64_t dk,
                                           int64_t dv, float scale, int64_t window, float* dq,
                                           float* dk_, float* dv_, AttentionMath math) {
    check_fused_attention("fused_attention_backward", B, T, H, dk, dv, window);
    auto* dvec = static_cast<float*>(scratch(kWorkA, sizeof(float) * B * H * T));
    if (math == AttentionMath::Bf16 && attention_on_tensor_cores(B, T, H, dk, dv)) {
        launch(kern::fused_attention_backward_tc(dout, q, k, v, out, lse, B, T, H, dk, dv, scale,
                                                 window, dvec, dq, dk_, dv_),
               "fused_attention_backward (tensor cores)");
        ++attention_tc_calls_;
        return;
    }
    launch(kern::fused_attention_backward(dout, q, k, v, out, lse, B, T, H, dk, dv, scale, window,
                                          dvec, dq, dk_, dv_),
           "fused_attention_backward");
}

void CudaBackend::swiglu_forward(const float* g, const float* u, int64_t n, float* out) {
    launch(kern::swiglu_forward(g, u, n, out), "swiglu_forward");
}

void CudaBackend::swiglu_backward(const float* dout, const float* g, const float* u, int64_t n,
                                  float* dg, float* du) {
    launch(kern::swiglu_backward(dout, g, u, n, dg, du), "swiglu_backward");
}

// --- cross-entropy ---

void CudaBackend::cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n,
                                        int64_t vocab, float* losses) {
    int* bad = defer_check("cross_entropy_forward", targets, [vocab](int row, int32_t value) {
        return "target " + std::to_string(value) + " at row " + std::to_string(row) +
               " is outside the vocabulary [0, " + std::to_string(vocab) + ")";
    });
    launch(kern::cross_entropy_forward(logits, targets, n, vocab, losses, bad), "cross_entropy_forward");
}

void CudaBackend::cross_entropy_backward(const float* logits, const int32_t* targets, int64_t n,
                                         int64_t vocab, float scale, float* dlogits) {
    int* bad = defer_check("cross_entropy_backward", targets, [vocab](int row, int32_t value) {
        return "target " + std::to_string(value) + " at row " + std::to_string(row) +
               " is outside the vocabulary [0, " + std::to_string(vocab) + ")";
    });
    launch(kern::cross_entropy_backward(logits, targets, n, vocab, scale, dlogits, bad),
           "cross_entropy_backward");
}

// --- router and balance loss ---

void CudaBackend::moe_gate_forward(const float* logits, int64_t n, const GateParams& p,
                                   float* scores, int32_t* topk_idx, float* topk_weight) {
    validate_gate_params(p);
    const kern::GateArgs a = gate_args(p);
    auto* flags = static_cast<uint8_t*>(scratch(kWorkA, static_cast<size_t>(n * (a.E + a.G))));
    auto* gscore = static_cast<float*>(scratch(kWorkB, sizeof(float) * n * a.G));
    launch(kern::gate_forward(logits, n, a, scores, topk_idx, topk_weight, flags, gscore),
           "moe_gate_forward");
}

void CudaBackend::moe_gate_backward(const float* d_topk_weight, const float* d_scores_extra,
                                    const float* scores, const int32_t* topk_idx,
                                    const float* topk_weight, int64_t n, const GateParams& p,
                                    float* dlogits) {
    validate_gate_params(p);
    (void)topk_weight;  // recomputed from scores, as on the CPU
    launch(kern::gate_backward(d_topk_weight, d_scores_extra, scores, topk_idx, n, gate_args(p), dlogits),
           "moe_gate_backward");
}

double CudaBackend::seq_aux_loss_forward(const float* scores, const int32_t* topk_idx, int64_t B,
                                         int64_t T, int64_t E, int64_t K, float alpha) {
    if (B <= 0 || T <= 0) return 0.0;
    auto* f = static_cast<float*>(scratch(kWorkA, sizeof(float) * B * E));
    auto* terms = static_cast<double*>(scratch(kWorkB, sizeof(double) * B * T));
    launch(kern::seq_aux_terms(scores, topk_idx, B, T, E, K, f, terms), "seq_aux_loss_forward");
    void* flag = scratch(kFlag, 16);
    auto* partials = static_cast<double*>(scratch(kPartials, sizeof(double) * kern::reduce_blocks(B * T)));
    launch(kern::reduce_double(terms, B * T, partials,
                               reinterpret_cast<double*>(static_cast<char*>(flag) + 8)),
           "seq_aux_loss_forward");
    const double r = alpha * fetch_result(flag, "seq_aux_loss_forward") / (static_cast<double>(B) * T);
    flush_checks();
    return r;
}

void CudaBackend::seq_aux_loss_backward(const float* scores, const int32_t* topk_idx, int64_t B,
                                        int64_t T, int64_t E, int64_t K, float alpha,
                                        float dloss, float* d_scores) {
    if (B <= 0 || T <= 0) return;
    auto* f = static_cast<float*>(scratch(kWorkA, sizeof(float) * B * E));
    const double c = static_cast<double>(dloss) * alpha / (static_cast<double>(B) * T);
    launch(kern::seq_aux_backward(scores, topk_idx, B, T, E, K, c, f, d_scores), "seq_aux_loss_backward");
}

// --- dispatch ---

void CudaBackend::moe_route_plan(const int32_t* topk_idx, int64_t n, int64_t K, int64_t E,
                                 int64_t* offsets, int32_t* row_token, int32_t* slot_row) {
    int* bad = defer_check("moe_route_plan", topk_idx, [K, E](int row, int32_t value) {
        return "expert " + std::to_string(value) + " of token " + std::to_string(row / K) +
               " is outside [0, " + std::to_string(E) + ")";
    });
    // offsets stay on the device: the grouped expert GEMMs read them there.
    launch(kern::route_plan(topk_idx, n, K, E, offsets, row_token, slot_row, bad), "moe_route_plan");
}

namespace {

bool unscaled_bf16(const BlockQuantSpec* s) {
    return s && s->format == ElementFormat::BF16 && !s->scaled;
}

}  // namespace

// Which kernel serves a call: 0 fp32, 1 bf16 tensor cores, -1 the host loop.
int CudaBackend::grouped_kind(const GroupedCasts& casts) const {
    if (reference_paths_) return -1;
    if (casts.fp32()) return 0;
    if (unscaled_bf16(casts.a) && unscaled_bf16(casts.b)) return 1;
    return -1;
}

// The host loop for the other casts: offsets and the pointer table copied to the host, then
// Backend's default over host copies of the two small arrays (the matrices stay on the device).
template <class Ptr>
void CudaBackend::host_tables(const int64_t* offsets, int64_t groups, const Ptr* table,
                              std::vector<int64_t>& host_offsets, std::vector<Ptr>& host_table) {
    host_offsets.resize(static_cast<size_t>(groups + 1));
    host_table.resize(static_cast<size_t>(groups));
    check(cudaMemcpy(host_offsets.data(), offsets, sizeof(int64_t) * (groups + 1),
                     cudaMemcpyDeviceToHost),
          "grouped_linear", "cudaMemcpy");
    check(cudaMemcpy(host_table.data(), table, sizeof(Ptr) * groups, cudaMemcpyDeviceToHost),
          "grouped_linear", "cudaMemcpy");
}

void CudaBackend::grouped_linear_forward(const float* x, const int64_t* offsets, int64_t groups,
                                         int64_t rows, const float* const* w, int64_t in,
                                         int64_t out, float* y, const GroupedCasts& casts) {
    const int kind = grouped_kind(casts);
    if (kind < 0) {
        host_tables(offsets, groups, w, host_offsets_, host_w_table_);
        return Backend::grouped_linear_forward(x, host_offsets_.data(), groups, rows,
                                               host_w_table_.data(), in, out,
                                               y, casts);
    }
    auto* tiles = static_cast<int64_t*>(scratch(kWorkB, sizeof(int64_t) * (groups + 1)));
    launch(kern::grouped_linear_rows(x, offsets, groups, rows, w, in, out, y, false, kind == 1,
                                     tiles),
           "grouped_linear_forward");
}

void CudaBackend::grouped_linear_backward_data(const float* dy, const int64_t* offsets,
                                               int64_t groups, int64_t rows,
                                               const float* const* w, int64_t in, int64_t out,
                                               float* dx, const GroupedCasts& casts) {
    const int kind = grouped_kind(casts);
    if (kind < 0) {
        host_tables(offsets, groups, w, host_offsets_, host_w_table_);
        return Backend::grouped_linear_backward_data(dy, host_offsets_.data(), groups, rows,
                                                     host_w_table_.data(), in, out, dx, casts);
    }
    auto* tiles = static_cast<int64_t*>(scratch(kWorkB, sizeof(int64_t) * (groups + 1)));
    launch(kern::grouped_linear_rows(dy, offsets, groups, rows, w, in, out, dx, true, kind == 1,
                                     tiles),
           "grouped_linear_backward_data");
}

void CudaBackend::grouped_linear_backward_weight(const float* dy, const float* x,
                                                 const int64_t* offsets, int64_t groups,
                                                 int64_t rows, float* const* dw, int64_t in,
                                                 int64_t out, const GroupedCasts& casts) {
    const int kind = grouped_kind(casts);
    if (kind < 0) {
        host_tables(offsets, groups, dw, host_offsets_, host_dw_table_);
        return Backend::grouped_linear_backward_weight(dy, x, host_offsets_.data(), groups, rows,
                                                       host_dw_table_.data(), in, out, casts);
    }
    launch(kern::grouped_linear_wgrad(dy, x, offsets, groups, dw, in, out, kind == 1),
           "grouped_linear_backward_weight");
}

void CudaBackend::moe_permute(const float* x, const int32_t* row_token, int64_t rows, int64_t dim,
                              float* xp) {
    launch(kern::permute(x, row_token, rows, dim, xp), "moe_permute");
}

void CudaBackend::moe_permute_backward(const float* dxp, const int32_t* slot_row, int64_t n,
                                       int64_t K, int64_t dim, float* dx) {
    launch(kern::permute_backward(dxp, slot_row, n, K, dim, dx), "moe_permute_backward");
}

void CudaBackend::moe_unpermute(const float* yp, const float* w, const int32_t* slot_row,
                                int64_t n, int64_t K, int64_t dim, float* y) {
    launch(kern::unpermute(yp, w, slot_row, n, K, dim, y), "moe_unpermute");
}

void CudaBackend::moe_unpermute_backward(const float* dy, const float* yp, const float* w,
                                         const int32_t* slot_row, int64_t n, int64_t K,
                                         int64_t dim, float* dyp, float* dw) {
    launch(kern::unpermute_backward(dy, yp, w, slot_row, n, K, dim, dyp, dw), "moe_unpermute_backward");
}

// --- optimizer and balancing ---

void CudaBackend::adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                               float beta1, float beta2, float eps, float weight_decay,
                               float grad_scale, int64_t step) {
    const float bc1 = 1.0f - static_cast<float>(std::pow(double(beta1), double(step)));
    const float bc2 = 1.0f - static_cast<float>(std::pow(double(beta2), double(step)));
    launch(kern::adamw(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, grad_scale, bc1, bc2),
           "adamw_update");
}

// A handful of experts: the bias comes to the host, gets the CPU's exact update, goes back.
void CudaBackend::balance_bias_update(float* bias, const int64_t* counts, int64_t n_experts,
                                      float gamma) {
    if (n_experts <= 0) return;
    std::vector<float> b(static_cast<size_t>(n_experts));
    check(cudaMemcpy(b.data(), bias, sizeof(float) * n_experts, cudaMemcpyDeviceToHost),
          "balance_bias_update", "cudaMemcpy");
    double mean = 0.0;
    for (int64_t i = 0; i < n_experts; ++i) mean += double(counts[i]);
    mean /= double(n_experts);
    for (int64_t i = 0; i < n_experts; ++i) {
        const double c = double(counts[i]);
        const float sign = c < mean ? 1.0f : (c > mean ? -1.0f : 0.0f);
        b[i] += gamma * sign;
    }
    check(cudaMemcpy(bias, b.data(), sizeof(float) * n_experts, cudaMemcpyHostToDevice),
          "balance_bias_update", "cudaMemcpy");
}

}  // namespace moe::gpu
