// gpu_ops_test: every CudaBackend op against CpuBackend (the reference) on the same random
// inputs, forward and backward, plus the contract details: backward ops accumulate (gradient
// buffers start non-zero), invalid indices throw, results are bitwise reproducible run to run,
// the gate picks the same experts (ties included) and the fake-quantization cast is bit exact.
//
// Tolerances, as ||gpu - cpu|| / ||cpu|| (norm-relative, per output):
//   fp32 ops (GEMM, norms, attention, losses, optimizer): 1e-5 - the two differ only in the
//     order of fp32 sums and in the last bit of exp/sqrt; a wrong index gives O(1).
//   quantized GEMM: the cast operands must be bit identical (checked on their own, exactly);
//     the product then has the fp32 tolerance.
//   exact: copies, permutations, embedding forward, route plan, chosen experts, casts.
// A plain executable (no Qt Test: the GPU machine has no Qt). Without a device it prints
// "SKIP: no CUDA device (cudaGetDeviceCount: ...)" and exits 0; ctest reports it as skipped.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "model/linear_precision.h"
#include "quant/block_scaling.h"
#include "cuda_backend.h"
#include "skip_without_cuda.h"

namespace {

using moe::BlockQuantSpec;
using moe::ElementFormat;
using F = std::vector<float>;
using I = std::vector<int32_t>;

int g_failures = 0, g_checks = 0;

void cuda_check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// A device copy of a host vector; get() reads it back.
template <class T>
struct Dev {
    T* p = nullptr;
    size_t n = 0;
    explicit Dev(const std::vector<T>& h) : n(h.size()) {
        cuda_check(cudaMalloc(&p, sizeof(T) * std::max<size_t>(n, 1)), "cudaMalloc");
        if (n) cuda_check(cudaMemcpy(p, h.data(), sizeof(T) * n, cudaMemcpyHostToDevice), "cudaMemcpy");
    }
    ~Dev() { cudaFree(p); }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
    std::vector<T> get() const {
        std::vector<T> h(n);
        if (n) cuda_check(cudaMemcpy(h.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost), "cudaMemcpy");
        return h;
    }
};

std::mt19937 g_rng(1234);

F randn(size_t n, float scale = 1.0f) {
    std::normal_distribution<float> d(0.0f, scale);
    F v(n);
    for (float& x : v) x = d(g_rng);
    return v;
}

I randint(size_t n, int lo, int hi) {
    std::uniform_int_distribution<int> d(lo, hi - 1);
    I v(n);
    for (int32_t& x : v) x = d(g_rng);
    return v;
}

void report(const std::string& name, bool ok, const std::string& detail) {
    ++g_checks;
    if (!ok) ++g_failures;
    std::printf("%s %-44s %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
}

void expect_close(const std::string& name, const F& ref, const F& got, double tol = 1e-5) {
    if (ref.size() != got.size()) return report(name, false, "size mismatch");
    double num = 0.0, den = 0.0;
    bool nan = false;
    for (size_t i = 0; i < ref.size(); ++i) {
        if (std::isnan(got[i]) != std::isnan(ref[i])) nan = true;
        if (std::isnan(ref[i])) continue;
        const double d = double(got[i]) - ref[i];
        num += d * d;
        den += double(ref[i]) * ref[i];
    }
    const double err = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
    char buf[96];
    std::snprintf(buf, sizeof buf, "rel err %.2e (tol %.0e)%s", err, tol, nan ? " NaN mismatch" : "");
    report(name, !nan && err <= tol, buf);
}

template <class T>
void expect_equal(const std::string& name, const std::vector<T>& ref, const std::vector<T>& got) {
    const bool ok = ref.size() == got.size() &&
                    (ref.empty() || std::memcmp(ref.data(), got.data(), sizeof(T) * ref.size()) == 0);
    size_t diff = 0;
    for (size_t i = 0; i < std::min(ref.size(), got.size()); ++i)
        diff += std::memcmp(&ref[i], &got[i], sizeof(T)) != 0;
    report(name, ok, ok ? "bitwise equal" : std::to_string(diff) + " elements differ");
}

void expect_scalar(const std::string& name, double ref, double got, double tol = 1e-9) {
    const double err = std::fabs(got - ref) / std::max(1e-300, std::fabs(ref));
    char buf[96];
    std::snprintf(buf, sizeof buf, "cpu %.10g gpu %.10g rel %.1e", ref, got, err);
    report(name, err <= tol, buf);
}

void expect_throws(const std::string& name, const std::function<void()>& f) {
    try {
        f();
    } catch (const moe::Error& e) {
        return report(name, true, std::string("threw: ") + e.what());
    }
    report(name, false, "did not throw");
}

// --- the tests, one function per group of ops ---

void test_gemm(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    const int64_t M = 37, N = 29, K = 53, pad = 3;
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
            const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
            const F A = randn((ta ? K : M) * lda), B = randn((tb ? N : K) * ldb), C0 = randn(M * ldc);
            F C = C0;
            cpu.gemm(ta, tb, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, 0.3f, C.data(), ldc);
            Dev<float> dA(A), dB(B), dC(C0);
            gpu.gemm(ta, tb, M, N, K, 0.7f, dA.p, lda, dB.p, ldb, 0.3f, dC.p, ldc);
            expect_close("gemm transA=" + std::to_string(ta) + " transB=" + std::to_string(tb), C, dC.get());
        }
    F C = randn(6 * 5), Cg = C;
    C[3] = NAN;
    Cg[3] = NAN;
    Dev<float> dC(Cg);
    cpu.gemm(false, false, 6, 5, 0, 1.0f, nullptr, 1, nullptr, 5, 0.0f, C.data(), 5);
    gpu.gemm(false, false, 6, 5, 0, 1.0f, nullptr, 1, nullptr, 5, 0.0f, dC.p, 5);
    expect_equal("gemm K=0 beta=0 overwrites", C, dC.get());
}

// Quantized GEMM: with B the identity in FP32, C is exactly the cast of A, so the device cast
// is compared bit for bit with engine/quant's fake_quantize (via the CPU backend).
void test_gemm_quantized(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    const int64_t M = 150, K = 260;
    F A = randn(M * K);
    for (size_t i = 0; i < A.size(); i += 97) A[i] *= 300.0f;   // outliers in some tiles
    for (size_t i = 5; i < A.size(); i += 89) A[i] *= 1e-6f;    // values near the subnormals
    F Id(K * K, 0.0f);
    for (int64_t i = 0; i < K; ++i) Id[i * K + i] = 1.0f;
    const BlockQuantSpec fp32{ElementFormat::FP32, moe::kTile1x128, false, false};
    const struct { const char* name; BlockQuantSpec spec; } specs[] = {
        {"e4m3 1x128", {ElementFormat::E4M3, moe::kTile1x128, true, false}},
        {"e4m3 128x128 pow2", {ElementFormat::E4M3, moe::kTile128x128, true, true}},
        {"e5m2 128x1", {ElementFormat::E5M2, moe::kTile128x1, true, false}},
        {"e4m3 per-tensor", {ElementFormat::E4M3, moe::kPerTensor, true, false}},
        {"bf16 unscaled", {ElementFormat::BF16, moe::kTile1x128, false, false}},
        {"fp16 unscaled", {ElementFormat::FP16, moe::kTile1x128, false, false}},
        {"fp16 1x128", {ElementFormat::FP16, moe::kTile1x128, true, false}},
        {"bf16 128x128", {ElementFormat::BF16, moe::kTile128x128, true, true}},
    };
    Dev<float> dA(A), dI(Id);
    for (const auto& s : specs) {
        for (int ta = 0; ta < 2; ++ta) {
            // transA: A is the stored [K', M'] = [M, K] buffer read transposed, C is [K, M].
            const int64_t m = ta ? K : M, k = ta ? M : K;
            F Ib(k * k, 0.0f);
            for (int64_t i = 0; i < k; ++i) Ib[i * k + i] = 1.0f;
            Dev<float> dIb(Ib);
            F C(m * k, 0.0f);
            cpu.gemm_quantized(ta, false, m, k, k, 1.0f, A.data(), K, s.spec, Ib.data(), k, fp32, 0.0f,
                               C.data(), k);
            Dev<float> dC{F(m * k, 0.0f)};
            gpu.gemm_quantized(ta, false, m, k, k, 1.0f, dA.p, K, s.spec, dIb.p, k, fp32, 0.0f, dC.p, k);
            F got = dC.get();
            for (float& c : C) c += 0.0f;  // -0 and +0 alike (the sum of x*0 terms decides it)
            for (float& c : got) c += 0.0f;
            expect_equal(std::string("fake-quantize cast ") + s.name + (ta ? " (transA)" : ""), C, got);
        }
    }
    // A general quantized product, both operands cast (activation 1x128, weight 128x128, B [N,K]).
    const int64_t N = 70;
    const F W = randn(N * K, 0.05f);
    F C(M * N, 0.0f);
    const BlockQuantSpec act{ElementFormat::E4M3, moe::kTile1x128, true, false};
    const BlockQuantSpec wt{ElementFormat::E4M3, moe::kTile128x128, true, false};
    cpu.gemm_quantized(false, true, M, N, K, 1.0f, A.data(), K, act, W.data(), K, wt, 0.0f, C.data(), N);
    Dev<float> dW(W), dC{F(M * N, 0.0f)};
    gpu.gemm_quantized(false, true, M, N, K, 1.0f, dA.p, K, act, dW.p, K, wt, 0.0f, dC.p, N);
    expect_close("gemm_quantized e4m3 act x weight^T", C, dC.get());
}

// FP8 on Hopper's tensor cores (cuBLASLt, DeepSeek's scales) against the CPU emulation, for the
// three GEMMs of a projection: fprop y = x W^T (1x128 x 128x128), dgrad dx += dy W (1x128 x
// 128x128, W not transposed), wgrad dW += dy^T x (128x1 x 128x1). Both sides multiply the same
// E4M3 codes and scales (the casts are checked bit exact above); they differ in the order of
// the sums and in the tensor cores' accumulator inside each 128-long K chunk (about 14 bits,
// promoted to fp32 at each scale block). Tolerance per element: 2^-10 of the sum of |a_k b_k|
// over K (the bound of such rounding, with margin) plus 1e-6 - a wrong scale layout or a
// wrong block is off by the ratio of two scales, far outside it. On a device that is not
// Hopper the recipe falls back to the emulation and the check still runs (and says so).
void test_fp8_tensor_cores(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    const bool hopper = prop.major == 9 && gpu.fp8_gemm() && gpu.fp8_gemm()->available();
    const BlockQuantSpec act{ElementFormat::E4M3, moe::kTile1x128, true, false};
    const BlockQuantSpec wt{ElementFormat::E4M3, moe::kTile128x128, true, false};
    const BlockQuantSpec wg{ElementFormat::E4M3, moe::kTile128x1, true, false};
    const int64_t calls0 = gpu.fp8_gemm() ? gpu.fp8_gemm()->calls() : 0;
    int cases = 0;
    for (const int64_t K : {384, 320}) {  // 320: a partial last K block
        const int64_t M = 256, N = 192;
        struct Case {
            const char* name;
            bool ta, tb;
            BlockQuantSpec sa, sb;
            float beta;
        } list[] = {{"fprop x W^T", false, true, act, wt, 0.0f},
                    {"dgrad dy W", false, false, act, wt, 1.0f},
                    {"wgrad dy^T x", true, false, wg, wg, 1.0f}};
        for (const Case& c : list) {
            const int64_t a_rows = c.ta ? K : M, a_cols = c.ta ? M : K;
            const int64_t b_rows = c.tb ? N : K, b_cols = c.tb ? K : N;
            F A = randn(a_rows * a_cols), B = randn(b_rows * b_cols, 0.05f);
            for (size_t i = 0; i < A.size(); i += 131) A[i] *= 50.0f;  // outliers in some tiles
            const F C0 = c.beta != 0.0f ? randn(M * N) : F(M * N, 0.0f);
            F C = C0;
            cpu.gemm_quantized(c.ta, c.tb, M, N, K, 1.0f, A.data(), a_cols, c.sa, B.data(), b_cols,
                               c.sb, c.beta, C.data(), N);
            Dev<float> dA(A), dB(B), dC(C0);
            gpu.gemm_quantized(c.ta, c.tb, M, N, K, 1.0f, dA.p, a_cols, c.sa, dB.p, b_cols, c.sb,
                               c.beta, dC.p, N);
            const F got = dC.get();
            // The emulated operands, for the bound.
            F qa(A.size()), qb(B.size());
            moe::fake_quantize(A.data(), a_rows, a_cols, a_cols, c.sa, qa.data(), a_cols);
            moe::fake_quantize(B.data(), b_rows, b_cols, b_cols, c.sb, qb.data(), b_cols);
            double worst = 0.0;
            for (int64_t m = 0; m < M; ++m)
                for (int64_t n = 0; n < N; ++n) {
                    double bound = 0.0;
                    for (int64_t k = 0; k < K; ++k) {
                        const float a = c.ta ? qa[k * M + m] : qa[m * K + k];
                        const float b = c.tb ? qb[n * K + k] : qb[k * N + n];
                        bound += std::fabs(double(a) * b);
                    }
                    const double err = std::fabs(double(got[m * N + n]) - C[m * N + n]);
                    worst = std::max(worst, err / (std::ldexp(bound, -10) + 1e-6));
                }
            char buf[128];
            std::snprintf(buf, sizeof buf, "worst error / tolerance %.3f (%s)", worst,
                          hopper ? "tensor cores" : "emulation: not Hopper");
            report(std::string("fp8 ") + c.name + " K=" + std::to_string(K), worst <= 1.0, buf);
            ++cases;
        }
    }
    if (hopper) {
        const int64_t ran = gpu.fp8_gemm()->calls() - calls0;
        report("fp8 recipe ran on the tensor cores", ran == cases,
               std::to_string(ran) + " of " + std::to_string(cases) + " GEMMs through cuBLASLt");
    } else {
        std::printf("NOTE fp8 tensor-core path not available (compute capability %d.%d): the "
                    "fp8 checks above ran the emulation\n", prop.major, prop.minor);
    }
}

void test_elementwise(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    const F src = randn(20 * 13), dst0 = randn(20 * 11);
    F a = dst0, b = dst0;
    cpu.copy_2d(src.data(), 13, a.data(), 11, 20, 9);
    cpu.add_2d(src.data() + 2, 13, b.data(), 11, 20, 9);
    Dev<float> ds(src), da(dst0), db(dst0);
    gpu.copy_2d(ds.p, 13, da.p, 11, 20, 9);
    gpu.add_2d(ds.p + 2, 13, db.p, 11, 20, 9);
    expect_equal("copy_2d", a, da.get());
    expect_equal("add_2d", b, db.get());

    F x = randn(10007);
    Dev<float> dx(x);
    expect_scalar("sum", cpu.sum(x.data(), 10007), gpu.sum(dx.p, 10007), 1e-9);
    expect_scalar("sum_squares", cpu.sum_squares(x.data(), 10007), gpu.sum_squares(dx.p, 10007), 1e-12);
    const double s1 = gpu.sum(dx.p, 10007), s2 = gpu.sum(dx.p, 10007);
    report("sum is bitwise reproducible", s1 == s2, "");
    expect_scalar("sum n=0", 0.0, gpu.sum(dx.p, 0) + 1.0 - 1.0, 0.0);
    cpu.scale(x.data(), -1.5f, 10007);
    gpu.scale(dx.p, -1.5f, 10007);
    expect_equal("scale", x, dx.get());
    cpu.zero(x.data(), 5000);
    gpu.zero(dx.p, 5000);
    expect_equal("zero", x, dx.get());

    const int64_t n = 5000;
    const F g = randn(n, 3.0f), u = randn(n), dout = randn(n), dg0 = randn(n), du0 = randn(n);
    F out(n), dg = dg0, du = du0;
    cpu.swiglu_forward(g.data(), u.data(), n, out.data());
    cpu.swiglu_backward(dout.data(), g.data(), u.data(), n, dg.data(), du.data());
    Dev<float> dG(g), dU(u), dO{F(n)}, dD(dout), dDG(dg0), dDU(du0);
    gpu.swiglu_forward(dG.p, dU.p, n, dO.p);
    gpu.swiglu_backward(dD.p, dG.p, dU.p, n, dDG.p, dDU.p);
    expect_close("swiglu_forward", out, dO.get());
    expect_close("swiglu_backward dg (accumulates)", dg, dDG.get());
    expect_close("swiglu_backward du (accumulates)", du, dDU.get());

    // AdamW, three steps.
    F p = randn(n), m(n, 0.0f), v(n, 0.0f);
    Dev<float> dP(p), dM(m), dV(v);
    for (int step = 1; step <= 3; ++step) {
        const F grad = randn(n);
        Dev<float> dGr(grad);
        cpu.adamw_update(p.data(), grad.data(), m.data(), v.data(), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, step);
        gpu.adamw_update(dP.p, dGr.p, dM.p, dV.p, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, step);
    }
    expect_close("adamw_update params (3 steps)", p, dP.get(), 1e-6);
    expect_close("adamw_update m", m, dM.get(), 1e-6);
    expect_close("adamw_update v", v, dV.get(), 1e-6);

    F bias = randn(8);
    const std::vector<int64_t> counts = {5, 9, 7, 7, 0, 12, 7, 9};
    Dev<float> dBias(bias);
    cpu.balance_bias_update(bias.data(), counts.data(), 8, 1e-3f);
    gpu.balance_bias_update(dBias.p, counts.data(), 8, 1e-3f);
    expect_equal("balance_bias_update", bias, dBias.get());
}

void test_embedding(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    const int64_t vocab = 50, dim = 33, n = 300;
    const I tok = randint(n, 0, vocab);  // many repeats
    const F table = randn(vocab * dim), dout = randn(n * dim), dt0 = randn(vocab * dim);
    F out(n * dim), dt = dt0;
    cpu.embedding_forward(tok.data(), n, table.data(), vocab, dim, out.data());
    cpu.embedding_backward(tok.data(), n, dout.data(), vocab, dim, dt.data());
    Dev<int32_t> dTok(tok);
    Dev<float> dTable(table), dOut{F(n * dim)}, dDout(dout), dDt(dt0);
    gpu.embedding_forward(dTok.p, n, dTable.p, vocab, dim, dOut.p);
    gpu.embedding_backward(dTok.p, n, dDout.p, vocab, dim, dDt.p);
    expect_equal("embedding_forward", out, dOut.get());
    expect_equal("embedding_backward (token order, accumulates)", dt, dDt.get());
    I badtok = tok;
    badtok[17] = vocab;
    Dev<int32_t> dBad(badtok);
    expect_throws("embedding_forward rejects token >= vocab",
                  [&] { gpu.embedding_forward(dBad.p, n, dTable.p, vocab, dim, dOut.p); gpu.flush_checks(); });
}

void test_norm_rope(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    const int64_t rows = 45, dim = 300, xs = 310, ys = 305;
    const F x = randn(rows * xs), w = randn(dim), dy = randn(rows * ys), dx0 = randn(rows * xs),
            dw0 = randn(dim);
    F y(rows * ys, 0.0f), rstd(rows), dx = dx0, dw = dw0;
    cpu.rmsnorm_forward(x.data(), xs, w.data(), rows, dim, 1e-6f, y.data(), ys, rstd.data());
    cpu.rmsnorm_backward(dy.data(), ys, x.data(), xs, w.data(), rstd.data(), rows, dim, dx.data(), xs, dw.data());
    Dev<float> dX(x), dW(w), dY{F(rows * ys, 0.0f)}, dR{F(rows)}, dDY(dy), dDX(dx0), dDW(dw0);
    gpu.rmsnorm_forward(dX.p, xs, dW.p, rows, dim, 1e-6f, dY.p, ys, dR.p);
    gpu.rmsnorm_backward(dDY.p, ys, dX.p, xs, dW.p, dR.p, rows, dim, dDX.p, xs, dDW.p);
    expect_close("rmsnorm_forward y", y, dY.get());
    expect_close("rmsnorm_forward rstd", rstd, dR.get());
    expect_close("rmsnorm_backward dx (accumulates)", dx, dDX.get());
    expect_close("rmsnorm_backward dw (accumulates)", dw, dDW.get());

    // The fused residual joints: against the CPU (the unfused ops), and bit for bit against the
    // GPU's own unfused ops (same tree).
    {
        const int64_t rr = 37, d = dim, n_add = rr * d - 1;  // odd: the float4 path has a tail
        const F a = randn(rr * d), b = randn(rr * d);
        F sum(rr * d), y(rr * d), rs(rr), out(rr * d);
        cpu.residual_rmsnorm_forward(a.data(), b.data(), w.data(), rr, d, 1e-6f, sum.data(), y.data(), rs.data());
        cpu.residual_add(a.data(), b.data(), n_add, out.data());
        Dev<float> dA(a), dB(b), dS{F(rr * d)}, dYf{F(rr * d)}, dRs{F(rr)}, dO{F(rr * d)};
        gpu.residual_rmsnorm_forward(dA.p, dB.p, dW.p, rr, d, 1e-6f, dS.p, dYf.p, dRs.p);
        gpu.residual_add(dA.p, dB.p, n_add, dO.p);
        expect_equal("residual_rmsnorm_forward sum", sum, dS.get());
        expect_close("residual_rmsnorm_forward y", y, dYf.get());
        expect_equal("residual_add", out, dO.get());
        Dev<float> dS2{F(rr * d)}, dY2{F(rr * d)}, dR2{F(rr)};
        gpu.copy_2d(dA.p, d, dS2.p, d, rr, d);
        gpu.add_2d(dB.p, d, dS2.p, d, rr, d);
        gpu.rmsnorm_forward(dS2.p, d, dW.p, rr, d, 1e-6f, dY2.p, d, dR2.p);
        expect_equal("fused residual norm == unfused on the gpu", dY2.get(), dYf.get());
    }

    // RoPE on 2 of 3 heads' slices [offset, offset + rope_dim), positions up to 4000.
    const int64_t r2 = 20, heads = 3, hs = 40, rs = heads * hs + 7, rope_dim = 16, off = 24;
    F q = randn(r2 * rs);
    const I pos = randint(r2, 0, 4000);
    Dev<float> dQ(q);
    Dev<int32_t> dPos(pos);
    cpu.rope(q.data(), r2, rs, heads, hs, off, rope_dim, pos.data(), moe::RopeParams{10000.0}, false);
    gpu.rope(dQ.p, r2, rs, heads, hs, off, rope_dim, dPos.p, moe::RopeParams{10000.0}, false);
    expect_close("rope", q, dQ.get(), 1e-6);
    cpu.rope(q.data(), r2, rs, heads, hs, off, rope_dim, pos.data(), moe::RopeParams{10000.0}, true);
    gpu.rope(dQ.p, r2, rs, heads, hs, off, rope_dim, dPos.p, moe::RopeParams{10000.0}, true);
    expect_close("rope inverse", q, dQ.get(), 1e-6);
    // YaRN (DeepSeek-V3's: factor 40, ramp over pairs 10..23 of 32 at rope_dim 64 -> here the
    // same kind of blend on 16 dims) with a cos/sin factor.
    const moe::RopeParams yarn{10000.0, 40.0, 2.0, 6.0, 1.1};
    cpu.rope(q.data(), r2, rs, heads, hs, off, rope_dim, pos.data(), yarn, false);
    gpu.rope(dQ.p, r2, rs, heads, hs, off, rope_dim, dPos.p, yarn, false);
    expect_close("rope yarn", q, dQ.get(), 1e-6);
    cpu.rope(q.data(), r2, rs, heads, hs, off, rope_dim, pos.data(), yarn, true);
    gpu.rope(dQ.p, r2, rs, heads, hs, off, rope_dim, dPos.p, yarn, true);
    expect_close("rope yarn inverse", q, dQ.get(), 1e-6);
}

void test_attention(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    const int64_t B = 2, T = 70, H = 3, dk = 24, dv = 16;
    const float scale = 1.0f / std::sqrt(float(dk));
    for (int64_t window : {int64_t(0), int64_t(5), int64_t(64), int64_t(200)}) {
        const std::string tag = " window=" + std::to_string(window);
        const F q = randn(B * T * H * dk), k = randn(B * T * H * dk), v = randn(B * T * H * dv);
        const F dout = randn(B * T * H * dv), dq0 = randn(q.size()), dk0 = randn(k.size()), dv0 = randn(v.size());
        F probs(B * H * T * T, 7.0f), out(B * T * H * dv), dq = dq0, dkk = dk0, dvv = dv0;
        cpu.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, scale, window, probs.data(), out.data());
        cpu.attention_backward(dout.data(), q.data(), k.data(), v.data(), probs.data(), B, T, H, dk, dv, scale,
                               window, dq.data(), dkk.data(), dvv.data());
        Dev<float> dQ(q), dK(k), dV(v), dP{F(probs.size(), 7.0f)}, dO{F(out.size(), 7.0f)}, dD(dout), dDQ(dq0),
            dDK(dk0), dDV(dv0);
        gpu.attention_forward(dQ.p, dK.p, dV.p, B, T, H, dk, dv, scale, window, dP.p, dO.p);
        gpu.attention_backward(dD.p, dQ.p, dK.p, dV.p, dP.p, B, T, H, dk, dv, scale, window, dDQ.p, dDK.p, dDV.p);
        const F gp = dP.get();
        bool zeros = true;  // every masked entry must be exactly 0 (poisoned with 7 before)
        for (size_t i = 0; i < probs.size(); ++i)
            if (probs[i] == 0.0f && gp[i] != 0.0f) zeros = false;
        report("attention probs: masked entries are 0" + tag, zeros, "");
        expect_close("attention_forward probs" + tag, probs, gp);
        expect_close("attention_forward out" + tag, out, dO.get());
        expect_close("attention_backward dq" + tag, dq, dDQ.get());
        expect_close("attention_backward dk" + tag, dkk, dDK.get());
        expect_close("attention_backward dv" + tag, dvv, dDV.get());
        if (window == 5) {  // run to run: bitwise
            const F first = dDQ.get();
            Dev<float> dDQ2(dq0), dDK2(dk0), dDV2(dv0);
            gpu.attention_backward(dD.p, dQ.p, dK.p, dV.p, dP.p, B, T, H, dk, dv, scale, window, dDQ2.p, dDK2.p,
                                   dDV2.p);
            expect_equal("attention_backward reproducible" + tag, first, dDQ2.get());
        }
    }
}

