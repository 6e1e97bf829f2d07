#pragma once
// Fp8BlockGemm: the FP8 GEMM of DeepSeek-V3's recipe on Hopper tensor cores, through cuBLASLt
// with fine-grained scales - activations one fp32 scale per 1x128 along K
// (CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F), weights one per 128x128 block
// (..._BLK128x128_32F); wgrad's 128x1 tiles are VEC128 along K once the operand is stored K
// contiguous. E4M3 codes (E5M2 for one operand at most), fp32 accumulation with cuBLASLt's
// promotion at each scale block, fp32 output, on the legacy default stream like every other
// CudaBackend op. No CUDA or cuBLAS headers here.
#include <cstdint>
#include <map>
#include <set>
#include <tuple>

namespace moe::gpu {

// One operand, K contiguous: codes [outer, K] (outer = M for A, N for B), scales in cuBLASLt's
// layout for its mode (kernels.h, pack_fp8_operand).
struct Fp8Operand {
    const uint8_t* codes = nullptr;
    const float* scales = nullptr;
    bool block = false;  // BLK128x128 (else VEC128)
    bool e5m2 = false;
};

class Fp8BlockGemm {
public:
    explicit Fp8BlockGemm(int device);
    ~Fp8BlockGemm();
    Fp8BlockGemm(const Fp8BlockGemm&) = delete;
    Fp8BlockGemm& operator=(const Fp8BlockGemm&) = delete;

    // A Hopper device (compute capability 9.x: the block scale modes are Hopper's; Blackwell's
    // tensor cores take MX scales instead) and a cuBLASLt that knows the modes (CUDA >= 12.9).
    bool available() const { return available_; }
    // Shapes the FP8 kernels take: M, N, K multiples of 16 (16-byte rows of codes), ldc a
    // multiple of 4 and C 16-byte aligned, extents below 2^21 (the packing kernel's grid).
    static bool shape_ok(int64_t M, int64_t N, int64_t K, const float* C, int64_t ldc);
    // C[M,N] (row-major, row stride ldc) = alpha * A[M,K] B[N,K]^T + beta * C. Returns false,
    // having done nothing, when cuBLASLt has no algorithm for this shape and pair of modes (the
    // caller then runs the emulation; the pair is remembered); throws moe::Error when a call
    // fails.
    bool run(int64_t M, int64_t N, int64_t K, float alpha, const Fp8Operand& a, const Fp8Operand& b,
             float beta, float* C, int64_t ldc);
    // GEMMs run here and GEMMs refused (fell back), since construction: the GPU test checks that
    // a Hopper device really ran the recipe on the tensor cores.
    int64_t calls() const { return calls_; }
    int64_t refusals() const { return refusals_; }
    // The same over every instance of the process (a training run's backend is gone when the
    // run returns).
    static int64_t process_calls();
    static int64_t process_refusals();

private:
    using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, bool, bool, bool, bool, bool>;
    struct Plan;
    Plan* plan_for(const Key& key, int64_t M, int64_t N, int64_t K, int64_t ldc, bool beta,
                   const Fp8Operand& a, const Fp8Operand& b);

    bool available_ = false;
    void* lt_ = nullptr;         // cublasLtHandle_t
    void* workspace_ = nullptr;  // device, kWorkspace bytes
    std::map<Key, Plan*> plans_;
    std::set<Key> refused_;
    int64_t calls_ = 0, refusals_ = 0;
};

}  // namespace moe::gpu
