// CpuBackend: dynamic top-k sparse attention (backend.h) - the indexer's scores, the top-k
// choice, attention over the chosen keys and the indexer's KL objective.
//
// Attention over chosen keys cannot use one GEMM per query block (every query has its own
// keys), so each (sequence, head) pair walks its queries and the chosen keys' rows directly:
// the head's keys and values (T rows of dk and dv floats) stay in cache while its queries go
// by, and the work is O(T * K * (dk + dv)) with the unselected keys never read. The dot products
// and row updates use 8-lane vectors in a fixed order (vec8_dot / vec8_axpy): SSE and AVX2 give
// the same bits, and the AVX2 clone is picked at load time where the CPU has it. As everywhere
// in the CPU backend, each output element is written by one thread in an order fixed by the
// shapes: results do not depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_math.h"
#include "core/error.h"

namespace moe {

namespace {

typedef float v8 __attribute__((vector_size(32)));

// sum_j a[j] * b[j]: eight lane sums, then the lanes and the tail in order.
__attribute__((target_clones("avx2", "default"))) float vec8_dot(const float* a, const float* b,
                                                                 int64_t n) {
    v8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        v8 x, y;
        std::memcpy(&x, a + j, sizeof x);
        std::memcpy(&y, b + j, sizeof y);
        acc += x * y;
    }
    float s = 0.0f;
    for (int l = 0; l < 8; ++l) s += acc[l];
    for (; j < n; ++j) s += a[j] * b[j];
    return s;
}

// y[j] += alpha * x[j].
__attribute__((target_clones("avx2", "default"))) void vec8_axpy(float alpha, const float* x,
                                                                 float* y, int64_t n) {
    const v8 a = {alpha, alpha, alpha, alpha, alpha, alpha, alpha, alpha};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        v8 xv, yv;
        std::memcpy(&xv, x + j, sizeof xv);
        std::memcpy(&yv, y + j, sizeof yv);
        yv += a * xv;
        std::memcpy(y + j, &yv, sizeof yv);
    }
    for (; j < n; ++j) y[j] += alpha * x[j];
}

void check_sparse_shapes(const char* op, int64_t B, int64_t T, int64_t H, int64_t K) {
    if (B < 0 || T < 0 || H < 1 || K < 1)
        throw Error(std::string(op) + ": bad shape B=" + std::to_string(B) + " T=" +
                    std::to_string(T) + " H=" + std::to_string(H) + " K=" + std::to_string(K));
}

void check_indexer_shapes(const char* op, int64_t B, int64_t Tq, int64_t Tk, int64_t start,
                          int64_t HI, int64_t dI) {
    if (B < 0 || Tq < 0 || Tk < 0 || HI < 1 || dI < 1 || start < 0 || start + Tq > Tk)
        throw Error(std::string(op) + ": " + std::to_string(Tq) + " queries from position " +
                    std::to_string(start) + " need " + std::to_string(start + Tq) + " keys, got " +
                    std::to_string(Tk) + " (B=" + std::to_string(B) + ", index heads " +
                    std::to_string(HI) + ", dim " + std::to_string(dI) + ")");
}

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Query row r of the indexer (sequence r / Tq): its HI query heads, weights and the sequence's
// keys; it sees keys [0, last].
struct IndexerRow {
    const float* q;
    const float* w;
    const float* keys;
    int64_t last;
};
IndexerRow indexer_row(const float* qi, const float* ki, const float* w, int64_t r, int64_t Tq,
                       int64_t Tk, int64_t start, int64_t HI, int64_t dI) {
    return {qi + r * HI * dI, w + r * HI, ki + (r / Tq) * Tk * dI, start + r % Tq};
}

}  // namespace

// Row (b, i) sees keys [0, start + i]; the others are -inf.
void CpuBackend::indexer_scores_forward(const float* qi, const float* ki, const float* w, int64_t B,
                                        int64_t Tq, int64_t Tk, int64_t start, int64_t HI,
                                        int64_t dI, float scale, float* scores) {
    check_indexer_shapes("indexer_scores_forward", B, Tq, Tk, start, HI, dI);
    const int64_t rows = B * Tq;
    const int nt = team(rows * Tk * HI * dI / 2);
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt)
    for (int64_t r = 0; r < rows; ++r) {
        const IndexerRow row = indexer_row(qi, ki, w, r, Tq, Tk, start, HI, dI);
        float* out = scores + r * Tk;
        for (int64_t s = 0; s <= row.last; ++s) {
            float acc = 0.0f;
            for (int64_t j = 0; j < HI; ++j) {
                const float x = scale * vec8_dot(row.q + j * dI, row.keys + s * dI, dI);
                if (x > 0.0f) acc += row.w[j] * x;
            }
            out[s] = acc;
        }
        std::fill(out + row.last + 1, out + Tk, kNegInf);
    }
}

