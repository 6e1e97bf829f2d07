// Tests for CpuBackend: finite-difference checks of every backward op, known answers for the
// forward ops, and determinism (bitwise run to run and across thread counts).
#include <QtTest>

#include <QElapsedTimer>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <tuple>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "quant/number_formats.h"
#include "fd_check.h"
#include "test_support.h"

using moe::CpuBackend;
using moe::GateParams;
using moe::ScoringFunc;
using moe::test::FdResult;
using moe::test::fd_check;
using moe::test::kFdTol;
using moe::test::random_vector;
using Vec = std::vector<float>;

namespace {

double dot(const Vec& a, const Vec& b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
    return s;
}

Vec minus(const Vec& a, const Vec& b) {
    Vec r(a.size());
    for (size_t i = 0; i < a.size(); ++i) r[i] = a[i] - b[i];
    return r;
}

bool bitwise_equal(const Vec& a, const Vec& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}


// Naive attention in double for the known-answer test.
void naive_attention(const Vec& q, const Vec& k, const Vec& v, int64_t B, int64_t T, int64_t H,
                     int64_t dk, int64_t dv, double scale, std::vector<double>& out) {
    out.assign(static_cast<size_t>(B * T * H * dv), 0.0);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t t = 0; t < T; ++t) {
                std::vector<double> sc(static_cast<size_t>(t + 1));
                double mx = -1e300;
                for (int64_t s = 0; s <= t; ++s) {
                    double d = 0;
                    for (int64_t i = 0; i < dk; ++i)
                        d += static_cast<double>(q[((b * T + t) * H + h) * dk + i]) *
                             k[((b * T + s) * H + h) * dk + i];
                    sc[s] = d * scale;
                    mx = std::max(mx, sc[s]);
                }
                double z = 0;
                for (auto& x : sc) z += (x = std::exp(x - mx));
                for (int64_t s = 0; s <= t; ++s)
                    for (int64_t i = 0; i < dv; ++i)
                        out[((b * T + t) * H + h) * dv + i] +=
                            sc[s] / z * v[((b * T + s) * H + h) * dv + i];
            }
}

// Attention with the sliding-window band mask, forward and backward, in double, written
// straight from the definition: query t sees key s iff s <= t and (W == 0 or s > t - W).
struct BandAttention {
    std::vector<double> probs, out, dq, dk, dv;  // probs [B, H, T, T], the rest like q, k, v
};

BandAttention naive_band_attention(const Vec& q, const Vec& k, const Vec& v, const Vec& dout,
                                   int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv,
                                   double scale, int64_t W) {
    BandAttention r;
    r.probs.assign(static_cast<size_t>(B * H * T * T), 0.0);
    r.out.assign(v.size(), 0.0);
    r.dq.assign(q.size(), 0.0);
    r.dk.assign(k.size(), 0.0);
    r.dv.assign(v.size(), 0.0);
    auto qi = [&](int64_t b, int64_t t, int64_t h) { return ((b * T + t) * H + h) * dk; };
    auto vi = [&](int64_t b, int64_t t, int64_t h) { return ((b * T + t) * H + h) * dv; };
    auto visible = [&](int64_t t, int64_t s) { return s <= t && (W == 0 || s > t - W); };
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t t = 0; t < T; ++t) {
                double* p = &r.probs[static_cast<size_t>(((b * H + h) * T + t) * T)];
                double mx = -1e300;
                for (int64_t s = 0; s < T; ++s) {
                    if (!visible(t, s)) continue;
                    double d = 0;
                    for (int64_t i = 0; i < dk; ++i) d += double(q[qi(b, t, h) + i]) * k[qi(b, s, h) + i];
                    p[s] = d * scale;
                    mx = std::max(mx, p[s]);
                }
                double z = 0;
                for (int64_t s = 0; s < T; ++s)
                    if (visible(t, s)) z += (p[s] = std::exp(p[s] - mx));
                for (int64_t s = 0; s < T; ++s)
                    if (visible(t, s)) p[s] /= z;
                // out = P v; dP = dout . v; dS = P (dP - sum P dP) scale.
                std::vector<double> dP(static_cast<size_t>(T), 0.0);
                double dsum = 0;
                for (int64_t s = 0; s < T; ++s) {
                    if (!visible(t, s)) continue;
                    for (int64_t i = 0; i < dv; ++i) {
                        r.out[vi(b, t, h) + i] += p[s] * v[vi(b, s, h) + i];
                        dP[s] += double(dout[vi(b, t, h) + i]) * v[vi(b, s, h) + i];
                        r.dv[vi(b, s, h) + i] += p[s] * dout[vi(b, t, h) + i];
                    }
                    dsum += p[s] * dP[s];
                }
                for (int64_t s = 0; s < T; ++s) {
                    if (!visible(t, s)) continue;
                    const double dS = p[s] * (dP[s] - dsum) * scale;
                    for (int64_t i = 0; i < dk; ++i) {
                        r.dq[qi(b, t, h) + i] += dS * k[qi(b, s, h) + i];
                        r.dk[qi(b, s, h) + i] += dS * q[qi(b, t, h) + i];
                    }
                }
            }
    return r;
}

// max |a - b| / max |b|.
double scaled_error(const Vec& a, const std::vector<double>& b) {
    double diff = 0, ref = 0;
    for (size_t i = 0; i < b.size(); ++i) {
        if (!std::isfinite(a[i])) return INFINITY;
        diff = std::max(diff, std::fabs(a[i] - b[i]));
        ref = std::max(ref, std::fabs(b[i]));
    }
    return ref > 0 ? diff / ref : diff;
}

// Logits whose sigmoid is exactly representable-ish target scores (inverse sigmoid).
Vec logits_for_scores(const std::vector<double>& s) {
    Vec l(s.size());
    for (size_t i = 0; i < s.size(); ++i) l[i] = static_cast<float>(std::log(s[i] / (1 - s[i])));
    return l;
}

struct GateOut {
    Vec scores, w;
    std::vector<int32_t> idx;
};

GateOut run_gate(CpuBackend& be, const Vec& logits, int64_t n, const GateParams& p) {
    GateOut o;
    o.scores.resize(static_cast<size_t>(n * p.n_experts));
    o.w.resize(static_cast<size_t>(n * p.top_k));
    o.idx.resize(static_cast<size_t>(n * p.top_k));
    be.moe_gate_forward(logits.data(), n, p, o.scores.data(), o.idx.data(), o.w.data());
    return o;
}

}  // namespace

class TestBackendOps : public QObject {
    Q_OBJECT

private slots:
    // --- known answers ---
    void gemmMatchesNaive();
    void sumAndElementwise();
    void embeddingForward();
    void ropeKnownAnswer();
    void attentionKnownAnswer();
    void attentionSlidingWindow_data();
    void attentionSlidingWindow();
    void attentionWindowSkipsMaskedWork();
    void fusedAttentionMatchesProbs();
    void fusedAttentionBf16RoundsItsOperands();
    void crossEntropyKnownAndIgnore();
    void gateGroupLimit();
    void gateBiasSelectsNotWeights();
    void gateSoftmaxAndNoNorm();
    void gateTies();
    void gateRejectsBadParams();
    void routePlanHandExample();
    void permuteRoundTrip();
    void groupedLinearMatchesNaive();
    void seqAuxLossNaive();

    // --- finite differences ---
    void fdRmsnorm();
    void fdRope();
    void fdAttention();
    void fdAttentionWindow();
    void fdSwiglu();
    void fdCrossEntropy();
    void fdEmbedding();
    void fdGate_data();
    void fdGate();
    void fdSeqAuxLoss();
    void fdPermuteUnpermute();

    // --- determinism ---
    void determinism();
};

// ---------------------------------------------------------------------------------------------