// Fused (flash-style) attention on the GPU against the CPU's reference (Backend's host
// defaults, which tst_backend_ops checks against the probabilities path): MLA's unequal q/k and v
// widths (DeepSeek-V3's 192 / 128 and small-gpu's 96 / 64), windows, more than 32 keys per query
// (several chunks), and bitwise run-to-run reproducibility.
void test_fused_attention(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    struct Case { int64_t B, T, H, dk, dv, window; };
    for (const Case c : {Case{2, 70, 3, 24, 16, 0}, Case{2, 70, 3, 24, 16, 5}, Case{1, 100, 2, 96, 64, 0},
                         Case{1, 65, 2, 192, 128, 40}, Case{3, 33, 1, 8, 8, 200}}) {
        const std::string tag = " B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " dk=" +
                                std::to_string(c.dk) + " dv=" + std::to_string(c.dv) + " window=" +
                                std::to_string(c.window);
        const int64_t nq = c.B * c.T * c.H;
        const float scale = 1.0f / std::sqrt(float(c.dk));
        const F q = randn(nq * c.dk), k = randn(nq * c.dk), v = randn(nq * c.dv), dout = randn(nq * c.dv);
        const F dq0 = randn(q.size()), dk0 = randn(k.size()), dv0 = randn(v.size());
        F lse(c.B * c.H * c.T), out(nq * c.dv), dq = dq0, dkk = dk0, dvv = dv0;
        cpu.fused_attention_forward(q.data(), k.data(), v.data(), c.B, c.T, c.H, c.dk, c.dv, scale, c.window,
                                    lse.data(), out.data());
        cpu.fused_attention_backward(dout.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), c.B, c.T,
                                     c.H, c.dk, c.dv, scale, c.window, dq.data(), dkk.data(), dvv.data());
        Dev<float> dQ(q), dK(k), dV(v), dD(dout), dL{F(lse.size(), NAN)}, dO{F(out.size(), NAN)}, dDQ(dq0),
            dDK(dk0), dDV(dv0);
        gpu.fused_attention_forward(dQ.p, dK.p, dV.p, c.B, c.T, c.H, c.dk, c.dv, scale, c.window, dL.p, dO.p);
        gpu.fused_attention_backward(dD.p, dQ.p, dK.p, dV.p, dO.p, dL.p, c.B, c.T, c.H, c.dk, c.dv, scale,
                                     c.window, dDQ.p, dDK.p, dDV.p);
        expect_close("fused_attention_forward out" + tag, out, dO.get());
        expect_close("fused_attention_forward lse" + tag, lse, dL.get());
        expect_close("fused_attention_backward dq" + tag, dq, dDQ.get(), 1e-4);
        expect_close("fused_attention_backward dk" + tag, dkk, dDK.get(), 1e-4);
        expect_close("fused_attention_backward dv" + tag, dvv, dDV.get(), 1e-4);
        const F first = dDK.get();
        Dev<float> dDQ2(dq0), dDK2(dk0), dDV2(dv0);
        gpu.fused_attention_backward(dD.p, dQ.p, dK.p, dV.p, dO.p, dL.p, c.B, c.T, c.H, c.dk, c.dv, scale,
                                     c.window, dDQ2.p, dDK2.p, dDV2.p);
        expect_equal("fused_attention_backward reproducible" + tag, first, dDK2.get());
    }
    // AttentionMath::Bf16: the tensor-core kernels (64-query / 64-key tiles: several tiles,
    // partial last tiles, windows inside and across tiles) against the host reference with the
    // same bf16 operand rounding. Tolerance (relative L2): p and ds are rounded to bf16 at other
    // running maxima than the host's (the online softmax rescales per 64-key tile), each such
    // rounding off by up to 2^-9.
    for (const Case c : {Case{2, 70, 3, 24, 16, 0}, Case{1, 200, 2, 96, 64, 0}, Case{1, 200, 2, 96, 64, 37},
                         Case{1, 130, 2, 192, 128, 0}, Case{2, 33, 2, 8, 8, 100}, Case{1, 256, 1, 64, 64, 64}}) {
        const std::string tag = " bf16 tensor cores B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) +
                                " dk=" + std::to_string(c.dk) + " dv=" + std::to_string(c.dv) +
                                " window=" + std::to_string(c.window);
        if (!gpu.attention_on_tensor_cores(c.B, c.T, c.H, c.dk, c.dv)) {
            report("fused attention" + tag, true, "skipped: this device has no room for the tiles (SIMT runs)");
            continue;
        }
        const int64_t nq = c.B * c.T * c.H;
        const float scale = 1.0f / std::sqrt(float(c.dk));
        const F q = randn(nq * c.dk), k = randn(nq * c.dk), v = randn(nq * c.dv), dout = randn(nq * c.dv);
        const F dq0 = randn(q.size()), dk0 = randn(k.size()), dv0 = randn(v.size());
        F lse(c.B * c.H * c.T), out(nq * c.dv), dq = dq0, dkk = dk0, dvv = dv0;
        const auto bf = moe::AttentionMath::Bf16;
        cpu.fused_attention_forward(q.data(), k.data(), v.data(), c.B, c.T, c.H, c.dk, c.dv, scale, c.window,
                                    lse.data(), out.data(), bf);
        cpu.fused_attention_backward(dout.data(), q.data(), k.data(), v.data(), out.data(), lse.data(), c.B, c.T,
                                     c.H, c.dk, c.dv, scale, c.window, dq.data(), dkk.data(), dvv.data(), bf);
        Dev<float> dQ(q), dK(k), dV(v), dD(dout), dL{F(lse.size(), NAN)}, dO{F(out.size(), NAN)}, dDQ(dq0),
            dDK(dk0), dDV(dv0);
        const int64_t calls = gpu.attention_tc_calls();
        gpu.fused_attention_forward(dQ.p, dK.p, dV.p, c.B, c.T, c.H, c.dk, c.dv, scale, c.window, dL.p, dO.p, bf);
        gpu.fused_attention_backward(dD.p, dQ.p, dK.p, dV.p, dO.p, dL.p, c.B, c.T, c.H, c.dk, c.dv, scale,
                                     c.window, dDQ.p, dDK.p, dDV.p, bf);
        report("fused attention ran on the tensor cores" + tag, gpu.attention_tc_calls() == calls + 2,
               std::to_string(gpu.attention_tc_calls() - calls) + " passes");
        expect_close("fused_attention_forward out" + tag, out, dO.get(), 5e-3);
        expect_close("fused_attention_forward lse" + tag, lse, dL.get(), 1e-4);
        // The gradients accumulate onto random values: compare the increments.
        auto increment = [](F x, const F& x0) {
            for (size_t i = 0; i < x.size(); ++i) x[i] -= x0[i];
            return x;
        };
        expect_close("fused_attention_backward dq" + tag, increment(dq, dq0), increment(dDQ.get(), dq0), 1e-2);
        expect_close("fused_attention_backward dk" + tag, increment(dkk, dk0), increment(dDK.get(), dk0), 1e-2);
        expect_close("fused_attention_backward dv" + tag, increment(dvv, dv0), increment(dDV.get(), dv0), 1e-2);
        const F first = dDQ.get();
        Dev<float> dDQ2(dq0), dDK2(dk0), dDV2(dv0);
        gpu.fused_attention_backward(dD.p, dQ.p, dK.p, dV.p, dO.p, dL.p, c.B, c.T, c.H, c.dk, c.dv, scale,
                                     c.window, dDQ2.p, dDK2.p, dDV2.p, bf);
        expect_equal("fused_attention_backward reproducible" + tag, first, dDQ2.get());
    }
    expect_throws("fused attention refuses a head wider than the kernel's limit", [&] {
        gpu.fused_attention_forward(nullptr, nullptr, nullptr, 1, 4, 1, 512, 64, 1.0f, 0, nullptr, nullptr);
    });
}

