// Fp8BlockGemm (fp8_gemm.h). The row-major C[M,N] = A B^T of the engine is cuBLASLt's
// column-major D[N,M] = op(A') op(B') with A' = the engine's B (codes [N,K], K contiguous:
// a K x N column-major matrix used transposed) and B' = the engine's A (K x M, not
// transposed): the "TN" form that FP8 tensor-core GEMMs require on Hopper.
#include "fp8_gemm.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <atomic>
#include <string>

#include "core/error.h"

namespace moe::gpu {

namespace {

constexpr size_t kWorkspace = size_t(32) << 20;  // cuBLAS's recommendation for Hopper

void check_lt(cublasStatus_t s, const char* call) {
    if (s != CUBLAS_STATUS_SUCCESS)
        throw Error(std::string("CUDA backend, fp8 GEMM: ") + call +
                    " failed: " + cublasGetStatusString(s));
}

std::atomic<int64_t> g_calls{0}, g_refusals{0};

cublasLtHandle_t lt(void* h) {
    return static_cast<cublasLtHandle_t>(h);
}

int32_t scale_mode(const Fp8Operand& op) {
    return op.block ? CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F
                    : CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
}

cudaDataType_t code_type(const Fp8Operand& op) {
    return op.e5m2 ? CUDA_R_8F_E5M2 : CUDA_R_8F_E4M3;
}

// cuBLASLt's A is the engine's B and the other way round (see the top of this file).
void set_scale_pointers(cublasLtMatmulDesc_t desc, const Fp8Operand& a, const Fp8Operand& b) {
    check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &b.scales,
                                            sizeof b.scales),
             "set A_SCALE_POINTER");
    check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &a.scales,
                                            sizeof a.scales),
             "set B_SCALE_POINTER");
}

}  // namespace

struct Fp8BlockGemm::Plan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    ~Plan() {
        if (c) cublasLtMatrixLayoutDestroy(c);
        if (b) cublasLtMatrixLayoutDestroy(b);
        if (a) cublasLtMatrixLayoutDestroy(a);
        if (desc) cublasLtMatmulDescDestroy(desc);
    }
};

Fp8BlockGemm::Fp8BlockGemm(int device) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) return;
    // CUDA 12.9's cuBLASLt is the first with the VEC128 / BLK128x128 modes.
    if (prop.major != 9 || cublasLtGetVersion() < 120900) return;
    // Any failure here leaves the FP8 path off (the emulation still runs), never the backend.
    cublasLtHandle_t h = nullptr;
    if (cublasLtCreate(&h) != CUBLAS_STATUS_SUCCESS) return;
    lt_ = h;
    if (cudaMalloc(&workspace_, kWorkspace) != cudaSuccess) {
        cudaGetLastError();  // clear it: the emulated path still works without the workspace
        workspace_ = nullptr;
        return;
    }
    available_ = true;
}

Fp8BlockGemm::~Fp8BlockGemm() {
    for (auto& [key, plan] : plans_) delete plan;
    if (workspace_) cudaFree(workspace_);
    if (lt_) cublasLtDestroy(lt(lt_));
}

bool Fp8BlockGemm::shape_ok(int64_t M, int64_t N, int64_t K, const float* C, int64_t ldc) {
    constexpr int64_t kMax = int64_t(1) << 21;
    return M > 0 && N > 0 && K > 0 && M % 16 == 0 && N % 16 == 0 && K % 16 == 0 && M < kMax &&
           N < kMax && K < kMax && ldc % 4 == 0 && ldc >= N &&
           reinterpret_cast<uintptr_t>(C) % 16 == 0;
}

Fp8BlockGemm::Plan* Fp8BlockGemm::plan_for(const Key& key, int64_t M, int64_t N, int64_t K,
                                           int64_t ldc, bool beta, const Fp8Operand& a,
                                           const Fp8Operand& b) {
    if (auto it = plans_.find(key); it != plans_.end()) return it->second;
    if (refused_.count(key)) return nullptr;
    auto* p = new Plan;
    try {
        check_lt(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                 "cublasLtMatmulDescCreate");
        const cublasOperation_t t = CUBLAS_OP_T, n = CUBLAS_OP_N;
        check_lt(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t),
                 "set TRANSA");
        check_lt(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof n),
                 "set TRANSB");
        // cuBLASLt's A is the engine's B and the other way round (see the top of this file).
        const int32_t mode_a = scale_mode(b), mode_b = scale_mode(a);
        check_lt(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode_a,
                                                sizeof mode_a),
                 "set A_SCALE_MODE");
        check_lt(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode_b,
                                                sizeof mode_b),
                 "set B_SCALE_MODE");
        // The scale pointers of this call: the algorithm does not depend on them, but some
        // cuBLASLt versions look at them while choosing one.
        set_scale_pointers(p->desc, a, b);
        check_lt(cublasLtMatrixLayoutCreate(&p->a, code_type(b), uint64_t(K), uint64_t(N), K),
                 "cublasLtMatrixLayoutCreate (A)");
        check_lt(cublasLtMatrixLayoutCreate(&p->b, code_type(a), uint64_t(K), uint64_t(M), K),
                 "cublasLtMatrixLayoutCreate (B)");
        check_lt(cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, uint64_t(N), uint64_t(M), ldc),
                 "cublasLtMatrixLayoutCreate (C)");
        cublasLtMatmulPreference_t pref = nullptr;
        check_lt(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
        const size_t ws = kWorkspace;
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                             sizeof ws);
        cublasLtMatmulHeuristicResult_t result{};
        int found = 0;
        const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(lt(lt_), p->desc, p->a, p->b, p->c,
                                                                p->c, pref, 1, &result, &found);
        cublasLtMatmulPreferenceDestroy(pref);
        (void)beta;  // part of the key: an algorithm chosen for beta 0 is not reused for beta 1
        if (s != CUBLAS_STATUS_SUCCESS || found == 0) {
            delete p;
            refused_.insert(key);
            return nullptr;
        }
        p->algo = result.algo;
    } catch (...) {
        delete p;
        throw;
    }
    plans_[key] = p;
    return p;
}

int64_t Fp8BlockGemm::process_calls() {
    return g_calls.load();
}
int64_t Fp8BlockGemm::process_refusals() {
    return g_refusals.load();
}

bool Fp8BlockGemm::run(int64_t M, int64_t N, int64_t K, float alpha, const Fp8Operand& a,
                       const Fp8Operand& b, float beta, float* C, int64_t ldc) {
    if (!available_ || !shape_ok(M, N, K, C, ldc)) {
        ++refusals_;
        ++g_refusals;
        return false;
    }
    const Key key{M, N, K, ldc, beta != 0.0f, a.block, a.e5m2, b.block, b.e5m2};
    Plan* p = plan_for(key, M, N, K, ldc, beta != 0.0f, a, b);
    if (!p) {
        ++refusals_;
        ++g_refusals;
        return false;
    }
    // The scale pointers change from call to call; the algorithm does not depend on them.
    set_scale_pointers(p->desc, a, b);
    check_lt(cublasLtMatmul(lt(lt_), p->desc, &alpha, b.codes, p->a, a.codes, p->b, &beta, C, p->c,
                            C, p->c, &p->algo, workspace_, kWorkspace, /*stream=*/0),
             "cublasLtMatmul");
    ++calls_;
    ++g_calls;
    return true;
}

}  // namespace moe::gpu
