// CpuBackend::gemm_quantized: cast both operands into scratch copies (fake quantization: the
// values a low-precision GEMM multiplies, already multiplied back by their tile scales), then one
// fp32 OpenBLAS GEMM. With tiles of 128 along K the scales are constant over each 128-long K
// chunk, so this equals DeepSeek's "multiply the chunk in FP8, scale, promote to an FP32
// accumulator" rule up to the order of the fp32 additions.
#include "backend/cpu/cpu_backend.h"

#include "quant/block_scaling.h"

namespace moe {

namespace {

// Casts a stored [rows, cols] operand (row stride ld) into dst (dense, row stride cols).
const float* cast_operand(const float* src, int64_t rows, int64_t cols, int64_t ld,
                          const BlockQuantSpec& spec, std::vector<float>& dst) {
    const auto n = static_cast<size_t>(rows * cols);
    if (dst.size() < n) dst.resize(n);
    fake_quantize(src, rows, cols, ld, spec, dst.data(), cols);
    return dst.data();
}

}  // namespace

void CpuBackend::gemm_quantized(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
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
    const float* qa = cast_operand(A, a_rows, a_cols, lda, a_spec, quant_a_);
    const float* qb = cast_operand(B, b_rows, b_cols, ldb, b_spec, quant_b_);
    gemm(transA, transB, M, N, K, alpha, qa, a_cols, qb, b_cols, beta, C, ldc);
}

}  // namespace moe