void TestBackendOps::gemmMatchesNaive() {
    CpuBackend be(2);
    const int64_t M = 5, N = 7, K = 3;
    const float alpha = 0.75f, beta = -0.5f;
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
            // Stored shapes: A [M,K] or [K,M]; B [K,N] or [N,K]; padded leading dimensions.
            const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K;
            const int64_t b_rows = tb ? N : K, b_cols = tb ? K : N;
            const int64_t lda = a_cols + 3, ldb = b_cols + 2, ldc = N + 4;
            Vec A = random_vector(a_rows * lda, 1 + ta);
            Vec Bm = random_vector(b_rows * ldb, 3 + tb);
            Vec C = random_vector(M * ldc, 5);
            const Vec C0 = C;
            be.gemm(ta, tb, M, N, K, alpha, A.data(), lda, Bm.data(), ldb, beta, C.data(), ldc);
            double worst = 0.0;
            for (int64_t i = 0; i < M; ++i)
                for (int64_t j = 0; j < ldc; ++j) {
                    if (j >= N) {  // padding must be untouched
                        QCOMPARE(C[i * ldc + j], C0[i * ldc + j]);
                        continue;
                    }
                    double ref = 0.0;
                    for (int64_t kk = 0; kk < K; ++kk) {
                        const double a = ta ? A[kk * lda + i] : A[i * lda + kk];
                        const double b = tb ? Bm[j * ldb + kk] : Bm[kk * ldb + j];
                        ref += a * b;
                    }
                    ref = alpha * ref + beta * C0[i * ldc + j];
                    worst = std::max(worst, std::fabs(ref - C[i * ldc + j]));
                }
            QVERIFY2(worst < 1e-5, qPrintable(QString("gemm transA=%1 transB=%2 err %3")
                                                  .arg(ta).arg(tb).arg(worst)));
        }
}

void TestBackendOps::sumAndElementwise() {
    CpuBackend be(2);
    const int64_t n = 100003;  // several sum blocks, not a multiple of the block size
    Vec x = random_vector(n, 11);
    double ref = 0.0;
    for (float v : x) ref += v;
    QVERIFY(std::fabs(be.sum(x.data(), n) - ref) < 1e-9 * n);
    QCOMPARE(be.sum(x.data(), 0), 0.0);

    // copy_2d / add_2d on column slices with row strides
    Vec src = random_vector(4 * 9, 12), dst = random_vector(4 * 6, 13);
    const Vec dst0 = dst;
    be.add_2d(src.data() + 2, 9, dst.data() + 1, 6, 4, 3);
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 6; ++c) {
            const float want =
                (c >= 1 && c < 4) ? dst0[r * 6 + c] + src[r * 9 + 2 + c - 1] : dst0[r * 6 + c];
            QCOMPARE(dst[r * 6 + c], want);
        }
    be.copy_2d(src.data() + 2, 9, dst.data() + 1, 6, 4, 3);
    for (int r = 0; r < 4; ++r)
        for (int c = 1; c < 4; ++c) QCOMPARE(dst[r * 6 + c], src[r * 9 + 2 + c - 1]);

    Vec y = x;
    be.scale(y.data(), -2.0f, n);
    for (int64_t i = 0; i < n; i += 997) QCOMPARE(y[i], -2.0f * x[i]);
    be.zero(y.data(), n);
    QVERIFY(std::all_of(y.begin(), y.end(), [](float v) { return v == 0.0f; }));
}

void TestBackendOps::embeddingForward() {
    CpuBackend be(1);
    const int64_t vocab = 5, dim = 3;
    Vec table = random_vector(vocab * dim, 21);
    const std::vector<int32_t> tok = {4, 0, 4, 2};
    Vec out(tok.size() * dim);
    be.embedding_forward(tok.data(), 4, table.data(), vocab, dim, out.data());
    for (int t = 0; t < 4; ++t)
        for (int j = 0; j < dim; ++j) QCOMPARE(out[t * dim + j], table[tok[t] * dim + j]);
    const std::vector<int32_t> bad = {5};
    QVERIFY_THROWS_EXCEPTION(moe::Error,
                             be.embedding_forward(bad.data(), 1, table.data(), vocab, dim,
                                                  out.data()));
}

void TestBackendOps::ropeKnownAnswer() {
    CpuBackend be(1);
    // 2 rows, 2 heads of 6 values; rope on columns [2, 6) of each head (rope_dim 4).
    const int64_t rows = 2, heads = 2, hs = 6, row_stride = 13, offset = 2, rd = 4;
    const float theta = 10000.0f;
    Vec x = random_vector(rows * row_stride, 31);
    const Vec x0 = x;
    const std::vector<int32_t> pos = {3, 7};
    be.rope(x.data(), rows, row_stride, heads, hs, offset, rd, pos.data(), moe::RopeParams{theta}, false);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < row_stride; ++c) {
            const int64_t h = c / hs, j = c % hs - offset;
            const bool rotated = h < heads && j >= 0 && j < rd;
            if (!rotated) {
                QCOMPARE(x[r * row_stride + c], x0[r * row_stride + c]);
                continue;
            }
            // pair i = j/2 rotates by pos * theta^(-2i/4): i=0 -> pos, i=1 -> pos/100.
            const double ang = pos[r] * ((j / 2) == 0 ? 1.0 : 0.01);
            const int64_t base = r * row_stride + h * hs + offset + (j / 2) * 2;
            const double a = x0[base], b = x0[base + 1];
            const double want = (j % 2 == 0) ? a * std::cos(ang) - b * std::sin(ang)
                                             : a * std::sin(ang) + b * std::cos(ang);
            QVERIFY2(std::fabs(want - x[r * row_stride + c]) < 1e-6,
                     qPrintable(QString("rope r=%1 c=%2").arg(r).arg(c)));
        }
    }
    be.rope(x.data(), rows, row_stride, heads, hs, offset, rd, pos.data(), moe::RopeParams{theta}, true);
    QVERIFY(moe::test::max_relative_error(x.data(), x0.data(), rows * row_stride, 1e-3) < 1e-5);
}

void TestBackendOps::attentionKnownAnswer() {
    CpuBackend be(2);
    const int64_t B = 2, T = 5, H = 3, dk = 4, dv = 3;
    const float scale = 0.6f;
    Vec q = random_vector(B * T * H * dk, 41, 2.0f), k = random_vector(B * T * H * dk, 42, 2.0f),
        v = random_vector(B * T * H * dv, 43);
    Vec probs(B * H * T * T, 7.0f), out(B * T * H * dv);
    be.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, scale, 0, probs.data(),
                         out.data());
    // The first token of each sequence attends only to itself: out = v exactly.
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t i = 0; i < dv; ++i)
                QCOMPARE(out[((b * T) * H + h) * dv + i], v[((b * T) * H + h) * dv + i]);
    // Probabilities: causal zeros above the diagonal, rows sum to 1.
    for (int64_t bh = 0; bh < B * H; ++bh)
        for (int64_t t = 0; t < T; ++t) {
            double s = 0;
            for (int64_t u = 0; u < T; ++u) {
                const float p = probs[(bh * T + t) * T + u];
                if (u > t) QCOMPARE(p, 0.0f);
                s += p;
            }
            QVERIFY(std::fabs(s - 1.0) < 1e-6);
        }
    std::vector<double> ref;
    naive_attention(q, k, v, B, T, H, dk, dv, scale, ref);
    double worst = 0;
    for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(ref[i] - out[i]));
    qInfo("attention vs naive double: max abs err %.3e", worst);
    QVERIFY(worst < 1e-5);
    // Large scores must not overflow (max trick).
    Vec qbig = q;
    for (auto& x : qbig) x *= 1000.0f;
    be.attention_forward(qbig.data(), k.data(), v.data(), B, T, H, dk, dv, scale, 0, probs.data(),
                         out.data());
    QVERIFY(std::all_of(out.begin(), out.end(), [](float x) { return std::isfinite(x); }));
}

// The band mask against the naive double reference, forward and backward. T = 150 spans three
// query blocks of the CPU kernel, so windows that start inside an earlier block are covered.
void TestBackendOps::attentionSlidingWindow_data() {
    QTest::addColumn<int>("T");
    QTest::addColumn<int>("W");
    QTest::newRow("T7 W1 (only itself)") << 7 << 1;
    QTest::newRow("T7 W3") << 7 << 3;
    QTest::newRow("T7 W7 (= T)") << 7 << 7;
    QTest::newRow("T7 W20 (> T)") << 7 << 20;
    QTest::newRow("T150 W1") << 150 << 1;
    QTest::newRow("T150 W5") << 150 << 5;
    QTest::newRow("T150 W64") << 150 << 64;
    QTest::newRow("T150 W65") << 150 << 65;
    QTest::newRow("T150 W100") << 150 << 100;
    QTest::newRow("T150 W149") << 150 << 149;
    QTest::newRow("T150 W150 (= T)") << 150 << 150;
}

