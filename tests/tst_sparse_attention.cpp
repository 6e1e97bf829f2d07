// Dynamic top-k sparse attention ops of the CPU backend (backend.h): the indexer's scores and
// their gradients, the top-k choice, attention over chosen keys (against dense attention and
// finite differences), the indexer's KL objective, the generation mask, determinism.
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "fd_check.h"
#include "test_support.h"

using moe::CpuBackend;
using moe::test::fd_check;
using moe::test::FdResult;
using moe::test::kFdTol;
using moe::test::random_vector;
using Vec = std::vector<float>;
using Idx = std::vector<int32_t>;

namespace {

double dot(const Vec& a, const Vec& b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); ++i)
        if (std::isfinite(a[i])) s += static_cast<double>(a[i]) * b[i];
    return s;
}

// The indexer's pre-activations x[b, i, j, s] in double: their signs decide the ReLU branch.
std::vector<double> indexer_preact(const Vec& qi, const Vec& ki, int64_t B, int64_t Tq, int64_t Tk,
                                   int64_t HI, int64_t dI, float scale) {
    std::vector<double> x(size_t(B * Tq * HI * Tk));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < Tq; ++i)
            for (int64_t j = 0; j < HI; ++j)
                for (int64_t s = 0; s < Tk; ++s) {
                    double d = 0;
                    for (int64_t c = 0; c < dI; ++c)
                        d += double(qi[size_t(((b * Tq + i) * HI + j) * dI + c)]) *
                             ki[size_t((b * Tk + s) * dI + c)];
                    x[size_t(((b * Tq + i) * HI + j) * Tk + s)] = scale * d;
                }
    return x;
}

// Brute-force top-k: sort (score desc, index asc), keep K, ascending.
Idx brute_topk(const Vec& sc, int64_t B, int64_t Tq, int64_t Tk, int64_t start, int64_t K) {
    Idx out(size_t(B * Tq * K), -1);
    for (int64_t r = 0; r < B * Tq; ++r) {
        const int64_t n = start + r % Tq + 1;
        std::vector<int32_t> c(static_cast<size_t>(n));
        for (int64_t s = 0; s < n; ++s) c[size_t(s)] = int32_t(s);
        const float* row = sc.data() + r * Tk;
        std::sort(c.begin(), c.end(), [&](int32_t a, int32_t b) {
            return row[a] > row[b] || (row[a] == row[b] && a < b);
        });
        c.resize(size_t(std::min<int64_t>(n, K)));
        std::sort(c.begin(), c.end());
        std::copy(c.begin(), c.end(), out.begin() + r * K);
    }
    return out;
}

}  // namespace

