// moe-bench-gpu: one transformer block's training step (attention + routed MoE FFN, forward and
// backward, AdamW on every weight) built from CudaBackend ops on device memory, timed with CUDA
// events after warm-up; prints tokens/s and MFU against a stated peak. The same program with
// --iters 1 --warmup 0 is the "training step" scripts/gpu-test.sh runs under compute-sanitizer.
//
// Block (pre-norm): h = rms(x); q,k,v = h Wq^T, h Wk^T, h Wv^T; rope(q, k); a = attn(q, k, v);
// x2 = x + a Wo^T; h2 = rms(x2); gate(h2 Wr^T) -> top-k; y = x2 + sum_k w_k SwiGLU_e(h2).
// Loss: 0.5 * ||y||^2 per token (dy = y), enough to drive every backward op.
// FLOPs counted: GEMMs (2 M N K; backward twice the forward) and the attention band
// (forward 2 * visible * (dk + dv), backward twice that); elementwise work is not counted.
// Routed experts two ways in one run (--moe both, the default): "grouped" (one launch per
// projection, Backend::grouped_linear_*, route plan on the device) and "loop" (one cuBLAS SGEMM
// per expert and projection, the plan's offsets copied to the host); the ratio is printed.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/error.h"
#include "cuda_backend.h"