void TestBackendOps::attentionSlidingWindow() {
    QFETCH(int, T);
    QFETCH(int, W);
    CpuBackend be(2);
    const int64_t B = 2, H = 3, dk = 5, dv = 4;
    const float scale = 0.45f;
    const Vec q = random_vector(B * T * H * dk, 1041, 2.0f), k = random_vector(B * T * H * dk, 1042, 2.0f),
              v = random_vector(B * T * H * dv, 1043), dout = random_vector(B * T * H * dv, 1044);
    Vec probs(B * H * T * T, 7.0f), out(B * T * H * dv);
    be.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, scale, W, probs.data(),
                         out.data());
    // Backward accumulates: start from non-zero gradients and subtract them afterwards.
    Vec dq = random_vector(q.size(), 1045), dk_ = random_vector(k.size(), 1046),
        dv_ = random_vector(v.size(), 1047);
    const Vec dq0 = dq, dk0 = dk_, dv0 = dv_;
    be.attention_backward(dout.data(), q.data(), k.data(), v.data(), probs.data(), B, T, H, dk,
                          dv, scale, W, dq.data(), dk_.data(), dv_.data());
    const BandAttention ref = naive_band_attention(q, k, v, dout, B, T, H, dk, dv, scale, W);

    // Masked entries are exactly 0 (causal and outside the window), visible rows sum to 1.
    int64_t zeros = 0;
    for (int64_t bh = 0; bh < B * H; ++bh)
        for (int64_t t = 0; t < T; ++t) {
            double sum = 0;
            for (int64_t s = 0; s < T; ++s) {
                const float p = probs[(bh * T + t) * T + s];
                if (s > t || s <= t - W) {
                    QVERIFY2(p == 0.0f, qPrintable(QString("probs[%1][%2][%3] = %4 is masked").arg(bh).arg(t).arg(s).arg(p)));
                    zeros += s <= t - W;
                }
                sum += p;
            }
            QVERIFY(std::fabs(sum - 1.0) < 1e-5);
        }
    QCOMPARE(zeros, B * H * (T > W ? int64_t(T - W) * (T - W + 1) / 2 : 0));
    const double e_p = scaled_error(probs, ref.probs), e_o = scaled_error(out, ref.out);
    const double e_q = scaled_error(minus(dq, dq0), ref.dq), e_k = scaled_error(minus(dk_, dk0), ref.dk),
                 e_v = scaled_error(minus(dv_, dv0), ref.dv);
    qInfo("T %d W %d vs naive double: probs %.2e out %.2e dq %.2e dk %.2e dv %.2e", T, W, e_p, e_o,
          e_q, e_k, e_v);
    QVERIFY(e_p < 1e-5 && e_o < 1e-5);
    QVERIFY(e_q < 1e-4 && e_k < 1e-4 && e_v < 1e-4);

    if (W == 1) {  // a query attends only to itself: out = v exactly, no gradient to q or k
        QVERIFY(bitwise_equal(out, v));
        QVERIFY(bitwise_equal(dq, dq0) && bitwise_equal(dk_, dk0));
        Vec dv_want(dv0.size());
        for (size_t i = 0; i < dv0.size(); ++i) dv_want[i] = dv0[i] + dout[i];
        QVERIFY(bitwise_equal(dv_, dv_want));
    }
    if (W >= T) {  // the window covers every key: identical to full causal attention, bit for bit
        Vec probs0(probs.size()), out0(out.size()), dq_full = dq0, dk_full = dk0, dv_full = dv0;
        be.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, scale, 0, probs0.data(),
                             out0.data());
        be.attention_backward(dout.data(), q.data(), k.data(), v.data(), probs0.data(), B, T, H, dk,
                              dv, scale, 0, dq_full.data(), dk_full.data(), dv_full.data());
        QVERIFY(bitwise_equal(probs, probs0) && bitwise_equal(out, out0));
        QVERIFY(bitwise_equal(dq, dq_full) && bitwise_equal(dk_, dk_full) && bitwise_equal(dv_, dv_full));
    }
}

// The window must save work, not only mask it: a NaN key/value far outside every late query's
// window would poison those queries (0 * NaN) if the kernel still multiplied against it. And the
// windowed kernel is measurably faster than full attention at T = 2048, W = 32.
void TestBackendOps::attentionWindowSkipsMaskedWork() {
    CpuBackend be(1);
    {
        const int64_t B = 1, T = 256, H = 2, dk = 8, dv = 8, W = 8;
        Vec q = random_vector(B * T * H * dk, 1051), k = random_vector(B * T * H * dk, 1052),
            v = random_vector(B * T * H * dv, 1053);
        const Vec dout = random_vector(B * T * H * dv, 1054);
        for (int64_t i = 0; i < H * dk; ++i) k[i] = std::nanf("");  // key 0
        for (int64_t i = 0; i < H * dv; ++i) v[i] = std::nanf("");
        Vec probs(B * H * T * T), out(B * T * H * dv), dq(q.size(), 0.0f), dk_(k.size(), 0.0f),
            dv_(v.size(), 0.0f);
        be.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, 0.5f, W, probs.data(),
                             out.data());
        be.attention_backward(dout.data(), q.data(), k.data(), v.data(), probs.data(), B, T, H, dk,
                              dv, 0.5f, W, dq.data(), dk_.data(), dv_.data());
        // Queries in the second half are 120+ keys away from key 0.
        for (int64_t t = T / 2; t < T; ++t) {
            for (int64_t i = 0; i < H * dv; ++i) QVERIFY2(std::isfinite(out[t * H * dv + i]), "out touched key 0");
            for (int64_t i = 0; i < H * dk; ++i) QVERIFY2(std::isfinite(dq[t * H * dk + i]), "dq touched key 0");
        }
    }
    const int64_t B = 1, T = 2048, H = 2, dk = 32, dv = 32, W = 32;
    const Vec q = random_vector(B * T * H * dk, 1061), k = random_vector(B * T * H * dk, 1062),
              v = random_vector(B * T * H * dv, 1063), dout = random_vector(B * T * H * dv, 1064);
    Vec probs(B * H * T * T), out(B * T * H * dv), dq(q.size(), 0.0f), dk_(k.size(), 0.0f),
        dv_(v.size(), 0.0f);
    auto best_ms = [&](int64_t window) {
        double best = 1e30;
        for (int rep = 0; rep < 3; ++rep) {
            QElapsedTimer timer;
            timer.start();
            be.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, 0.2f, window,
                                 probs.data(), out.data());
            be.attention_backward(dout.data(), q.data(), k.data(), v.data(), probs.data(), B, T, H,
                                  dk, dv, 0.2f, window, dq.data(), dk_.data(), dv_.data());
            best = std::min(best, timer.nsecsElapsed() / 1e6);
        }
        return best;
    };
    const double full = best_ms(0), windowed = best_ms(W);
    qInfo("attention forward+backward, T %lld: full causal %.1f ms, window %lld %.1f ms (%.1fx)",
          static_cast<long long>(T), full, static_cast<long long>(W), windowed, full / windowed);
    // Band work is ~6% of the causal triangle here; masking alone would cost about the same.
    QVERIFY2(windowed < 0.6 * full, qPrintable(QString("window %1 ms vs full %2 ms").arg(windowed).arg(full)));
}