// dI/dw_j = relu(x_j); dI/dqi_j = w_j [x_j > 0] scale ki_s; dI/dki_s = sum_j w_j [x_j > 0] scale
// qi_j. Queries' rows in one pass (dqi, dw), keys' rows in another (dki), each row owned by one
// thread.
void CpuBackend::indexer_scores_backward(const float* dscores, const float* qi, const float* ki,
                                         const float* w, int64_t B, int64_t Tq, int64_t Tk,
                                         int64_t start, int64_t HI, int64_t dI, float scale,
                                         float* dqi, float* dki, float* dw) {
    check_indexer_shapes("indexer_scores_backward", B, Tq, Tk, start, HI, dI);
    const int64_t rows = B * Tq;
    const int nt = team(rows * Tk * HI * dI / 2);
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt)
    for (int64_t r = 0; r < rows; ++r) {
        const IndexerRow row = indexer_row(qi, ki, w, r, Tq, Tk, start, HI, dI);
        const float* ds = dscores + r * Tk;
        float* dq = dqi + r * HI * dI;
        for (int64_t s = 0; s <= row.last; ++s) {
            if (ds[s] == 0.0f) continue;
            for (int64_t j = 0; j < HI; ++j) {
                const float x = scale * vec8_dot(row.q + j * dI, row.keys + s * dI, dI);
                if (x <= 0.0f) continue;
                dw[r * HI + j] += ds[s] * x;
                vec8_axpy(ds[s] * row.w[j] * scale, row.keys + s * dI, dq + j * dI, dI);
            }
        }
    }
    const int64_t keys = B * Tk;
#pragma omp parallel for schedule(dynamic, 16) num_threads(nt)
    for (int64_t key = 0; key < keys; ++key) {
        const int64_t b = key / Tk, s = key % Tk;
        const float* k = ki + key * dI;
        float* dk = dki + key * dI;
        // Queries that see key s: start + i >= s.
        for (int64_t i = std::max<int64_t>(0, s - start); i < Tq; ++i) {
            const int64_t r = b * Tq + i;
            const float ds = dscores[r * Tk + s];
            if (ds == 0.0f) continue;
            const float* q = qi + r * HI * dI;
            for (int64_t j = 0; j < HI; ++j) {
                const float x = scale * vec8_dot(q + j * dI, k, dI);
                if (x > 0.0f) vec8_axpy(ds * w[r * HI + j] * scale, q + j * dI, dk, dI);
            }
        }
    }
}

void CpuBackend::topk_keys(const float* scores, int64_t B, int64_t Tq, int64_t Tk, int64_t start,
                           int64_t K, int32_t* idx) {
    check_indexer_shapes("topk_keys", B, Tq, Tk, start, 1, 1);
    if (K < 1) throw Error("topk_keys: K must be >= 1, got " + std::to_string(K));
    const int64_t rows = B * Tq;
    const int nt = team(rows * std::min(Tk, int64_t(4096)) * 8);
    int32_t* cand_all = grow(sparse_cand_, static_cast<size_t>(nt) * static_cast<size_t>(Tk));
#pragma omp parallel num_threads(nt)
    {
        int32_t* cand = cand_all + static_cast<int64_t>(omp_get_thread_num()) * Tk;
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t n = start + r % Tq + 1;  // causal keys [0, n)
            const float* sc = scores + r * Tk;
            int32_t* out = idx + r * K;
            if (n <= K) {
                for (int64_t c = 0; c < K; ++c) out[c] = c < n ? static_cast<int32_t>(c) : -1;
                continue;
            }
            for (int64_t s = 0; s < n; ++s) cand[s] = static_cast<int32_t>(s);
            // A strict total order (score, then the lower index), so the choice is unique.
            auto better = [sc](int32_t a, int32_t b) {
                return sc[a] > sc[b] || (sc[a] == sc[b] && a < b);
            };
            std::nth_element(cand, cand + (K - 1), cand + n, better);
            std::sort(cand, cand + K);
            std::copy(cand, cand + K, out);
        }
    }
}