class TestSparseAttention : public QObject {
    Q_OBJECT
private slots:
    void indexerScoresKnownAnswer() {
        CpuBackend be(2);
        const int64_t B = 2, Tq = 3, Tk = 8, start = 5, HI = 3, dI = 11;
        const float scale = 0.4f;
        const Vec qi = random_vector(B * Tq * HI * dI, 1), ki = random_vector(B * Tk * dI, 2),
                  w = random_vector(B * Tq * HI, 3);
        Vec sc(size_t(B * Tq * Tk));
        be.indexer_scores_forward(qi.data(), ki.data(), w.data(), B, Tq, Tk, start, HI, dI, scale,
                                  sc.data());
        const std::vector<double> x = indexer_preact(qi, ki, B, Tq, Tk, HI, dI, scale);
        double worst = 0;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t i = 0; i < Tq; ++i)
                for (int64_t s = 0; s < Tk; ++s) {
                    const float got = sc[size_t((b * Tq + i) * Tk + s)];
                    if (s > start + i) {
                        QVERIFY(std::isinf(got) && got < 0);
                        continue;
                    }
                    double want = 0;
                    for (int64_t j = 0; j < HI; ++j)
                        want += w[size_t((b * Tq + i) * HI + j)] *
                                std::max(0.0, x[size_t(((b * Tq + i) * HI + j) * Tk + s)]);
                    worst = std::max(worst, std::fabs(got - want));
                }
        qInfo("indexer scores vs double: worst abs error %.2e", worst);
        QVERIFY(worst < 1e-5);
        QVERIFY_THROWS_EXCEPTION(
            moe::Error, be.indexer_scores_forward(qi.data(), ki.data(), w.data(), B, Tq, Tk, 6, HI,
                                                  dI, scale, sc.data()));
    }

    // Finite differences through the ReLU: a perturbation that flips a pre-activation's sign
    // is skipped (the score is not differentiable there).
    void fdIndexerScores() {
        CpuBackend be(1);
        const int64_t B = 2, Tq = 4, Tk = 6, start = 2, HI = 3, dI = 5;
        const float scale = 0.5f;
        Vec qi = random_vector(B * Tq * HI * dI, 11), ki = random_vector(B * Tk * dI, 12),
            w = random_vector(B * Tq * HI, 13);
        Vec R = random_vector(B * Tq * Tk, 14);
        Vec sc(size_t(B * Tq * Tk));
        const std::vector<double> x0 = indexer_preact(qi, ki, B, Tq, Tk, HI, dI, scale);
        // Only visible entries carry a gradient (the others are -inf, never used).
        for (int64_t r = 0; r < B * Tq; ++r)
            for (int64_t s = start + r % Tq + 1; s < Tk; ++s) R[size_t(r * Tk + s)] = 0.0f;
        auto loss = [&]() -> double {
            const std::vector<double> x = indexer_preact(qi, ki, B, Tq, Tk, HI, dI, scale);
            for (size_t i = 0; i < x.size(); ++i)
                if ((x[i] > 0) != (x0[i] > 0)) return std::numeric_limits<double>::quiet_NaN();
            be.indexer_scores_forward(qi.data(), ki.data(), w.data(), B, Tq, Tk, start, HI, dI,
                                      scale, sc.data());
            return dot(sc, R);
        };
        Vec dq(qi.size(), 0.0f), dk(ki.size(), 0.0f), dw(w.size(), 0.0f);
        be.indexer_scores_backward(R.data(), qi.data(), ki.data(), w.data(), B, Tq, Tk, start, HI,
                                   dI, scale, dq.data(), dk.data(), dw.data());
        FdResult rq = fd_check(qi, dq, loss, 1e-3, 200);
        CHECK_FD("indexer d qi", rq, kFdTol);
        FdResult rk = fd_check(ki, dk, loss, 1e-3, 200);
        CHECK_FD("indexer d ki", rk, kFdTol);
        FdResult rw = fd_check(w, dw, loss, 1e-3, 200);
        CHECK_FD("indexer d w", rw, kFdTol);
    }

    void topkMatchesBruteForce() {
        CpuBackend be(2);
        // Training form and the cached (generation) form; scores on a coarse grid for ties.
        for (auto [B, Tq, Tk, start, K] :
             {std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t>{3, 40, 40, 0, 7},
              {1, 5, 30, 25, 8},
              {2, 6, 6, 0, 10}}) {
            Vec sc = random_vector(B * Tq * Tk, 21 + K);
            for (float& x : sc) x = std::round(x * 4.0f) / 4.0f;
            Idx got(size_t(B * Tq * K));
            be.topk_keys(sc.data(), B, Tq, Tk, start, K, got.data());
            QCOMPARE(got, brute_topk(sc, B, Tq, Tk, start, K));
        }
        Vec sc(4);
        Idx idx(4);
        QVERIFY_THROWS_EXCEPTION(moe::Error, be.topk_keys(sc.data(), 1, 2, 2, 0, 0, idx.data()));
    }

    // With every causal key chosen, sparse attention is dense causal attention.
    void allKeysChosenEqualsDense() {
        CpuBackend be(2);
        const int64_t B = 2, T = 9, H = 3, dk = 10, dv = 7, K = T;
        const float scale = 0.6f;
        const Vec q = random_vector(B * T * H * dk, 31), k = random_vector(B * T * H * dk, 32),
                  v = random_vector(B * T * H * dv, 33), dout = random_vector(B * T * H * dv, 34);
        const Vec sc = random_vector(B * T * T, 35);
        Idx idx(size_t(B * T * K));
        be.topk_keys(sc.data(), B, T, T, 0, K, idx.data());
        Vec sp(size_t(B * T * H * K)), so(size_t(B * T * H * dv));
        be.sparse_attention_forward(q.data(), k.data(), v.data(), idx.data(), B, T, H, dk, dv, K,
                                    scale, sp.data(), so.data());
        Vec dp(size_t(B * H * T * T)), dout_dense(size_t(B * T * H * dv));
        be.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, scale, 0, dp.data(),
                             dout_dense.data());
        const double out_err =
            moe::test::max_relative_error(so.data(), dout_dense.data(), so.size(), 1e-3);
        Vec sdq(q.size(), 0.f), sdk(k.size(), 0.f), sdv(v.size(), 0.f);
        Vec ddq(q.size(), 0.f), ddk(k.size(), 0.f), ddv(v.size(), 0.f);
        be.sparse_attention_backward(dout.data(), q.data(), k.data(), v.data(), sp.data(),
                                     idx.data(), B, T, H, dk, dv, K, scale, sdq.data(), sdk.data(),
                                     sdv.data());
        be.attention_backward(dout.data(), q.data(), k.data(), v.data(), dp.data(), B, T, H, dk, dv,
                              scale, 0, ddq.data(), ddk.data(), ddv.data());
        const double gq = moe::test::max_relative_error(sdq.data(), ddq.data(), sdq.size(), 1e-3);
        const double gk = moe::test::max_relative_error(sdk.data(), ddk.data(), sdk.size(), 1e-3);
        const double gv = moe::test::max_relative_error(sdv.data(), ddv.data(), sdv.size(), 1e-3);
        qInfo("all keys chosen vs dense: out %.2e, dq %.2e, dk %.2e, dv %.2e", out_err, gq, gk, gv);
        QVERIFY(out_err < 1e-4 && gq < 1e-4 && gk < 1e-4 && gv < 1e-4);
    }

    void fdSparseAttention() {
        CpuBackend be(1);
        const int64_t B = 2, T = 8, H = 2, dk = 5, dv = 3, K = 3;
        const float scale = 0.7f;
        Vec q = random_vector(B * T * H * dk, 41), k = random_vector(B * T * H * dk, 42),
            v = random_vector(B * T * H * dv, 43);
        const Vec R = random_vector(B * T * H * dv, 44), sc = random_vector(B * T * T, 45);
        Idx idx(size_t(B * T * K));
        be.topk_keys(sc.data(), B, T, T, 0, K, idx.data());
        Vec probs(size_t(B * T * H * K)), out(size_t(B * T * H * dv));
        auto loss = [&] {
            be.sparse_attention_forward(q.data(), k.data(), v.data(), idx.data(), B, T, H, dk, dv,
                                        K, scale, probs.data(), out.data());
            return dot(out, R);
        };
        loss();
        Vec dq(q.size(), 0.f), dk_(k.size(), 0.f), dv_(v.size(), 0.f);
        be.sparse_attention_backward(R.data(), q.data(), k.data(), v.data(), probs.data(),
                                     idx.data(), B, T, H, dk, dv, K, scale, dq.data(), dk_.data(),
                                     dv_.data());
        FdResult rq = fd_check(q, dq, loss, 1e-2, 1000);
        CHECK_FD("sparse attention dq", rq, kFdTol);
        FdResult rk = fd_check(k, dk_, loss, 1e-2, 1000);
        CHECK_FD("sparse attention dk", rk, kFdTol);
        FdResult rv = fd_check(v, dv_, loss, 1e-2, 1000);
        CHECK_FD("sparse attention dv", rv, kFdTol);
        // Keys no query chose get no gradient at all.
        std::vector<bool> chosen(size_t(B * T), false);
        for (int64_t r = 0; r < B * T; ++r)
            for (int64_t c = 0; c < K; ++c)
                if (idx[size_t(r * K + c)] >= 0)
                    chosen[size_t((r / T) * T + idx[size_t(r * K + c)])] = true;
        int unchosen = 0;
        for (int64_t key = 0; key < B * T; ++key) {
            if (chosen[size_t(key)]) continue;
            ++unchosen;
            for (int64_t j = 0; j < H * dk; ++j) QCOMPARE(dk_[size_t(key * H * dk + j)], 0.0f);
        }
        qInfo("%d of %lld keys chosen by no query", unchosen, static_cast<long long>(B * T));
        QVERIFY(unchosen > 0);  // or the check above saw nothing
    }

    // The unselected keys' rows are never read: NaN there changes nothing.
    void unselectedKeysAreNotRead() {
        CpuBackend be(2);
        const int64_t B = 1, T = 64, H = 2, dk = 16, dv = 8, K = 4;
        Vec q = random_vector(B * T * H * dk, 51), k = random_vector(B * T * H * dk, 52),
            v = random_vector(B * T * H * dv, 53);
        // Scores that prefer the first K keys for every query.
        Vec sc(size_t(B * T * T));
        for (int64_t t = 0; t < T; ++t)
            for (int64_t s = 0; s < T; ++s) sc[size_t(t * T + s)] = s < K ? 1.0f : -1.0f;
        Idx idx(size_t(B * T * K));
        be.topk_keys(sc.data(), B, T, T, 0, K, idx.data());
        Vec probs(size_t(B * T * H * K)), clean(size_t(B * T * H * dv)), dirty(clean.size());
        be.sparse_attention_forward(q.data(), k.data(), v.data(), idx.data(), B, T, H, dk, dv, K,
                                    0.25f, probs.data(), clean.data());
        const float nan = std::numeric_limits<float>::quiet_NaN();
        for (int64_t s = K; s < T; ++s) {
            std::fill_n(k.begin() + s * H * dk, H * dk, nan);
            std::fill_n(v.begin() + s * H * dv, H * dv, nan);
        }
        be.sparse_attention_forward(q.data(), k.data(), v.data(), idx.data(), B, T, H, dk, dv, K,
                                    0.25f, probs.data(), dirty.data());
        QVERIFY(std::memcmp(clean.data(), dirty.data(), clean.size() * sizeof(float)) == 0);
    }

    // KL(p || softmax(scores)) over the key set: its gradient by finite differences, zero at
    // the target, and the dense and sparse forms agree when every key is in the set.
    void indexerLoss() {
        CpuBackend be(2);
        const int64_t B = 2, T = 6, H = 3, K = 3;
        Vec sc = random_vector(B * T * T, 61, 2.0f);
        // Dense target: attention probabilities of random q, k.
        const int64_t dk = 4, dv = 2;
        const Vec q = random_vector(B * T * H * dk, 62), k = random_vector(B * T * H * dk, 63),
                  v = random_vector(B * T * H * dv, 64);
        Vec dprobs(size_t(B * H * T * T)), out(size_t(B * T * H * dv));
        be.attention_forward(q.data(), k.data(), v.data(), B, T, H, dk, dv, 1.0f, 0, dprobs.data(),
                             out.data());
        Vec grad(sc.size()), scratch(sc.size());
        be.indexer_loss(sc.data(), dprobs.data(), nullptr, B, T, H, 0, 1.0f, grad.data());
        auto dense_loss = [&] {
            return be.indexer_loss(sc.data(), dprobs.data(), nullptr, B, T, H, 0, 1.0f,
                                   scratch.data());
        };
        FdResult rd = fd_check(sc, grad, dense_loss, 1e-2, 1000);
        CHECK_FD("indexer KL (dense) d scores", rd, kFdTol);

        Idx idx(size_t(B * T * K));
        be.topk_keys(sc.data(), B, T, T, 0, K, idx.data());
        Vec sprobs(size_t(B * T * H * K));
        be.sparse_attention_forward(q.data(), k.data(), v.data(), idx.data(), B, T, H, dk, dv, K,
                                    1.0f, sprobs.data(), out.data());
        be.indexer_loss(sc.data(), sprobs.data(), idx.data(), B, T, H, K, 1.0f, grad.data());
        auto sparse_loss = [&] {
            return be.indexer_loss(sc.data(), sprobs.data(), idx.data(), B, T, H, K, 1.0f,
                                   scratch.data());
        };
        FdResult rs = fd_check(sc, grad, sparse_loss, 1e-2, 1000);
        CHECK_FD("indexer KL (sparse) d scores", rs, kFdTol);
        QVERIFY(sparse_loss() > 0.0);

        // Scores equal to the log of the head-averaged target: KL 0.
        Vec target_sc(sc.size(), -std::numeric_limits<float>::infinity());
        for (int64_t b = 0; b < B; ++b)
            for (int64_t t = 0; t < T; ++t)
                for (int64_t s = 0; s <= t; ++s) {
                    double p = 0;
                    for (int64_t h = 0; h < H; ++h)
                        p += dprobs[size_t(((b * H + h) * T + t) * T + s)];
                    target_sc[size_t((b * T + t) * T + s)] = float(std::log(p / H));
                }
        const double zero = be.indexer_loss(target_sc.data(), dprobs.data(), nullptr, B, T, H, 0,
                                            1.0f, scratch.data());
        qInfo("KL at the target: %.2e", zero);
        QVERIFY(std::fabs(zero) < 1e-6);
    }

    void maskUnselectedKeys() {
        CpuBackend be(1);
        const int64_t n = 2, H = 2, cols = 5, K = 2;
        Vec s = random_vector(n * H * cols, 71);
        const Vec s0 = s;
        const Idx idx = {1, 3, 0, -1};
        be.mask_unselected_keys(s.data(), n, H, cols, idx.data(), K);
        for (int64_t i = 0; i < n; ++i)
            for (int64_t h = 0; h < H; ++h)
                for (int64_t c = 0; c < cols; ++c) {
                    const bool keep = idx[size_t(i * K)] == c || idx[size_t(i * K + 1)] == c;
                    const float got = s[size_t((i * H + h) * cols + c)];
                    if (keep)
                        QCOMPARE(got, s0[size_t((i * H + h) * cols + c)]);
                    else
                        QVERIFY(std::isinf(got) && got < 0);
                }
    }

    // A backend without the ops (CUDA today) is refused by the model, by field, before anything
    // is allocated; the ops themselves name the backend too.
    void backendWithoutSparseAttentionIsRefused() {
        struct NoSparse final : CpuBackend {
            NoSparse() : CpuBackend(1) {}
            const char* name() const override { return "no-sparse"; }
            bool supports_sparse_attention() const override { return false; }
        } be;
        moe::ModelConfig cfg = moe::test::tiny_full_config();
        cfg.index_topk = 3;
        try {
            moe::Model m(cfg, be);
            QFAIL("a model with index_topk was built on a backend without sparse attention");
        } catch (const moe::ConfigError& e) {
            const QString what = QString::fromUtf8(e.what());
            QVERIFY2(what.contains("index_topk") && what.contains("no-sparse backend"), qPrintable(what));
        }
        cfg.index_topk = 0;
        moe::Model dense(cfg, be);  // dense attention is fine there
        struct Bare final : CpuBackend {
            Bare() : CpuBackend(1) {}
            const char* name() const override { return "bare"; }
            void topk_keys(const float* s, int64_t B, int64_t Tq, int64_t Tk, int64_t start, int64_t K,
                           int32_t* idx) override {
                Backend::topk_keys(s, B, Tq, Tk, start, K, idx);  // the default
            }
        } bare;
        float sc = 0;
        int32_t idx = 0;
        try {
            bare.topk_keys(&sc, 1, 1, 1, 0, 1, &idx);
            QFAIL("the default topk_keys did not throw");
        } catch (const moe::Error& e) {
            QVERIFY2(QString(e.what()).contains("not implemented on the bare backend"), e.what());
        }
    }

    // Bitwise the same with 1 and 2 threads.
    void threadCountDoesNotChangeBits() {
        const int64_t B = 2, T = 70, H = 4, dk = 24, dv = 16, K = 9, HI = 2, dI = 20;
        const Vec q = random_vector(B * T * H * dk, 81), k = random_vector(B * T * H * dk, 82),
                  v = random_vector(B * T * H * dv, 83), dout = random_vector(B * T * H * dv, 84),
                  qi = random_vector(B * T * HI * dI, 85), ki = random_vector(B * T * dI, 86),
                  w = random_vector(B * T * HI, 87);
        auto run = [&](int threads) {
            CpuBackend be(threads);
            Vec sc(size_t(B * T * T)), dsc(sc.size());
            be.indexer_scores_forward(qi.data(), ki.data(), w.data(), B, T, T, 0, HI, dI, 0.3f,
                                      sc.data());
            Idx idx(size_t(B * T * K));
            be.topk_keys(sc.data(), B, T, T, 0, K, idx.data());
            Vec p(size_t(B * T * H * K)), o(size_t(B * T * H * dv));
            be.sparse_attention_forward(q.data(), k.data(), v.data(), idx.data(), B, T, H, dk, dv,
                                        K, 0.3f, p.data(), o.data());
            Vec dq(q.size(), 0.f), dk_(k.size(), 0.f), dv_(v.size(), 0.f);
            be.sparse_attention_backward(dout.data(), q.data(), k.data(), v.data(), p.data(),
                                         idx.data(), B, T, H, dk, dv, K, 0.3f, dq.data(),
                                         dk_.data(), dv_.data());
            const double l =
                be.indexer_loss(sc.data(), p.data(), idx.data(), B, T, H, K, 1.0f, dsc.data());
            Vec dqi(qi.size(), 0.f), dki(ki.size(), 0.f), dw(w.size(), 0.f);
            be.indexer_scores_backward(dsc.data(), qi.data(), ki.data(), w.data(), B, T, T, 0, HI,
                                       dI, 0.3f, dqi.data(), dki.data(), dw.data());
            Vec all = o;
            for (const Vec* x : {&dq, &dk_, &dv_, &dqi, &dki, &dw, &sc})
                all.insert(all.end(), x->begin(), x->end());
            all.push_back(float(l));
            return std::make_pair(all, idx);
        };
        const auto a = run(1), b = run(2);
        QCOMPARE(a.second, b.second);
        QVERIFY(std::memcmp(a.first.data(), b.first.data(), a.first.size() * sizeof(float)) == 0);
    }
};

QTEST_APPLESS_MAIN(TestSparseAttention)
#include "tst_sparse_attention.moc"