// Backend::fused_attention_* (no [B, H, T, T] tensor; the GPU kernels' reference) against the
// probabilities path on the same inputs: outputs, log-sum-exp from the probabilities, and the
// three gradients; q/k width different from v's, full causal and two windows.
void TestBackendOps::fusedAttentionMatchesProbs() {
    CpuBackend be(2);
    const int64_t B = 2, T = 9, H = 3, dk = 6, dv = 4;
    const float scale = 0.4f;
    const Vec q = random_vector(B * T * H * dk, 81), k = random_vector(B * T * H * dk, 82);
    const Vec v = random_vector(B * T * H * dv, 83), dout = random_vector(B * T * H * dv, 84);
    for (int64_t window : {int64_t(0), int64_t(1), int64_t(4)}) {
        Vec probs(B * H * T * T), out(B * T * H * dv), fout(B * T * H * dv), lse(B * H * T);
        be.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, scale, window,
                             probs.data(), out.data());
        be.fused_attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, scale, window,
                                   lse.data(), fout.data());
        for (size_t i = 0; i < out.size(); ++i)
            QVERIFY2(std::abs(out[i] - fout[i]) <= 1e-5f * (1 + std::abs(out[i])),
                     qPrintable(QString("window %1: out[%2] %3 vs %4").arg(window).arg(i).arg(out[i]).arg(fout[i])));
        // lse: p_ts = exp(scale q.k - lse_t), so lse_t = scale q_t.k_t - log p_tt.
        for (int64_t b = 0; b < B; ++b)
            for (int64_t h = 0; h < H; ++h)
                for (int64_t t = 0; t < T; ++t) {
                    double s = 0;
                    for (int64_t j = 0; j < dk; ++j)
                        s += double(q[((b * T + t) * H + h) * dk + j]) * k[((b * T + t) * H + h) * dk + j];
                    const double ref = scale * s - std::log(double(probs[((b * H + h) * T + t) * T + t]));
                    QVERIFY(std::abs(lse[(b * H + h) * T + t] - ref) <= 1e-4 * (1 + std::abs(ref)));
                }
        Vec dq(q.size(), 0.5f), dkk(k.size(), 0.5f), dvv(v.size(), 0.5f);  // both accumulate
        Vec fdq = dq, fdk = dkk, fdv = dvv;
        be.attention_backward(dout.data(), q.data(), k.data(), v.data(), probs.data(), B, T, H, dk,
                              dv, scale, window, dq.data(), dkk.data(), dvv.data());
        be.fused_attention_backward(dout.data(), q.data(), k.data(), v.data(), fout.data(),
                                    lse.data(), B, T, H, dk, dv, scale, window, fdq.data(),
                                    fdk.data(), fdv.data());
        for (const auto& [name, a, f] : {std::tuple{"dq", &dq, &fdq}, std::tuple{"dk", &dkk, &fdk},
                                         std::tuple{"dv", &dvv, &fdv}})
            for (size_t i = 0; i < a->size(); ++i)
                QVERIFY2(std::abs((*a)[i] - (*f)[i]) <= 1e-4f * (1 + std::abs((*a)[i])),
                         qPrintable(QString("window %1: %2[%3] %4 vs %5").arg(window).arg(name).arg(i)
                                        .arg((*a)[i]).arg((*f)[i])));
    }
}

// moe::AttentionMath::Bf16 (the tensor-core kernels' reference): q, k, v are rounded to bf16 (the
// result on raw inputs equals, bit for bit, the result on inputs rounded beforehand), p and ds
// are rounded for their products (so it differs from fp32 even on bf16 inputs), and it stays
// within bf16's precision of the fp32 result.
void TestBackendOps::fusedAttentionBf16RoundsItsOperands() {
    CpuBackend be(1);
    const int64_t B = 1, T = 37, H = 2, dk = 24, dv = 16;
    const float scale = 0.3f;
    const Vec q = random_vector(B * T * H * dk, 91), k = random_vector(B * T * H * dk, 92);
    const Vec v = random_vector(B * T * H * dv, 93), dout = random_vector(B * T * H * dv, 94);
    auto rounded = [](Vec x) {
        for (float& e : x) e = moe::round_to_bf16(e);
        return x;
    };
    const Vec qr = rounded(q), kr = rounded(k), vr = rounded(v);
    auto max_abs = [](const Vec& x) {
        float m = 0;
        for (float e : x) m = std::max(m, std::abs(e));
        return m;
    };
    for (int64_t window : {int64_t(0), int64_t(5)}) {
        const size_t no = size_t(B * T * H * dv), nl = size_t(B * H * T);
        Vec o32(no), o16(no), o16r(no), o32r(no), l32(nl), l16(nl), l16r(nl), l32r(nl);
        be.fused_attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, scale, window, l32.data(),
                                   o32.data(), moe::AttentionMath::Fp32);
        be.fused_attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, scale, window, l16.data(),
                                   o16.data(), moe::AttentionMath::Bf16);
        be.fused_attention_forward(qr.data(), kr.data(), vr.data(), B, T, H, dk, dv, scale, window, l16r.data(),
                                   o16r.data(), moe::AttentionMath::Bf16);
        be.fused_attention_forward(qr.data(), kr.data(), vr.data(), B, T, H, dk, dv, scale, window, l32r.data(),
                                   o32r.data(), moe::AttentionMath::Fp32);
        QCOMPARE(std::memcmp(o16.data(), o16r.data(), no * sizeof(float)), 0);
        QCOMPARE(std::memcmp(l16.data(), l16r.data(), nl * sizeof(float)), 0);
        QVERIFY(std::memcmp(o16r.data(), o32r.data(), no * sizeof(float)) != 0);  // p rounded
        QCOMPARE(std::memcmp(l16r.data(), l32r.data(), nl * sizeof(float)), 0);    // l from fp32 p
        const float tol = 2e-2f * max_abs(o32);
        for (size_t i = 0; i < no; ++i)
            QVERIFY2(std::abs(o16[i] - o32[i]) <= tol,
                     qPrintable(QString("window %1: out[%2] bf16 %3 fp32 %4").arg(window).arg(i).arg(o16[i]).arg(o32[i])));

        const size_t nq = q.size(), nv = v.size();
        Vec dq32(nq), dk32(nq), dv32(nv), dq16(nq), dk16(nq), dv16(nv), dq16r(nq), dk16r(nq), dv16r(nv);
        be.fused_attention_backward(dout.data(), q.data(), k.data(), v.data(), o32.data(), l32.data(), B, T, H, dk,
                                    dv, scale, window, dq32.data(), dk32.data(), dv32.data(), moe::AttentionMath::Fp32);
        be.fused_attention_backward(dout.data(), q.data(), k.data(), v.data(), o16.data(), l16.data(), B, T, H, dk,
                                    dv, scale, window, dq16.data(), dk16.data(), dv16.data(), moe::AttentionMath::Bf16);
        be.fused_attention_backward(dout.data(), qr.data(), kr.data(), vr.data(), o16.data(), l16.data(), B, T, H,
                                    dk, dv, scale, window, dq16r.data(), dk16r.data(), dv16r.data(),
                                    moe::AttentionMath::Bf16);
        for (const auto& [name, a, b, c] : {std::tuple{"dq", &dq32, &dq16, &dq16r}, std::tuple{"dk", &dk32, &dk16, &dk16r},
                                            std::tuple{"dv", &dv32, &dv16, &dv16r}}) {
            QVERIFY2(std::memcmp(b->data(), c->data(), b->size() * sizeof(float)) == 0, name);
            const float gtol = 3e-2f * max_abs(*a);
            for (size_t i = 0; i < a->size(); ++i)
                QVERIFY2(std::abs((*a)[i] - (*b)[i]) <= gtol,
                         qPrintable(QString("window %1: %2[%3] bf16 %4 fp32 %5").arg(window).arg(name).arg(i)
                                        .arg((*b)[i]).arg((*a)[i])));
        }
    }
}

void TestBackendOps::crossEntropyKnownAndIgnore() {
    CpuBackend be(1);
    const int64_t n = 3, V = 6;
    Vec logits(n * V, 0.0f);
    for (int j = 0; j < V; ++j) logits[2 * V + j] = 1000.0f + j;  // overflow without the max
    const std::vector<int32_t> targets = {2, -1, 5};
    Vec losses(n, 9.0f);
    be.cross_entropy_forward(logits.data(), targets.data(), n, V, losses.data());
    QVERIFY(std::fabs(losses[0] - std::log(6.0)) < 1e-6);  // uniform logits: log V
    QCOMPARE(losses[1], 0.0f);                              // ignored
    double z = 0;
    for (int j = 0; j < V; ++j) z += std::exp(j - 5.0);
    QVERIFY(std::fabs(losses[2] - std::log(z)) < 1e-4);
    Vec d = random_vector(n * V, 51);
    const Vec d0 = d;
    be.cross_entropy_backward(logits.data(), targets.data(), n, V, 0.5f, d.data());
    for (int j = 0; j < V; ++j) {
        QCOMPARE(d[V + j], d0[V + j]);  // ignored row untouched
        const double want = 0.5 * (1.0 / 6.0 - (j == 2 ? 1.0 : 0.0));
        QVERIFY(std::fabs(d[j] - d0[j] - want) < 1e-6);
    }
}