void test_cross_entropy(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    const int64_t n = 40, vocab = 1000;
    const F logits = randn(n * vocab, 4.0f), d0 = randn(n * vocab);
    I targets = randint(n, 0, vocab);
    targets[3] = -1;
    targets[11] = -100;
    F losses(n), d = d0;
    cpu.cross_entropy_forward(logits.data(), targets.data(), n, vocab, losses.data());
    cpu.cross_entropy_backward(logits.data(), targets.data(), n, vocab, 0.25f, d.data());
    Dev<float> dL(logits), dLoss{F(n, 9.0f)}, dD(d0);
    Dev<int32_t> dT(targets);
    gpu.cross_entropy_forward(dL.p, dT.p, n, vocab, dLoss.p);
    gpu.cross_entropy_backward(dL.p, dT.p, n, vocab, 0.25f, dD.p);
    expect_close("cross_entropy_forward (ignored targets)", losses, dLoss.get());
    expect_close("cross_entropy_backward (accumulates)", d, dD.get());
    I bad = targets;
    bad[7] = vocab;
    Dev<int32_t> dBad(bad);
    expect_throws("cross_entropy_forward rejects target >= vocab",
                  [&] { gpu.cross_entropy_forward(dL.p, dBad.p, n, vocab, dLoss.p); gpu.flush_checks(); });
}