// Per (sequence, head) pair, query by query: scores of the chosen keys, softmax (max trick, sum
// in double), out = sum p v.
void CpuBackend::sparse_attention_forward(const float* q, const float* k, const float* v,
                                          const int32_t* idx, int64_t B, int64_t T, int64_t H,
                                          int64_t dk, int64_t dv, int64_t K, float scale,
                                          float* probs, float* out) {
    check_sparse_shapes("sparse_attention_forward", B, T, H, K);
    const int64_t pairs = B * H;
    const int nt = static_cast<int>(
        std::min<int64_t>(team(B * H * T * K * (dk + dv)), std::max<int64_t>(1, pairs)));
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t bh = 0; bh < pairs; ++bh) {
        const int64_t b = bh / H, h = bh % H;
        for (int64_t t = 0; t < T; ++t) {
            const int64_t row = b * T + t;
            const int32_t* sel = idx + row * K;
            const float* qt = q + (row * H + h) * dk;
            float* p = probs + (row * H + h) * K;
            float mx = kNegInf;
            for (int64_t c = 0; c < K; ++c) {
                const int32_t s = sel[c];
                if (s < 0) continue;
                p[c] = scale * vec8_dot(qt, k + ((b * T + s) * H + h) * dk, dk);
                mx = std::max(mx, p[c]);
            }
            double sum = 0.0;
            for (int64_t c = 0; c < K; ++c) {
                if (sel[c] < 0) {
                    p[c] = 0.0f;
                    continue;
                }
                p[c] = cpu::exp_vec(p[c] - mx);
                sum += p[c];
            }
            const float inv = sum > 0.0 ? static_cast<float>(1.0 / sum) : 0.0f;
            float* ot = out + (row * H + h) * dv;
            std::fill(ot, ot + dv, 0.0f);
            for (int64_t c = 0; c < K; ++c) {
                if (sel[c] < 0) continue;
                p[c] *= inv;
                vec8_axpy(p[c], v + ((b * T + sel[c]) * H + h) * dv, ot, dv);
            }
        }
    }
}

// Query t, chosen key s: dP = dout_t . v_s; dS = P (dP - sum P dP) scale;
// dq_t += dS k_s; dk_s += dS q_t; dv_s += P dout_t. Two passes per (sequence, head) pair, whose
// thread owns that head's columns: the queries' pass computes dS (kept) and dq; the keys' pass
// walks, for each key, the queries that chose it (a reverse index built once for all heads) and
// adds their terms into the key's dk and dv rows while those stay in cache, instead of scattering
// a read-modify-write into them from every query. Each sum runs in query order.
void CpuBackend::sparse_attention_backward(const float* dout, const float* q, const float* k,
                                           const float* v, const float* probs, const int32_t* idx,
                                           int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv,
                                           int64_t K, float scale, float* dq, float* dk_,
                                           float* dv_) {
    check_sparse_shapes("sparse_attention_backward", B, T, H, K);
    const int64_t pairs = B * H, rows = B * T;
    // Reverse index: entries (row * K + c) of key (b, s) at [start[b*T+s], start[b*T+s+1]),
    // rows ascending.
    std::vector<int64_t>& start = sparse_key_start_;
    std::vector<int64_t>& entries = sparse_key_entries_;
    start.assign(static_cast<size_t>(rows + 1), 0);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < K; ++c) {
            const int32_t s = idx[r * K + c];
            if (s >= 0) ++start[static_cast<size_t>((r / T) * T + s + 1)];
        }
    for (int64_t i = 0; i < rows; ++i) start[size_t(i + 1)] += start[size_t(i)];
    entries.resize(static_cast<size_t>(start[size_t(rows)]));
    {
        std::vector<int64_t>& fill = sparse_key_fill_;
        fill.assign(start.begin(), start.end() - 1);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t c = 0; c < K; ++c) {
                const int32_t s = idx[r * K + c];
                if (s >= 0) entries[size_t(fill[size_t((r / T) * T + s)]++)] = r * K + c;
            }
    }
    float* ds_all = grow(sparse_ds_, static_cast<size_t>(rows * H * K));
    const int nt = static_cast<int>(
        std::min<int64_t>(team(2 * B * H * T * K * (dk + dv)), std::max<int64_t>(1, pairs)));
    float* scratch = grow(row_scratch_, static_cast<size_t>(nt) * K);
#pragma omp parallel num_threads(nt)
    {
        float* dp = scratch + static_cast<int64_t>(omp_get_thread_num()) * K;
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < pairs; ++bh) {
            const int64_t b = bh / H, h = bh % H;
            for (int64_t t = 0; t < T; ++t) {
                const int64_t row = b * T + t;
                const int32_t* sel = idx + row * K;
                const float* p = probs + (row * H + h) * K;
                float* ds = ds_all + (row * H + h) * K;
                const float* dot = dout + (row * H + h) * dv;
                double D = 0.0;
                for (int64_t c = 0; c < K; ++c) {
                    if (sel[c] < 0) continue;
                    dp[c] = vec8_dot(dot, v + ((b * T + sel[c]) * H + h) * dv, dv);
                    D += static_cast<double>(p[c]) * dp[c];
                }
                const float Df = static_cast<float>(D);
                float* dqt = dq + (row * H + h) * dk;
                for (int64_t c = 0; c < K; ++c) {
                    const int32_t s = sel[c];
                    if (s < 0) {
                        ds[c] = 0.0f;
                        continue;
                    }
                    ds[c] = p[c] * (dp[c] - Df) * scale;
                    vec8_axpy(ds[c], k + ((b * T + s) * H + h) * dk, dqt, dk);
                }
            }
            for (int64_t s = 0; s < T; ++s) {
                const int64_t key = (b * T + s) * H + h;
                float* dks = dk_ + key * dk;
                float* dvs = dv_ + key * dv;
                for (int64_t e = start[size_t(b * T + s)]; e < start[size_t(b * T + s + 1)]; ++e) {
                    const int64_t row = entries[size_t(e)] / K, c = entries[size_t(e)] % K;
                    const int64_t at = (row * H + h) * K + c;
                    vec8_axpy(ds_all[at], q + (row * H + h) * dk, dks, dk);
                    vec8_axpy(probs[at], dout + (row * H + h) * dv, dvs, dv);
                }
            }
        }
    }
}