// Group limiting: group 0 has the single best expert, group 1 the best pair.
void TestBackendOps::gateGroupLimit() {
    CpuBackend be(1);
    const Vec logits = logits_for_scores({0.95, 0.1, 0.1, 0.1, 0.9, 0.85, 0.2, 0.1});
    const Vec zero_bias(8, 0.0f);
    GateParams p;
    p.n_experts = 8;
    p.top_k = 2;
    p.norm_topk_prob = false;
    // No group limit: the two best experts overall.
    GateOut o = run_gate(be, logits, 1, p);
    QCOMPARE(o.idx, (std::vector<int32_t>{0, 4}));
    // Two groups, keep one. With a bias set, group score = top-2 sum: group 1 (1.75) beats
    // group 0 (1.05) and both experts come from group 1.
    p.n_group = 2;
    p.topk_group = 1;
    p.bias = zero_bias.data();
    o = run_gate(be, logits, 1, p);
    QCOMPARE(o.idx, (std::vector<int32_t>{4, 5}));
    // Without a bias, group score = max: group 0 (0.95) wins; experts 1, 2, 3 tie, lowest first.
    p.bias = nullptr;
    o = run_gate(be, logits, 1, p);
    QCOMPARE(o.idx, (std::vector<int32_t>{0, 1}));
    QCOMPARE(o.w[1], o.scores[1]);
    // Tied groups: lower group index kept.
    const Vec tied = logits_for_scores({0.3, 0.9, 0.2, 0.9, 0.1, 0.2, 0.3, 0.4});
    p.n_group = 4;
    p.topk_group = 1;
    o = run_gate(be, tied, 1, p);
    QCOMPARE(o.idx, (std::vector<int32_t>{1, 0}));
}

void TestBackendOps::gateBiasSelectsNotWeights() {
    CpuBackend be(1);
    const Vec logits = logits_for_scores({0.9, 0.8, 0.3, 0.2});
    const Vec bias = {0.0f, 0.0f, 0.0f, 1.0f};
    GateParams p;
    p.n_experts = 4;
    p.top_k = 2;
    p.norm_topk_prob = true;
    p.routed_scaling_factor = 2.5f;
    p.bias = bias.data();
    const GateOut o = run_gate(be, logits, 1, p);
    // sel = {0.9, 0.8, 0.3, 1.2}: expert 3 first, then 0; weights from the unbiased scores.
    QCOMPARE(o.idx, (std::vector<int32_t>{3, 0}));
    const double s3 = o.scores[3], s0 = o.scores[0];
    QVERIFY(std::fabs(s3 - 0.2) < 1e-6 && std::fabs(s0 - 0.9) < 1e-6);
    QVERIFY(std::fabs(o.w[0] - 2.5 * s3 / (s3 + s0)) < 1e-6);
    QVERIFY(std::fabs(o.w[1] - 2.5 * s0 / (s3 + s0)) < 1e-6);
    QVERIFY(std::fabs(o.w[0] + o.w[1] - 2.5) < 1e-6);  // renormalized, then scaled
}

void TestBackendOps::gateSoftmaxAndNoNorm() {
    CpuBackend be(1);
    const int64_t E = 6;
    const Vec logits = {0.5f, 2.0f, -1.0f, 1.5f, 800.0f, 0.0f};  // 800: max trick needed
    const Vec logits2 = {0.5f, 2.0f, -1.0f, 1.5f, 0.7f, 0.0f};
    Vec both = logits;
    both.insert(both.end(), logits2.begin(), logits2.end());
    GateParams p;
    p.n_experts = E;
    p.top_k = 3;
    p.scoring = ScoringFunc::Softmax;
    p.norm_topk_prob = false;
    p.routed_scaling_factor = 1.0f;
    const GateOut o = run_gate(be, both, 2, p);
    QVERIFY(std::all_of(o.scores.begin(), o.scores.end(), [](float s) { return std::isfinite(s); }));
    QCOMPARE(o.idx[0], 4);
    double z = 0;
    for (float l : logits2) z += std::exp(l);
    for (int e = 0; e < E; ++e) QVERIFY(std::fabs(o.scores[E + e] - std::exp(logits2[e]) / z) < 1e-6);
    QCOMPARE((std::vector<int32_t>(o.idx.begin() + 3, o.idx.end())),
             (std::vector<int32_t>{1, 3, 4}));
    for (int k = 0; k < 3; ++k) QCOMPARE(o.w[3 + k], o.scores[E + o.idx[3 + k]]);  // no norm
}

void TestBackendOps::gateTies() {
    CpuBackend be(1);
    const Vec logits(8, 0.25f);
    GateParams p;
    p.n_experts = 8;
    p.top_k = 3;
    p.routed_scaling_factor = 3.0f;
    const GateOut o = run_gate(be, logits, 1, p);
    QCOMPARE(o.idx, (std::vector<int32_t>{0, 1, 2}));
    for (float w : o.w) QVERIFY(std::fabs(w - 1.0f) < 1e-6);
}

void TestBackendOps::gateRejectsBadParams() {
    CpuBackend be(1);
    const Vec logits(6, 0.0f);
    GateParams p;
    p.n_experts = 6;
    p.top_k = 3;
    p.n_group = 4;  // 6 % 4 != 0
    p.topk_group = 1;
    QVERIFY_THROWS_EXCEPTION(moe::Error, run_gate(be, logits, 1, p));
    p.n_group = 3;  // one group of 2 cannot supply 3 experts
    QVERIFY_THROWS_EXCEPTION(moe::Error, run_gate(be, logits, 1, p));
}

void TestBackendOps::routePlanHandExample() {
    CpuBackend be(1);
    const int64_t n = 3, K = 2, E = 4;
    const std::vector<int32_t> topk = {2, 0, 0, 1, 2, 1};
    std::vector<int64_t> offsets(E + 1, -1);
    std::vector<int32_t> row_token(n * K, -1), slot_row(n * K, -1);
    be.moe_route_plan(topk.data(), n, K, E, offsets.data(), row_token.data(), slot_row.data());
    QCOMPARE(offsets, (std::vector<int64_t>{0, 2, 4, 6, 6}));  // expert 3 gets nothing
    QCOMPARE(row_token, (std::vector<int32_t>{0, 1, 1, 2, 0, 2}));
    QCOMPARE(slot_row, (std::vector<int32_t>{4, 0, 1, 2, 5, 3}));
    const std::vector<int32_t> bad = {0, 4, 0, 1, 2, 1};
    QVERIFY_THROWS_EXCEPTION(moe::Error, be.moe_route_plan(bad.data(), n, K, E, offsets.data(),
                                                           row_token.data(), slot_row.data()));
}

void TestBackendOps::permuteRoundTrip() {
    CpuBackend be(2);
    const int64_t n = 40, K = 3, E = 7, dim = 5;
    std::vector<int32_t> topk(n * K);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t k = 0; k < K; ++k) topk[t * K + k] = static_cast<int32_t>((t * 3 + k * 2) % E);
    std::vector<int64_t> off(E + 1);
    std::vector<int32_t> rt(n * K), sr(n * K);
    be.moe_route_plan(topk.data(), n, K, E, off.data(), rt.data(), sr.data());
    for (int64_t e = 0; e < E; ++e)
        for (int64_t r = off[e]; r < off[e + 1]; ++r) {
            if (r > off[e]) QVERIFY(rt[r - 1] < rt[r]);  // tokens ascend within an expert
        }
    for (int64_t i = 0; i < n * K; ++i) QCOMPARE(rt[sr[i]], static_cast<int32_t>(i / K));
    const Vec x = random_vector(n * dim, 61);
    Vec xp(n * K * dim);
    be.moe_permute(x.data(), rt.data(), n * K, dim, xp.data());
    // Weights summing to 1 per token reassemble x exactly (up to rounding).
    Vec w(n * K);
    for (int64_t t = 0; t < n; ++t) {
        w[t * K] = 0.5f;
        w[t * K + 1] = 0.25f;
        w[t * K + 2] = 0.25f;
    }
    Vec y(n * dim, 0.0f);
    be.moe_unpermute(xp.data(), w.data(), sr.data(), n, K, dim, y.data());
    QVERIFY(moe::test::max_relative_error(y.data(), x.data(), n * dim, 1e-3) < 1e-6);
}