void test_gate(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    const int64_t n = 300, E = 32;
    struct Case { const char* name; int64_t K, G, topk_group; moe::ScoringFunc f; bool norm, bias, ties; };
    const Case cases[] = {
        {"sigmoid groups+bias", 6, 8, 3, moe::ScoringFunc::Sigmoid, true, true, false},
        {"softmax no groups", 4, 1, 1, moe::ScoringFunc::Softmax, false, false, false},
        {"sigmoid groups no bias", 4, 4, 2, moe::ScoringFunc::Sigmoid, true, false, false},
        {"ties (equal logits)", 5, 4, 2, moe::ScoringFunc::Sigmoid, true, true, true},
    };
    for (const Case& c : cases) {
        const std::string tag = std::string(" [") + c.name + "]";
        F logits = randn(n * E);
        F bias = c.ties ? F(E, 0.25f) : randn(E, 0.1f);
        if (c.ties)  // whole rows equal, or pairs of equal logits: every tie rule is exercised
            for (int64_t t = 0; t < n; ++t)
                for (int64_t e = 0; e < E; ++e)
                    logits[t * E + e] = t % 2 ? 0.5f : logits[t * E + (e & ~int64_t(1))];
        Dev<float> dBias(bias), dL(logits);
        moe::GateParams pc;
        pc.n_experts = E;
        pc.top_k = c.K;
        pc.n_group = c.G;
        pc.topk_group = c.topk_group;
        pc.scoring = c.f;
        pc.norm_topk_prob = c.norm;
        pc.routed_scaling_factor = 2.5f;
        pc.bias = c.bias ? bias.data() : nullptr;
        moe::GateParams pg = pc;
        pg.bias = c.bias ? dBias.p : nullptr;
        F scores(n * E), w(n * c.K);
        I idx(n * c.K);
        cpu.moe_gate_forward(logits.data(), n, pc, scores.data(), idx.data(), w.data());
        Dev<float> dS{F(n * E)}, dW{F(n * c.K)};
        Dev<int32_t> dIdx{I(n * c.K)};
        gpu.moe_gate_forward(dL.p, n, pg, dS.p, dIdx.p, dW.p);
        expect_close("moe_gate_forward scores" + tag, scores, dS.get(), 1e-6);
        expect_equal("moe_gate_forward chosen experts" + tag, idx, dIdx.get());
        expect_close("moe_gate_forward weights" + tag, w, dW.get(), 1e-6);
        // Backward from the CPU's own forward results (same experts on both).
        const F dw = randn(n * c.K), extra = randn(n * E), dl0 = randn(n * E);
        for (int with_extra = 0; with_extra < 2; ++with_extra) {
            F dl = dl0;
            cpu.moe_gate_backward(dw.data(), with_extra ? extra.data() : nullptr, scores.data(), idx.data(),
                                  w.data(), n, pc, dl.data());
            Dev<float> dDw(dw), dEx(extra), dSc(scores), dWt(w), dDl(dl0);
            Dev<int32_t> dI(idx);
            gpu.moe_gate_backward(dDw.p, with_extra ? dEx.p : nullptr, dSc.p, dI.p, dWt.p, n, pg, dDl.p);
            expect_close(std::string("moe_gate_backward") + (with_extra ? " +extra" : "") + tag, dl, dDl.get());
        }
    }
}