double CpuBackend::indexer_loss(const float* scores, const float* probs, const int32_t* idx,
                                int64_t B, int64_t T, int64_t H, int64_t K, float grad_scale,
                                float* dscores) {
    if (B < 0 || T < 0 || H < 1 || (idx && K < 1))
        throw Error("indexer_loss: bad shape B=" + std::to_string(B) + " T=" + std::to_string(T) +
                    " H=" + std::to_string(H) + " K=" + std::to_string(K));
    const int64_t rows = B * T;
    if (rows == 0) return 0.0;
    double* kl = grow(sparse_kl_, static_cast<size_t>(rows));
    const float row_scale = grad_scale / static_cast<float>(rows);
    const int64_t width = idx ? K : T;
    const int nt = team(rows * width * (H + 4));
    // Per-thread key sets and targets, in member buffers (a training step allocates nothing).
    double* target_all = grow(sparse_target_, static_cast<size_t>(nt) * static_cast<size_t>(width));
    int32_t* keys_all = grow(sparse_cand_, static_cast<size_t>(nt) * static_cast<size_t>(width));
#pragma omp parallel num_threads(nt)
    {
        double* target = target_all + static_cast<int64_t>(omp_get_thread_num()) * width;
        int32_t* keys = keys_all + static_cast<int64_t>(omp_get_thread_num()) * width;
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t b = r / T, t = r % T;
            const float* sc = scores + r * T;
            float* ds = dscores + r * T;
            std::fill(ds, ds + T, 0.0f);
            size_t n = 0;
            if (idx) {
                for (int64_t c = 0; c < K; ++c) {
                    const int32_t s = idx[r * K + c];
                    if (s < 0) continue;
                    double p = 0.0;
                    for (int64_t h = 0; h < H; ++h) p += probs[(r * H + h) * K + c];
                    keys[n] = s;
                    target[n++] = p / double(H);
                }
            } else {
                for (int64_t s = 0; s <= t; ++s) {
                    double p = 0.0;
                    for (int64_t h = 0; h < H; ++h) p += probs[((b * H + h) * T + t) * T + s];
                    keys[n] = static_cast<int32_t>(s);
                    target[n++] = p / double(H);
                }
            }
            if (n == 0) continue;
            double mx = -INFINITY;
            for (size_t c = 0; c < n; ++c) mx = std::max(mx, double(sc[keys[c]]));
            double se = 0.0;
            for (size_t c = 0; c < n; ++c) se += std::exp(double(sc[keys[c]]) - mx);
            const double lse = mx + std::log(se);
            double acc = 0.0;
            for (size_t c = 0; c < n; ++c) {
                const double lq = double(sc[keys[c]]) - lse;
                if (target[c] > 0.0) acc += target[c] * (std::log(target[c]) - lq);
                ds[keys[c]] = static_cast<float>(row_scale * (std::exp(lq) - target[c]));
            }
            kl[r] = acc;
        }
    }
    double total = 0.0;
    for (int64_t r = 0; r < rows; ++r) total += kl[r];
    return total / double(rows);
}

void CpuBackend::mask_unselected_keys(float* s, int64_t n, int64_t H, int64_t cols,
                                      const int32_t* idx, int64_t K) {
    std::vector<uint8_t> keep(static_cast<size_t>(cols));
    for (int64_t i = 0; i < n; ++i) {
        std::fill(keep.begin(), keep.end(), uint8_t(0));
        for (int64_t c = 0; c < K; ++c) {
            const int32_t key = idx[i * K + c];
            if (key >= 0 && key < cols) keep[size_t(key)] = 1;
        }
        for (int64_t h = 0; h < H; ++h) {
            float* row = s + (i * H + h) * cols;
            for (int64_t c = 0; c < cols; ++c)
                if (!keep[size_t(c)]) row[c] = kNegInf;
        }
    }
}

}  // namespace moe