// The grouped expert GEMMs against a double-precision triple loop per group: uneven and empty
// groups (first, middle, last), every output written or accumulated as the contract says.
void TestBackendOps::groupedLinearMatchesNaive() {
    CpuBackend be(2);
    const int64_t groups = 6, in = 5, out = 7;
    const std::vector<int64_t> off = {0, 0, 3, 4, 4, 9, 9};  // groups 0, 3 and 5 are empty
    const int64_t rows = off[groups];
    std::vector<Vec> w, dw;
    std::vector<const float*> wp;
    std::vector<float*> dwp;
    for (int64_t g = 0; g < groups; ++g) {
        w.push_back(random_vector(out * in, 100 + unsigned(g)));
        dw.push_back(random_vector(out * in, 200 + unsigned(g)));
    }
    const std::vector<Vec> dw0 = dw;
    for (int64_t g = 0; g < groups; ++g) {
        wp.push_back(w[g].data());
        dwp.push_back(dw[g].data());
    }
    const Vec x = random_vector(rows * in, 71), dy = random_vector(rows * out, 72);
    const Vec dx0 = random_vector(rows * in, 73);
    Vec y(rows * out, std::nanf("")), dx = dx0;
    be.grouped_linear_forward(x.data(), off.data(), groups, rows, wp.data(), in, out, y.data());
    be.grouped_linear_backward_data(dy.data(), off.data(), groups, rows, wp.data(), in, out,
                                    dx.data());
    be.grouped_linear_backward_weight(dy.data(), x.data(), off.data(), groups, rows, dwp.data(),
                                      in, out);
    for (int64_t g = 0; g < groups; ++g) {
        for (int64_t r = off[g]; r < off[g + 1]; ++r) {
            for (int64_t o = 0; o < out; ++o) {
                double ref = 0;
                for (int64_t i = 0; i < in; ++i) ref += double(x[r * in + i]) * w[g][o * in + i];
                QVERIFY2(std::abs(y[r * out + o] - ref) <= 1e-5 * (1 + std::abs(ref)),
                         qPrintable(QString("y[%1,%2]").arg(r).arg(o)));
            }
            for (int64_t i = 0; i < in; ++i) {
                double ref = dx0[r * in + i];
                for (int64_t o = 0; o < out; ++o) ref += double(dy[r * out + o]) * w[g][o * in + i];
                QVERIFY2(std::abs(dx[r * in + i] - ref) <= 1e-5 * (1 + std::abs(ref)),
                         qPrintable(QString("dx[%1,%2]").arg(r).arg(i)));
            }
        }
        for (int64_t o = 0; o < out; ++o)
            for (int64_t i = 0; i < in; ++i) {
                double ref = dw0[g][o * in + i];
                for (int64_t r = off[g]; r < off[g + 1]; ++r)
                    ref += double(dy[r * out + o]) * x[r * in + i];
                QVERIFY2(std::abs(dw[g][o * in + i] - ref) <= 1e-5 * (1 + std::abs(ref)),
                         qPrintable(QString("dW_%1[%2,%3]").arg(g).arg(o).arg(i)));
            }
    }
}

void TestBackendOps::seqAuxLossNaive() {
    CpuBackend be(1);
    const int64_t B = 3, T = 4, E = 5, K = 2;
    const float alpha = 0.01f;
    Vec scores = random_vector(B * T * E, 71, 0.5f);
    for (auto& s : scores) s += 0.5f;  // (0, 1]
    std::vector<int32_t> topk(B * T * K);
    std::mt19937 rng(5);
    for (int64_t t = 0; t < B * T; ++t) {
        std::vector<int32_t> e(E);
        std::iota(e.begin(), e.end(), 0);
        std::shuffle(e.begin(), e.end(), rng);
        for (int64_t k = 0; k < K; ++k) topk[t * K + k] = e[k];
    }
    double ref = 0;
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < E; ++i) {
            double cnt = 0, P = 0;
            for (int64_t t = b * T; t < (b + 1) * T; ++t) {
                for (int64_t k = 0; k < K; ++k) cnt += topk[t * K + k] == i;
                double z = 0;
                for (int64_t j = 0; j < E; ++j) z += scores[t * E + j];
                P += scores[t * E + i] / z / T;
            }
            ref += static_cast<double>(E) / (K * T) * cnt * P;
        }
    ref *= static_cast<double>(alpha) / B;
    const double got = be.seq_aux_loss_forward(scores.data(), topk.data(), B, T, E, K, alpha);
    qInfo("seq aux loss %.9g vs naive %.9g", got, ref);
    QVERIFY(std::fabs(got - ref) < 1e-6 * std::fabs(ref));
}

// --- finite differences ----------------------------------------------------------------------

void TestBackendOps::fdRmsnorm() {
    CpuBackend be(1);
    const int64_t rows = 4, dim = 8, xs = 10, ys = 9, dxs = 11;
    const float eps = 1e-5f;
    Vec x = random_vector(rows * xs, 81);
    Vec w = random_vector(dim, 82, 0.5f);
    for (auto& v : w) v += 1.0f;
    const Vec R = random_vector(rows * ys, 83);
    Vec y(rows * ys, 0.0f), rstd(rows);
    auto loss = [&] {
        be.rmsnorm_forward(x.data(), xs, w.data(), rows, dim, eps, y.data(), ys, rstd.data());
        return dot(y, R);
    };
    loss();
    Vec dx = random_vector(rows * dxs, 84), dw = random_vector(dim, 85);  // checks "+="
    const Vec dx0 = dx, dw0 = dw;
    be.rmsnorm_backward(R.data(), ys, x.data(), xs, w.data(), rstd.data(), rows, dim, dx.data(),
                        dxs, dw.data());
    // Map dx (stride dxs) onto x's layout (stride xs); columns past dim have zero gradient.
    Vec gx(x.size(), 0.0f);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < dim; ++j) gx[r * xs + j] = dx[r * dxs + j] - dx0[r * dxs + j];
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = dim; j < dxs; ++j) QCOMPARE(dx[r * dxs + j], dx0[r * dxs + j]);
    FdResult rx = fd_check(x, gx, loss, 1e-2);
    CHECK_FD("rmsnorm dx", rx, kFdTol);
    FdResult rw = fd_check(w, minus(dw, dw0), loss, 1e-2);
    CHECK_FD("rmsnorm dw", rw, kFdTol);
}

void TestBackendOps::fdRope() {
    CpuBackend be(1);
    const int64_t rows = 3, heads = 2, hs = 7, row_stride = 15, offset = 2, rd = 4;
    const std::vector<int32_t> pos = {0, 5, 17};
    Vec x = random_vector(rows * row_stride, 91);
    const Vec R = random_vector(rows * row_stride, 92);
    // Plain RoPE, and YaRN's blend with a cos/sin factor (the backward is the inverse rotation
    // times the same factor).
    moe::RopeParams yarn{10000.0, 4.0, 0.0, 1.5, 1.2};
    for (const moe::RopeParams& rp : {moe::RopeParams{10000.0}, yarn}) {
        auto loss = [&] {
            Vec y = x;
            be.rope(y.data(), rows, row_stride, heads, hs, offset, rd, pos.data(), rp, false);
            return dot(y, R);
        };
        // The backward of an in-place rotation: rotate the output gradient back.
        Vec g = R;
        be.rope(g.data(), rows, row_stride, heads, hs, offset, rd, pos.data(), rp, true);
        FdResult r = fd_check(x, g, loss, 1e-2, 1000);
        CHECK_FD(rp.factor > 1 ? "rope yarn (inverse = backward)" : "rope (inverse = backward)", r,
                 kFdTol);
    }
    // YaRN's frequencies by hand: rope_dim 4, theta 10000 -> base 1 and 1/100; pair 0 has ramp 0
    // (kept), pair 1 ramp 1/1.5 (2/3 of the way to base / 4); cos and sin times 1.2.
    Vec one(4, 0.0f);
    one[0] = 1.0f;
    one[2] = 1.0f;
    const int32_t p9 = 9;
    be.rope(one.data(), 1, 4, 1, 4, 0, 4, &p9, yarn, false);
    const double f1 = 0.01 * (1.0 - 2.0 / 3.0) + 0.0025 * (2.0 / 3.0);
    QVERIFY(std::fabs(one[0] - 1.2 * std::cos(9.0)) < 1e-6 && std::fabs(one[1] - 1.2 * std::sin(9.0)) < 1e-6);
    QVERIFY(std::fabs(one[2] - 1.2 * std::cos(9.0 * f1)) < 1e-6 &&
            std::fabs(one[3] - 1.2 * std::sin(9.0 * f1)) < 1e-6);
}