void test_balance_and_dispatch(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    const int64_t B = 3, T = 50, E = 16, K = 4, n = B * T, dim = 40;
    F scores = randn(n * E);
    for (float& s : scores) s = 1.0f / (1.0f + std::exp(-s));
    I idx(n * K);
    for (int64_t t = 0; t < n; ++t) {  // K distinct experts per token, skewed toward low ids
        std::vector<int> perm(E);
        for (int e = 0; e < E; ++e) perm[e] = e;
        for (int k = 0; k < K; ++k) {
            std::uniform_int_distribution<int> d(k, int(E) - 1 - (t % 3 == 0 ? 8 : 0));
            std::swap(perm[k], perm[std::max(k, d(g_rng))]);
            idx[t * K + k] = perm[k];
        }
    }
    Dev<float> dS(scores);
    Dev<int32_t> dI(idx);
    expect_scalar("seq_aux_loss_forward", cpu.seq_aux_loss_forward(scores.data(), idx.data(), B, T, E, K, 0.01f),
                  gpu.seq_aux_loss_forward(dS.p, dI.p, B, T, E, K, 0.01f), 1e-9);
    const F ds0 = randn(n * E);
    F ds = ds0;
    Dev<float> dDs(ds0);
    cpu.seq_aux_loss_backward(scores.data(), idx.data(), B, T, E, K, 0.01f, 1.5f, ds.data());
    gpu.seq_aux_loss_backward(dS.p, dI.p, B, T, E, K, 0.01f, 1.5f, dDs.p);
    expect_close("seq_aux_loss_backward (accumulates)", ds, dDs.get());

    std::vector<int64_t> off(E + 1);
    I row_token(n * K), slot_row(n * K);
    cpu.moe_route_plan(idx.data(), n, K, E, off.data(), row_token.data(), slot_row.data());
    Dev<int32_t> dRT{I(n * K, -1)}, dSR{I(n * K, -1)};
    Dev<int64_t> dOff{std::vector<int64_t>(E + 1, -1)};
    gpu.moe_route_plan(dI.p, n, K, E, dOff.p, dRT.p, dSR.p);
    expect_equal("moe_route_plan offsets (device)", off, dOff.get());
    expect_equal("moe_route_plan row_token", row_token, dRT.get());
    expect_equal("moe_route_plan slot_row", slot_row, dSR.get());
    I bad = idx;
    bad[9] = int32_t(E);
    Dev<int32_t> dBad(bad);
    expect_throws("moe_route_plan rejects expert >= E",
                  [&] { gpu.moe_route_plan(dBad.p, n, K, E, dOff.p, dRT.p, dSR.p); gpu.flush_checks(); });
    // Deferred: reported by the next scalar result too, and only once.
    expect_throws("a bad expert is reported by the next scalar result", [&] {
        gpu.moe_route_plan(dBad.p, n, K, E, dOff.p, dRT.p, dSR.p);
        (void)gpu.sum(dS.p, 1);
    });
    bool clean = true;
    try {
        gpu.flush_checks();
    } catch (const std::exception&) {
        clean = false;
    }
    report("no second report of a failure already thrown", clean, "");

    const int64_t rows = n * K;
    const F x = randn(n * dim), yp = randn(rows * dim), w = randn(n * K), dy = randn(n * dim),
            dx0 = randn(n * dim), y0 = randn(n * dim), dyp0 = randn(rows * dim), dw0 = randn(n * K),
            dxp = randn(rows * dim);
    F xp(rows * dim), dx = dx0, y = y0, dyp = dyp0, dwv = dw0;
    cpu.moe_permute(x.data(), row_token.data(), rows, dim, xp.data());
    cpu.moe_permute_backward(dxp.data(), slot_row.data(), n, K, dim, dx.data());
    cpu.moe_unpermute(yp.data(), w.data(), slot_row.data(), n, K, dim, y.data());
    cpu.moe_unpermute_backward(dy.data(), yp.data(), w.data(), slot_row.data(), n, K, dim, dyp.data(), dwv.data());
    Dev<int32_t> dRow(row_token), dSlot(slot_row);
    Dev<float> dX(x), dXp{F(rows * dim)}, dDxp(dxp), dDx(dx0), dYp(yp), dWt(w), dY(y0), dDy(dy), dDyp(dyp0),
        dDw(dw0);
    gpu.moe_permute(dX.p, dRow.p, rows, dim, dXp.p);
    gpu.moe_permute_backward(dDxp.p, dSlot.p, n, K, dim, dDx.p);
    gpu.moe_unpermute(dYp.p, dWt.p, dSlot.p, n, K, dim, dY.p);
    gpu.moe_unpermute_backward(dDy.p, dYp.p, dWt.p, dSlot.p, n, K, dim, dDyp.p, dDw.p);
    expect_equal("moe_permute", xp, dXp.get());
    expect_close("moe_permute_backward (accumulates)", dx, dDx.get(), 1e-6);
    expect_close("moe_unpermute (accumulates)", y, dY.get(), 1e-6);
    expect_close("moe_unpermute_backward dyp (accumulates)", dyp, dDyp.get(), 1e-6);
    expect_close("moe_unpermute_backward dw (accumulates)", dwv, dDw.get());
}

}  // namespace