namespace {

void ck(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

class Arena {
public:
    ~Arena() {
        for (void* p : ptrs_) cudaFree(p);
    }
    template <class T>
    T* alloc(int64_t n) {
        void* p = nullptr;
        ck(cudaMalloc(&p, sizeof(T) * std::max<int64_t>(n, 1)), "cudaMalloc");
        ptrs_.push_back(p);
        return static_cast<T*>(p);
    }
    float* randn(int64_t n, float scale, uint32_t seed) {
        std::vector<float> h(static_cast<size_t>(n));
        std::mt19937 rng(seed);
        std::normal_distribution<float> d(0.0f, scale);
        for (float& x : h) x = d(rng);
        float* p = alloc<float>(n);
        ck(cudaMemcpy(p, h.data(), sizeof(float) * n, cudaMemcpyHostToDevice), "cudaMemcpy");
        return p;
    }

private:
    std::vector<void*> ptrs_;
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"moe-bench-gpu: a MoE block's training step on the CUDA backend"};
    int64_t B = 8, T = 1024, D = 1024, H = 16, hd = 64, E = 64, K = 6, F = 512, window = 0;
    int iters = 20, warmup = 3, device = 0;
    double peak_tflops = 67.0;
    app.add_option("--batch", B, "Sequences");
    app.add_option("--seq", T, "Tokens per sequence");
    app.add_option("--dim", D, "Model width");
    app.add_option("--heads", H, "Attention heads");
    app.add_option("--head-dim", hd, "Head width (q, k and v)");
    app.add_option("--experts", E, "Routed experts");
    app.add_option("--topk", K, "Experts per token");
    app.add_option("--ffn", F, "Expert hidden width");
    app.add_option("--window", window, "Sliding attention window (0 = full causal)");
    app.add_option("--iters", iters, "Timed steps");
    app.add_option("--warmup", warmup, "Untimed steps first");
    app.add_option("--device", device, "CUDA device index");
    std::string moe_mode = "both", attention = "fused";
    app.add_option("--attention", attention,
                   "fused (flash-style, fp32 SIMT), fused-bf16 (tensor cores, bf16 operands) or probs "
                   "(the probabilities kept)")
        ->check(CLI::IsMember({"fused", "fused-bf16", "probs"}));
    app.add_option("--moe", moe_mode, "Routed experts: grouped, loop, or both (timed one after the other)")
        ->check(CLI::IsMember({"grouped", "loop", "both"}));
    app.add_option("--peak-tflops", peak_tflops,
                   "Peak for MFU, TFLOP/s (default 67: H100 SXM dense FP32, non-tensor; the "
                   "fp32 path uses no tensor cores)");
    CLI11_PARSE(app, argc, argv);
    const moe::AttentionMath attention_math =
        attention == "fused-bf16" ? moe::AttentionMath::Bf16 : moe::AttentionMath::Fp32;

    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        std::printf("SKIP: no CUDA device\n");
        return 0;
    }
    try {
        moe::gpu::CudaBackend be(device);
        Arena a;
        const int64_t n = B * T, HD = H * hd, rows = n * K;
        const float scale = 1.0f / std::sqrt(float(hd));
        // Weights (with grads, AdamW moments).
        struct W { float *w, *g, *m, *v; int64_t n; };
        std::vector<W> weights;
        auto weight = [&](int64_t count, float s) {
            W w{a.randn(count, s, uint32_t(weights.size() + 1)), a.alloc<float>(count), a.alloc<float>(count),
                a.alloc<float>(count), count};
            be.zero(w.m, count);
            be.zero(w.v, count);
            weights.push_back(w);
            return weights.size() - 1;
        };
        const size_t wn1 = weight(D, 0.0f), wn2 = weight(D, 0.0f);
        const size_t wq = weight(HD * D, 0.02f), wk = weight(HD * D, 0.02f), wv = weight(HD * D, 0.02f),
                     wo = weight(D * HD, 0.02f), wr = weight(E * D, 0.02f);
        const size_t wg = weight(E * F * D, 0.02f), wu = weight(E * F * D, 0.02f), wd = weight(E * D * F, 0.02f);
        {  // norm weights are 1
            std::vector<float> ones(static_cast<size_t>(D), 1.0f);
            for (size_t i : {wn1, wn2})
                ck(cudaMemcpy(weights[i].w, ones.data(), sizeof(float) * D, cudaMemcpyHostToDevice), "cudaMemcpy");
        }
        float* x = a.randn(n * D, 1.0f, 99);
        std::vector<int32_t> pos_h(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) pos_h[i] = static_cast<int32_t>(i % T);
        int32_t* pos = a.alloc<int32_t>(n);
        ck(cudaMemcpy(pos, pos_h.data(), sizeof(int32_t) * n, cudaMemcpyHostToDevice), "cudaMemcpy");
        // Activations and their gradients.
        float *h = a.alloc<float>(n * D), *r1 = a.alloc<float>(n), *q = a.alloc<float>(n * HD),
              *k = a.alloc<float>(n * HD), *v = a.alloc<float>(n * HD), *probs = a.alloc<float>(attention == "probs" ? B * H * T * T : 1),
              *lse = a.alloc<float>(B * H * T),
              *att = a.alloc<float>(n * HD), *x2 = a.alloc<float>(n * D), *h2 = a.alloc<float>(n * D),
              *r2 = a.alloc<float>(n), *logits = a.alloc<float>(n * E), *scores = a.alloc<float>(n * E),
              *tw = a.alloc<float>(n * K), *xp = a.alloc<float>(rows * D), *gp = a.alloc<float>(rows * F),
              *up = a.alloc<float>(rows * F), *ap = a.alloc<float>(rows * F), *yp = a.alloc<float>(rows * D),
              *y = a.alloc<float>(n * D);
        float *dx2 = a.alloc<float>(n * D), *dh2 = a.alloc<float>(n * D), *dyp = a.alloc<float>(rows * D),
              *dtw = a.alloc<float>(n * K), *dap = a.alloc<float>(rows * F), *dgp = a.alloc<float>(rows * F),
              *dup = a.alloc<float>(rows * F), *dxp = a.alloc<float>(rows * D), *dlog = a.alloc<float>(n * E),
              *datt = a.alloc<float>(n * HD), *dq = a.alloc<float>(n * HD), *dk = a.alloc<float>(n * HD),
              *dv = a.alloc<float>(n * HD), *dh = a.alloc<float>(n * D), *dx = a.alloc<float>(n * D);
        int32_t *idx = a.alloc<int32_t>(n * K), *row_token = a.alloc<int32_t>(rows),
                *slot_row = a.alloc<int32_t>(rows);
        std::vector<int64_t> offsets(static_cast<size_t>(E + 1));
        int64_t* d_offsets = a.alloc<int64_t>(E + 1);
        // The experts' weight and gradient pointer tables (each expert's matrix is a slice).
        std::vector<const float*> tw_h(static_cast<size_t>(3 * E));
        std::vector<float*> tg_h(static_cast<size_t>(3 * E));
        for (int64_t e = 0; e < E; ++e) {
            tw_h[e] = weights[wg].w + e * F * D;
            tw_h[E + e] = weights[wu].w + e * F * D;
            tw_h[2 * E + e] = weights[wd].w + e * D * F;
            tg_h[e] = weights[wg].g + e * F * D;
            tg_h[E + e] = weights[wu].g + e * F * D;
            tg_h[2 * E + e] = weights[wd].g + e * D * F;
        }
        const float** w_table = a.alloc<const float*>(3 * E);
        float** g_table = a.alloc<float*>(3 * E);
        ck(cudaMemcpy(w_table, tw_h.data(), sizeof(void*) * 3 * E, cudaMemcpyHostToDevice), "cudaMemcpy");
        ck(cudaMemcpy(g_table, tg_h.data(), sizeof(void*) * 3 * E, cudaMemcpyHostToDevice), "cudaMemcpy");
        bool grouped = moe_mode != "loop";
        moe::GateParams gate;
        gate.n_experts = E;
        gate.top_k = K;

        double gemm_flops = 0.0;  // per step, forward + backward
        auto step = [&](int64_t s, bool count) {
            for (const W& w : weights) be.zero(w.g, w.n);
            // forward
            be.rmsnorm_forward(x, D, weights[wn1].w, n, D, 1e-6f, h, D, r1);
            be.gemm(false, true, n, HD, D, 1.0f, h, D, weights[wq].w, D, 0.0f, q, HD);
            be.gemm(false, true, n, HD, D, 1.0f, h, D, weights[wk].w, D, 0.0f, k, HD);
            be.gemm(false, true, n, HD, D, 1.0f, h, D, weights[wv].w, D, 0.0f, v, HD);
            be.rope(q, n, HD, H, hd, 0, hd, pos, moe::RopeParams{10000.0}, false);
            be.rope(k, n, HD, H, hd, 0, hd, pos, moe::RopeParams{10000.0}, false);
            if (attention != "probs")
                be.fused_attention_forward(q, k, v, B, T, H, hd, hd, scale, window, lse, att, attention_math);
            else
                be.attention_forward(q, k, v, B, T, H, hd, hd, scale, window, probs, att);
            be.copy_2d(x, D, x2, D, n, D);
            be.gemm(false, true, n, D, HD, 1.0f, att, HD, weights[wo].w, HD, 1.0f, x2, D);
            be.rmsnorm_forward(x2, D, weights[wn2].w, n, D, 1e-6f, h2, D, r2);
            be.gemm(false, true, n, E, D, 1.0f, h2, D, weights[wr].w, D, 0.0f, logits, E);
            be.moe_gate_forward(logits, n, gate, scores, idx, tw);
            be.moe_route_plan(idx, n, K, E, d_offsets, row_token, slot_row);
            be.moe_permute(h2, row_token, rows, D, xp);
            double f = 2.0 * n * D * HD * 4 + 2.0 * n * E * D + 2.0 * rows * F * D * 3;
            if (grouped) {
                be.grouped_linear_forward(xp, d_offsets, E, rows, w_table, D, F, gp);
                be.grouped_linear_forward(xp, d_offsets, E, rows, w_table + E, D, F, up);
                be.swiglu_forward(gp, up, rows * F, ap);
                be.grouped_linear_forward(ap, d_offsets, E, rows, w_table + 2 * E, F, D, yp);
            } else {
                ck(cudaMemcpy(offsets.data(), d_offsets, sizeof(int64_t) * (E + 1), cudaMemcpyDeviceToHost),
                   "cudaMemcpy");
                for (int64_t e = 0; e < E; ++e) {
                    const int64_t r0 = offsets[e], m = offsets[e + 1] - r0;
                    if (m == 0) continue;
                    be.gemm(false, true, m, F, D, 1.0f, xp + r0 * D, D, weights[wg].w + e * F * D, D, 0.0f, gp + r0 * F, F);
                    be.gemm(false, true, m, F, D, 1.0f, xp + r0 * D, D, weights[wu].w + e * F * D, D, 0.0f, up + r0 * F, F);
                    be.swiglu_forward(gp + r0 * F, up + r0 * F, m * F, ap + r0 * F);
                    be.gemm(false, true, m, D, F, 1.0f, ap + r0 * F, F, weights[wd].w + e * D * F, F, 0.0f, yp + r0 * D, D);
                }
            }
            be.copy_2d(x2, D, y, D, n, D);
            be.moe_unpermute(yp, tw, slot_row, n, K, D, y);
            // backward: dy = y
            be.copy_2d(y, D, dx2, D, n, D);
            be.zero(dyp, rows * D);
            be.zero(dtw, n * K);
            be.moe_unpermute_backward(y, yp, tw, slot_row, n, K, D, dyp, dtw);
            be.zero(dap, rows * F);
            be.zero(dgp, rows * F);
            be.zero(dup, rows * F);
            be.zero(dxp, rows * D);
            if (grouped) {
                be.grouped_linear_backward_data(dyp, d_offsets, E, rows, w_table + 2 * E, F, D, dap);
                be.grouped_linear_backward_weight(dyp, ap, d_offsets, E, rows, g_table + 2 * E, F, D);
                be.swiglu_backward(dap, gp, up, rows * F, dgp, dup);
                be.grouped_linear_backward_data(dgp, d_offsets, E, rows, w_table, D, F, dxp);
                be.grouped_linear_backward_data(dup, d_offsets, E, rows, w_table + E, D, F, dxp);
                be.grouped_linear_backward_weight(dgp, xp, d_offsets, E, rows, g_table, D, F);
                be.grouped_linear_backward_weight(dup, xp, d_offsets, E, rows, g_table + E, D, F);
            } else {
                for (int64_t e = 0; e < E; ++e) {
                    const int64_t r0 = offsets[e], m = offsets[e + 1] - r0;
                    if (m == 0) continue;
                    be.gemm(false, false, m, F, D, 1.0f, dyp + r0 * D, D, weights[wd].w + e * D * F, F, 0.0f, dap + r0 * F, F);
                    be.gemm(true, false, D, F, m, 1.0f, dyp + r0 * D, D, ap + r0 * F, F, 1.0f, weights[wd].g + e * D * F, F);
                    be.swiglu_backward(dap + r0 * F, gp + r0 * F, up + r0 * F, m * F, dgp + r0 * F, dup + r0 * F);
                    be.gemm(false, false, m, D, F, 1.0f, dgp + r0 * F, F, weights[wg].w + e * F * D, D, 1.0f, dxp + r0 * D, D);
                    be.gemm(false, false, m, D, F, 1.0f, dup + r0 * F, F, weights[wu].w + e * F * D, D, 1.0f, dxp + r0 * D, D);
                    be.gemm(true, false, F, D, m, 1.0f, dgp + r0 * F, F, xp + r0 * D, D, 1.0f, weights[wg].g + e * F * D, D);
                    be.gemm(true, false, F, D, m, 1.0f, dup + r0 * F, F, xp + r0 * D, D, 1.0f, weights[wu].g + e * F * D, D);
                }
            }
            be.zero(dh2, n * D);
            be.moe_permute_backward(dxp, slot_row, n, K, D, dh2);
            be.zero(dlog, n * E);
            be.moe_gate_backward(dtw, nullptr, scores, idx, tw, n, gate, dlog);
            be.gemm(false, false, n, D, E, 1.0f, dlog, E, weights[wr].w, D, 1.0f, dh2, D);
            be.gemm(true, false, E, D, n, 1.0f, dlog, E, h2, D, 1.0f, weights[wr].g, D);
            be.rmsnorm_backward(dh2, D, x2, D, weights[wn2].w, r2, n, D, dx2, D, weights[wn2].g);
            be.gemm(false, false, n, HD, D, 1.0f, dx2, D, weights[wo].w, HD, 0.0f, datt, HD);
            be.gemm(true, false, D, HD, n, 1.0f, dx2, D, att, HD, 1.0f, weights[wo].g, HD);
            be.zero(dq, n * HD);
            be.zero(dk, n * HD);
            be.zero(dv, n * HD);
            if (attention != "probs")
                be.fused_attention_backward(datt, q, k, v, att, lse, B, T, H, hd, hd, scale, window, dq, dk, dv,
                                            attention_math);
            else
                be.attention_backward(datt, q, k, v, probs, B, T, H, hd, hd, scale, window, dq, dk, dv);
            be.rope(dq, n, HD, H, hd, 0, hd, pos, moe::RopeParams{10000.0}, true);
            be.rope(dk, n, HD, H, hd, 0, hd, pos, moe::RopeParams{10000.0}, true);
            be.zero(dh, n * D);
            be.gemm(false, false, n, D, HD, 1.0f, dq, HD, weights[wq].w, D, 1.0f, dh, D);
            be.gemm(false, false, n, D, HD, 1.0f, dk, HD, weights[wk].w, D, 1.0f, dh, D);
            be.gemm(false, false, n, D, HD, 1.0f, dv, HD, weights[wv].w, D, 1.0f, dh, D);
            be.gemm(true, false, HD, D, n, 1.0f, dq, HD, h, D, 1.0f, weights[wq].g, D);
            be.gemm(true, false, HD, D, n, 1.0f, dk, HD, h, D, 1.0f, weights[wk].g, D);
            be.gemm(true, false, HD, D, n, 1.0f, dv, HD, h, D, 1.0f, weights[wv].g, D);
            be.copy_2d(dx2, D, dx, D, n, D);
            be.rmsnorm_backward(dh, D, x, D, weights[wn1].w, r1, n, D, dx, D, weights[wn1].g);
            for (const W& w : weights)
                be.adamw_update(w.w, w.g, w.m, w.v, w.n, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, s + 1);
            if (count) gemm_flops = 3.0 * f;
        };
        cudaDeviceProp prop{};
        ck(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
        std::printf("device %s | %s attention | B=%lld T=%lld D=%lld H=%lld hd=%lld E=%lld K=%lld F=%lld window=%lld\n",
                    prop.name, attention.c_str(), (long long)B, (long long)T, (long long)D, (long long)H, (long long)hd,
                    (long long)E, (long long)K, (long long)F, (long long)window);
        cudaEvent_t t0, t1;
        ck(cudaEventCreate(&t0), "cudaEventCreate");
        ck(cudaEventCreate(&t1), "cudaEventCreate");
        // Median step time of one mode, in seconds (0 with --iters 0).
        auto time_mode = [&](bool use_grouped) {
            grouped = use_grouped;
            for (int i = 0; i < warmup; ++i) step(i, false);
            std::vector<float> ms;
            for (int i = 0; i < iters; ++i) {
                ck(cudaEventRecord(t0), "cudaEventRecord");
                step(warmup + i, true);
                ck(cudaEventRecord(t1), "cudaEventRecord");
                ck(cudaEventSynchronize(t1), "cudaEventSynchronize");
                float m = 0.0f;
                ck(cudaEventElapsedTime(&m, t0, t1), "cudaEventElapsedTime");
                ms.push_back(m);
            }
            ck(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
            if (ms.empty()) {
                std::printf("%s experts: ran %d step(s), no timing\n", use_grouped ? "grouped" : "loop", warmup);
                return 0.0;
            }
            std::sort(ms.begin(), ms.end());
            const double med = ms[ms.size() / 2] / 1e3;
            const double vis = window > 0 && window < T ? double(window) * (window + 1) / 2 + double(T - window) * window
                                                        : double(T) * (T + 1) / 2;
            const double attn_flops = 3.0 * 2.0 * B * H * vis * (2.0 * hd);
            const double flops = gemm_flops + attn_flops;
            std::printf("%-7s experts: step median %.3f ms (min %.3f, max %.3f, %d steps) | tokens/s %.0f | "
                        "%.2f TFLOP/s counted | MFU %.1f%% of %.1f TFLOP/s\n",
                        use_grouped ? "grouped" : "loop", med * 1e3, ms.front(), ms.back(), iters, n / med,
                        flops / med / 1e12, 100.0 * flops / med / (peak_tflops * 1e12), peak_tflops);
            return med;
        };
        const double t_grouped = moe_mode != "loop" ? time_mode(true) : 0.0;
        const double t_loop = moe_mode != "grouped" ? time_mode(false) : 0.0;
        if (t_grouped > 0 && t_loop > 0)
            std::printf("grouped / loop step time: %.3f (below 1: the grouped experts are faster)\n",
                        t_grouped / t_loop);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "moe-bench-gpu: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