void TestBackendOps::fdAttention() {
    CpuBackend be(1);
    const int64_t B = 2, T = 4, H = 2, dk = 3, dv = 2;
    const float scale = 0.7f;
    Vec q = random_vector(B * T * H * dk, 101), k = random_vector(B * T * H * dk, 102),
        v = random_vector(B * T * H * dv, 103);
    const Vec R = random_vector(B * T * H * dv, 104);
    Vec probs(B * H * T * T), out(B * T * H * dv);
    auto loss = [&] {
        be.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, scale, 0, probs.data(),
                             out.data());
        return dot(out, R);
    };
    loss();
    Vec dq = random_vector(q.size(), 105), dk_ = random_vector(k.size(), 106),
        dv_ = random_vector(v.size(), 107);
    const Vec dq0 = dq, dk0 = dk_, dv0 = dv_;
    be.attention_backward(R.data(), q.data(), k.data(), v.data(), probs.data(), B, T, H, dk, dv,
                          scale, 0, dq.data(), dk_.data(), dv_.data());
    FdResult rq = fd_check(q, minus(dq, dq0), loss, 1e-2);
    CHECK_FD("attention dq", rq, kFdTol);
    FdResult rk = fd_check(k, minus(dk_, dk0), loss, 1e-2);
    CHECK_FD("attention dk", rk, kFdTol);
    FdResult rv = fd_check(v, minus(dv_, dv0), loss, 1e-2);
    CHECK_FD("attention dv", rv, kFdTol);
}

void TestBackendOps::fdAttentionWindow() {
    CpuBackend be(1);
    const int64_t B = 2, T = 7, H = 2, dk = 3, dv = 2, W = 3;
    const float scale = 0.7f;
    Vec q = random_vector(B * T * H * dk, 1101), k = random_vector(B * T * H * dk, 1102),
        v = random_vector(B * T * H * dv, 1103);
    const Vec R = random_vector(B * T * H * dv, 1104);
    Vec probs(B * H * T * T), out(B * T * H * dv);
    auto loss = [&] {
        be.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, scale, W, probs.data(),
                             out.data());
        return dot(out, R);
    };
    loss();
    Vec dq(q.size(), 0.0f), dk_(k.size(), 0.0f), dv_(v.size(), 0.0f);
    be.attention_backward(R.data(), q.data(), k.data(), v.data(), probs.data(), B, T, H, dk, dv,
                          scale, W, dq.data(), dk_.data(), dv_.data());
    FdResult rq = fd_check(q, dq, loss, 1e-2, 1000);
    CHECK_FD("attention window 3 dq", rq, kFdTol);
    FdResult rk = fd_check(k, dk_, loss, 1e-2, 1000);
    CHECK_FD("attention window 3 dk", rk, kFdTol);
    FdResult rv = fd_check(v, dv_, loss, 1e-2, 1000);
    CHECK_FD("attention window 3 dv", rv, kFdTol);
}

void TestBackendOps::fdSwiglu() {
    CpuBackend be(1);
    const int64_t n = 24;
    Vec g = random_vector(n, 111, 4.0f), u = random_vector(n, 112, 2.0f);
    const Vec R = random_vector(n, 113);
    Vec out(n);
    auto loss = [&] {
        be.swiglu_forward(g.data(), u.data(), n, out.data());
        return dot(out, R);
    };
    Vec dg = random_vector(n, 114), du = random_vector(n, 115);
    const Vec dg0 = dg, du0 = du;
    be.swiglu_backward(R.data(), g.data(), u.data(), n, dg.data(), du.data());
    FdResult rg = fd_check(g, minus(dg, dg0), loss, 1e-2);
    CHECK_FD("swiglu dg", rg, kFdTol);
    FdResult ru = fd_check(u, minus(du, du0), loss, 1e-2);
    CHECK_FD("swiglu du", ru, kFdTol);
}

void TestBackendOps::fdCrossEntropy() {
    CpuBackend be(1);
    const int64_t n = 4, V = 7;
    const float scale = 0.7f;
    Vec logits = random_vector(n * V, 121, 3.0f);
    const std::vector<int32_t> targets = {3, -1, 0, 6};
    Vec losses(n);
    auto loss = [&] {
        be.cross_entropy_forward(logits.data(), targets.data(), n, V, losses.data());
        double s = 0;
        for (float l : losses) s += l;
        return scale * s;
    };
    Vec d = random_vector(n * V, 122);
    const Vec d0 = d;
    be.cross_entropy_backward(logits.data(), targets.data(), n, V, scale, d.data());
    FdResult r = fd_check(logits, minus(d, d0), loss, 1e-2, 1000);
    CHECK_FD("cross_entropy dlogits", r, kFdTol);
}

void TestBackendOps::fdEmbedding() {
    CpuBackend be(1);
    const int64_t vocab = 6, dim = 3;
    const std::vector<int32_t> tok = {1, 3, 1, 0, 1, 5};  // repeats accumulate
    const int64_t n = static_cast<int64_t>(tok.size());
    Vec table = random_vector(vocab * dim, 131);
    const Vec R = random_vector(n * dim, 132);
    Vec out(n * dim);
    auto loss = [&] {
        be.embedding_forward(tok.data(), n, table.data(), vocab, dim, out.data());
        return dot(out, R);
    };
    Vec dt = random_vector(vocab * dim, 133);
    const Vec dt0 = dt;
    be.embedding_backward(tok.data(), n, R.data(), vocab, dim, dt.data());
    FdResult r = fd_check(table, minus(dt, dt0), loss, 1e-2, 1000);
    CHECK_FD("embedding dtable", r, kFdTol);
}

void TestBackendOps::fdGate_data() {
    QTest::addColumn<int>("scoring");  // 0 sigmoid, 1 softmax
    QTest::addColumn<bool>("norm");
    QTest::addColumn<bool>("grouped");
    QTest::addColumn<bool>("bias");
    QTest::addColumn<bool>("extra");
    QTest::addColumn<float>("rsf");
    QTest::newRow("sigmoid grouped bias norm extra") << 0 << true << true << true << true << 2.5f;
    QTest::newRow("sigmoid nonorm") << 0 << false << false << false << false << 1.5f;
    QTest::newRow("softmax norm grouped") << 1 << true << true << false << false << 1.0f;
    QTest::newRow("softmax nonorm bias extra") << 1 << false << false << true << true << 2.0f;
}

void TestBackendOps::fdGate() {
    QFETCH(int, scoring);
    QFETCH(bool, norm);
    QFETCH(bool, grouped);
    QFETCH(bool, bias);
    QFETCH(bool, extra);
    QFETCH(float, rsf);
    CpuBackend be(1);
    const int64_t n = 5, E = 8;
    GateParams p;
    p.n_experts = E;
    p.top_k = 3;
    p.n_group = grouped ? 4 : 1;
    p.topk_group = grouped ? 2 : 1;
    p.scoring = scoring ? ScoringFunc::Softmax : ScoringFunc::Sigmoid;
    p.norm_topk_prob = norm;
    p.routed_scaling_factor = rsf;
    const Vec b = random_vector(E, 141, 0.05f);
    p.bias = bias ? b.data() : nullptr;
    // Well-separated logits (a permutation of an even grid, spacing 0.5) so top-k is stable.
    Vec logits(n * E);
    std::mt19937 rng(9);
    for (int64_t t = 0; t < n; ++t) {
        std::vector<int> perm(E);
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        for (int64_t e = 0; e < E; ++e) logits[t * E + e] = -1.75f + 0.5f * perm[e];
    }
    const Vec Rw = random_vector(n * p.top_k, 142), Rs = random_vector(n * E, 143);
    const GateOut base = run_gate(be, logits, n, p);
    auto loss = [&]() -> double {
        const GateOut o = run_gate(be, logits, n, p);
        if (o.idx != base.idx) return NAN;  // selection flipped: not differentiable here
        return dot(o.w, Rw) + (extra ? dot(o.scores, Rs) : 0.0);
    };
    Vec dl = random_vector(n * E, 144);
    const Vec dl0 = dl;
    be.moe_gate_backward(Rw.data(), extra ? Rs.data() : nullptr, base.scores.data(),
                         base.idx.data(), base.w.data(), n, p, dl.data());
    FdResult r = fd_check(logits, minus(dl, dl0), loss, 1e-2, 1000);
    CHECK_FD(qPrintable(QString("gate [%1]").arg(QTest::currentDataTag())), r, kFdTol);
    QVERIFY(r.checked >= 30);
}