// Grouped expert GEMMs against the CPU's per-group loop: uneven groups, empty groups (first,
// middle, last), sizes that are not multiples of the 64 x 64 tiles, and the pointer tables and
// offsets on the device.
void test_grouped_linear(moe::CpuBackend& cpu, moe::gpu::CudaBackend& gpu) {
    // fp32 (SIMT kernel), bf16 (tensor-core kernel, operands rounded on load) and fp8 (tiles:
    // the host loop of gemm_quantized), each against the CPU's per-group loop with the casts of
    // the precision mode's recipe.
    for (const moe::LinearPrecision mode : {moe::LinearPrecision::FP32, moe::LinearPrecision::BF16,
                                            moe::LinearPrecision::FP8}) {
        moe::LinearRecipe recipe;
        recipe.mode = mode;
        const moe::BlockQuantSpec act = recipe.activation(), wt = recipe.weight(), wg = recipe.wgrad_operand();
        const moe::GroupedCasts fc = recipe.quantized() ? moe::GroupedCasts{&act, &wt} : moe::GroupedCasts{};
        const moe::GroupedCasts wc = recipe.quantized() ? moe::GroupedCasts{&wg, &wg} : moe::GroupedCasts{};
        for (const auto& [groups, in, out] : {std::tuple<int64_t, int64_t, int64_t>{7, 72, 130},
                                              {3, 64, 64}, {64, 33, 17}, {4, 256, 128}}) {
            std::vector<int64_t> sizes(groups);
            for (int64_t g = 0; g < groups; ++g)
                sizes[g] = (g == 0 || g == groups / 2 || g == groups - 1) ? 0 : (g * 37) % 150 + 1;
            std::vector<int64_t> off(groups + 1, 0);
            for (int64_t g = 0; g < groups; ++g) off[g + 1] = off[g] + sizes[g];
            const int64_t rows = off[groups];
            const std::string tag = std::string(" ") + moe::to_string(mode) + " (groups " +
                                    std::to_string(groups) + ", in " + std::to_string(in) + ", out " +
                                    std::to_string(out) + ")";
            std::vector<F> w(groups), dw(groups);
            for (int64_t g = 0; g < groups; ++g) {
                w[g] = randn(out * in, 0.1f);
                dw[g] = randn(out * in);
            }
            const F x = randn(rows * in), dy = randn(rows * out), dx0 = randn(rows * in);
            std::vector<const float*> hw(groups);
            std::vector<float*> hdw(groups);
            std::vector<F> cdw = dw;
            for (int64_t g = 0; g < groups; ++g) {
                hw[g] = w[g].data();
                hdw[g] = cdw[g].data();
            }
            F y(rows * out), dx = dx0;
            cpu.grouped_linear_forward(x.data(), off.data(), groups, rows, hw.data(), in, out, y.data(), fc);
            cpu.grouped_linear_backward_data(dy.data(), off.data(), groups, rows, hw.data(), in, out, dx.data(),
                                             fc);
            cpu.grouped_linear_backward_weight(dy.data(), x.data(), off.data(), groups, rows, hdw.data(), in,
                                               out, wc);
            std::vector<std::unique_ptr<Dev<float>>> gw, gdw;
            std::vector<const float*> pw(groups);
            std::vector<float*> pdw(groups);
            for (int64_t g = 0; g < groups; ++g) {
                gw.push_back(std::make_unique<Dev<float>>(w[g]));
                gdw.push_back(std::make_unique<Dev<float>>(dw[g]));
                pw[g] = gw.back()->p;
                pdw[g] = gdw.back()->p;
            }
            Dev<const float*> dW(pw);
            Dev<float*> dDW(pdw);
            Dev<int64_t> dOff(off);
            Dev<float> dX(x), dDy(dy), dDx(dx0), dY{F(rows * out, NAN)};
            gpu.grouped_linear_forward(dX.p, dOff.p, groups, rows, dW.p, in, out, dY.p, fc);
            gpu.grouped_linear_backward_data(dDy.p, dOff.p, groups, rows, dW.p, in, out, dDx.p, fc);
            gpu.grouped_linear_backward_weight(dDy.p, dX.p, dOff.p, groups, rows, dDW.p, in, out, wc);
            expect_close("grouped_linear_forward" + tag, y, dY.get());
            expect_close("grouped_linear_backward_data" + tag, dx, dDx.get());
            for (int64_t g = 0; g < groups; ++g)
                expect_close("grouped_linear_backward_weight group " + std::to_string(g) + tag, cdw[g],
                             gdw[g]->get(), 1e-4);
        }
    }
}

int main() {
    if (moe::gpu::test::skip_without_cuda()) return 0;
    try {
        cudaDeviceProp prop{};
        cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
        std::printf("device 0: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
        moe::CpuBackend cpu(2);
        moe::gpu::CudaBackend gpu(0);
        test_gemm(cpu, gpu);
        test_gemm_quantized(cpu, gpu);
        test_fp8_tensor_cores(cpu, gpu);
        test_elementwise(cpu, gpu);
        test_embedding(cpu, gpu);
        test_norm_rope(cpu, gpu);
        test_attention(cpu, gpu);
        test_fused_attention(cpu, gpu);
        test_cross_entropy(cpu, gpu);
        test_gate(cpu, gpu);
        test_balance_and_dispatch(cpu, gpu);
        test_grouped_linear(cpu, gpu);
        int count = 0;
        cuda_check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
        expect_throws("CudaBackend rejects a missing device", [&] { moe::gpu::CudaBackend(count + 3); });
        cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    } catch (const std::exception& ex) {
        std::printf("FAIL: %s\n", ex.what());
        return 1;
    }
    std::printf("%d of %d checks passed\n", g_checks - g_failures, g_checks);
    return g_failures == 0 ? 0 : 1;
}