void TestBackendOps::fdSeqAuxLoss() {
    CpuBackend be(1);
    const int64_t B = 2, T = 3, E = 4, K = 2;
    const float alpha = 0.3f, dloss = 1.7f;
    Vec scores = random_vector(B * T * E, 151, 0.45f);
    for (auto& s : scores) s += 0.55f;
    const std::vector<int32_t> topk = {0, 1, 2, 3, 0, 2, 1, 0, 3, 1, 1, 2};
    auto loss = [&] {
        return dloss * be.seq_aux_loss_forward(scores.data(), topk.data(), B, T, E, K, alpha);
    };
    Vec d = random_vector(B * T * E, 152);
    const Vec d0 = d;
    be.seq_aux_loss_backward(scores.data(), topk.data(), B, T, E, K, alpha, dloss, d.data());
    FdResult r = fd_check(scores, minus(d, d0), loss, 1e-2, 1000);
    CHECK_FD("seq_aux_loss dscores", r, kFdTol);
}

void TestBackendOps::fdPermuteUnpermute() {
    CpuBackend be(1);
    const int64_t n = 4, K = 2, E = 3, dim = 3;
    const std::vector<int32_t> topk = {2, 0, 0, 1, 2, 1, 1, 0};
    std::vector<int64_t> off(E + 1);
    std::vector<int32_t> rt(n * K), sr(n * K);
    be.moe_route_plan(topk.data(), n, K, E, off.data(), rt.data(), sr.data());

    Vec x = random_vector(n * dim, 161);
    const Vec Rp = random_vector(n * K * dim, 162);
    auto loss_p = [&] {
        Vec xp(n * K * dim);
        be.moe_permute(x.data(), rt.data(), n * K, dim, xp.data());
        return dot(xp, Rp);
    };
    Vec dx = random_vector(n * dim, 163);
    const Vec dx0 = dx;
    be.moe_permute_backward(Rp.data(), sr.data(), n, K, dim, dx.data());
    FdResult rp = fd_check(x, minus(dx, dx0), loss_p, 1e-2, 1000);
    CHECK_FD("moe_permute dx", rp, kFdTol);

    Vec yp = random_vector(n * K * dim, 164), w = random_vector(n * K, 165);
    const Vec R = random_vector(n * dim, 166), y0 = random_vector(n * dim, 167);
    auto loss_u = [&] {
        Vec y = y0;
        be.moe_unpermute(yp.data(), w.data(), sr.data(), n, K, dim, y.data());
        return dot(y, R);
    };
    Vec dyp = random_vector(yp.size(), 168), dw = random_vector(w.size(), 169);
    const Vec dyp0 = dyp, dw0 = dw;
    be.moe_unpermute_backward(R.data(), yp.data(), w.data(), sr.data(), n, K, dim, dyp.data(),
                              dw.data());
    FdResult ry = fd_check(yp, minus(dyp, dyp0), loss_u, 1e-2, 1000);
    CHECK_FD("moe_unpermute dyp", ry, kFdTol);
    FdResult rw = fd_check(w, minus(dw, dw0), loss_u, 1e-2, 1000);
    CHECK_FD("moe_unpermute dw", rw, kFdTol);
}

// --- determinism -----------------------------------------------------------------------------

// Runs a set of ops large enough to take the parallel paths; returns all outputs concatenated.
static Vec run_suite(CpuBackend& be) {
    Vec all;
    auto append = [&](const Vec& v) { all.insert(all.end(), v.begin(), v.end()); };
    // rmsnorm forward/backward (dw is a cross-row reduction)
    const int64_t rows = 128, dim = 160;  // every op here takes its parallel path
    const Vec x = random_vector(rows * dim, 201), w = random_vector(dim, 202), dy =
        random_vector(rows * dim, 203);
    Vec y(rows * dim), rstd(rows), dx(rows * dim, 0.0f), dw(dim, 0.0f);
    be.rmsnorm_forward(x.data(), dim, w.data(), rows, dim, 1e-6f, y.data(), dim, rstd.data());
    be.rmsnorm_backward(dy.data(), dim, x.data(), dim, w.data(), rstd.data(), rows, dim,
                        dx.data(), dim, dw.data());
    append(y), append(dx), append(dw);
    // sum
    all.push_back(static_cast<float>(be.sum(x.data(), rows * dim)));
    // gemm
    Vec C(rows * rows, 0.0f);
    be.gemm(false, true, rows, rows, dim, 1.0f, x.data(), dim, dy.data(), dim, 0.0f, C.data(),
            rows);
    append(C);
    // GEMMs cut into several output panels, by rows and by columns, every transpose: their
    // panels, not OpenBLAS's threading, decide each element's sum order.
    for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb) {
            const int64_t M = tb ? 300 : 70, N = tb ? 70 : 300, K = 130;
            const Vec A = random_vector(M * K, 220 + ta), Bm = random_vector(K * N, 222 + tb);
            Vec Cp = random_vector(M * N, 224);
            be.gemm(ta, tb, M, N, K, 0.5f, A.data(), ta ? M : K, Bm.data(), tb ? K : N, 1.0f,
                    Cp.data(), N);
            append(Cp);
        }
    // embedding backward with repeated tokens
    std::vector<int32_t> tok(rows);
    for (int64_t t = 0; t < rows; ++t) tok[t] = static_cast<int32_t>((t * 7) % 11);
    Vec dt(11 * dim, 0.0f);
    be.embedding_backward(tok.data(), rows, dy.data(), 11, dim, dt.data());
    append(dt);
    // attention forward/backward
    const int64_t B = 2, T = 24, H = 4, dk = 16, dv = 16;
    const Vec q = random_vector(B * T * H * dk, 204), k = random_vector(B * T * H * dk, 205),
              v = random_vector(B * T * H * dv, 206), dout = random_vector(B * T * H * dv, 207);
    Vec probs(B * H * T * T), out(B * T * H * dv), dq(q.size(), 0.0f), dk_(k.size(), 0.0f),
        dv_(v.size(), 0.0f);
    be.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, 0.25f, 0, probs.data(),
                         out.data());
    be.attention_backward(dout.data(), q.data(), k.data(), v.data(), probs.data(), B, T, H, dk,
                          dv, 0.25f, 0, dq.data(), dk_.data(), dv_.data());
    append(out), append(dq), append(dk_), append(dv_);
    // gate + seq aux + dispatch
    const int64_t n = 256, E = 16;
    const Vec logits = random_vector(n * E, 208, 3.0f), bias = random_vector(E, 209, 0.1f);
    GateParams p;
    p.n_experts = E;
    p.top_k = 4;
    p.n_group = 4;
    p.topk_group = 2;
    p.routed_scaling_factor = 2.5f;
    p.bias = bias.data();
    GateOut g = run_gate(be, logits, n, p);
    append(g.scores), append(g.w);
    for (int32_t i : g.idx) all.push_back(static_cast<float>(i));
    Vec dsc(n * E, 0.0f), dl(n * E, 0.0f);
    const double aux = be.seq_aux_loss_forward(g.scores.data(), g.idx.data(), 4, n / 4, E, 4, 1e-3f);
    all.push_back(static_cast<float>(aux));
    be.seq_aux_loss_backward(g.scores.data(), g.idx.data(), 4, n / 4, E, 4, 1e-3f, 1.0f,
                             dsc.data());
    be.moe_gate_backward(g.w.data(), dsc.data(), g.scores.data(), g.idx.data(), g.w.data(), n, p,
                         dl.data());
    append(dl);
    return all;
}

// Bitwise identical run to run and for any thread count, whatever OpenBLAS kernel this CPU
// gets (scripts/test.sh runs this suite under two OPENBLAS_CORETYPEs).
void TestBackendOps::determinism() {
    CpuBackend one(1), two(2), three(3);
    const Vec a1 = run_suite(one), b1 = run_suite(one);
    const Vec a2 = run_suite(two), b2 = run_suite(two);
    const Vec a3 = run_suite(three);
    QVERIFY2(bitwise_equal(a1, b1), "1 thread: two runs differ");
    QVERIFY2(bitwise_equal(a2, b2), "2 threads: two runs differ");
    for (const Vec* other : {&a2, &a3}) {
        size_t differing = 0;
        for (size_t i = 0; i < a1.size(); ++i) differing += a1[i] != (*other)[i];
        const double rel = moe::test::max_relative_error(
            other->data(), a1.data(), static_cast<int64_t>(a1.size()), 1e-2);
        qInfo("1 vs %d threads: %zu of %zu values differ (max relative difference %.3e)",
              other == &a2 ? 2 : 3, differing, a1.size(), rel);
        QCOMPARE(differing, size_t{0});
    }
}

QTEST_APPLESS_MAIN(TestBackendOps)
#include "tst_backend_ops.moc"
