// Model-level behaviour that the gradient and reference tests do not cover: determinism, the
// routing probe, checkpoint round trips through the model, and input errors.
#include <QtTest>

#include <QTemporaryDir>

#include <atomic>
#include <cstdlib>
#include <new>

#include <cmath>
#include <cstring>
#include <fstream>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "data/token_lines.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "store/model_checkpoint.h"
#include "test_support.h"

using namespace moe;
using namespace moe::test;

// Heap use is counted so the steady-state test can show a training step allocates (almost)
// nothing: every buffer is sized on the first step and reused.
// Every unaligned form is replaced, so whatever form allocates, its matching delete frees (the
// standard library mixes them: std::stable_sort's buffer comes from the nothrow new); the
// aligned forms stay the library's own, also in pairs.
static std::atomic<int64_t> g_alloc_count{0}, g_alloc_bytes{0};
static void* counted_malloc(std::size_t n) noexcept {
    g_alloc_count.fetch_add(1, std::memory_order_relaxed);
    g_alloc_bytes.fetch_add(static_cast<int64_t>(n), std::memory_order_relaxed);
    return std::malloc(n == 0 ? 1 : n);
}
void* operator new(std::size_t n) {
    if (void* p = counted_malloc(n)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
    if (void* p = counted_malloc(n)) return p;
    throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_malloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

class TestModel : public QObject {
    Q_OBJECT

    static std::vector<float> grads_of(Model& m) {
        std::vector<float> out;
        for (const Parameter* p : m.parameters().all())
            if (p->trainable) out.insert(out.end(), p->grad.data(), p->grad.data() + p->grad.numel());
        return out;
    }

private slots:
    // Same seed and thread count: bitwise-identical losses and gradients, also across two
    // separately constructed models and backends.
    void bitwiseDeterministic_data() {
        QTest::addColumn<int>("threads");
        QTest::newRow("1 thread") << 1;
        QTest::newRow("2 threads") << 2;
    }
    void bitwiseDeterministic() {
        QFETCH(int, threads);
        ModelConfig cfg = tiny_full_config();
        cfg.hidden_size = 64;  // big enough that the parallel code paths run
        const Batch batch = random_batch(cfg.vocab_size, 4, 32, 9);
        double losses[2];
        std::vector<float> grads[2];
        for (int run = 0; run < 2; ++run) {
            CpuBackend be(threads);
            Model m(cfg, be);
            m.init_weights(2024);
            m.forward(batch);  // warm-up step: buffers get allocated here
            m.parameters().zero_grads();
            losses[run] = m.forward(batch).total;
            m.backward();
            grads[run] = grads_of(m);
        }
        QVERIFY(std::memcmp(&losses[0], &losses[1], sizeof(double)) == 0);
        QCOMPARE(grads[0].size(), grads[1].size());
        QVERIFY(std::memcmp(grads[0].data(), grads[1].data(), grads[0].size() * sizeof(float)) == 0);
    }

    // After the first step sized every buffer, a training step (forward + backward) allocates
    // only the small LossReport it returns.
    void noAllocationInSteadyState() {
        CpuBackend be(2);
        const ModelConfig cfg = tiny_full_config();
        Model m(cfg, be);
        m.init_weights(8);
        const Batch batch = random_batch(cfg.vocab_size, 4, 16, 3);
        for (int i = 0; i < 2; ++i) {
            m.parameters().zero_grads();
            m.forward(batch);
            m.backward();
        }
        const int64_t count0 = g_alloc_count.load(), bytes0 = g_alloc_bytes.load();
        m.parameters().zero_grads();
        const LossReport r = m.forward(batch);
        m.backward();
        const int64_t count = g_alloc_count.load() - count0, bytes = g_alloc_bytes.load() - bytes0;
        qInfo("steady-state step: %lld allocations, %lld bytes (loss %.4f)", (long long)count,
              (long long)bytes, r.total);
        QVERIFY2(count <= 1 && bytes <= 64, "a training step allocates in the steady state");
    }

    void differentSeedsDiffer() {
        CpuBackend be(2);
        Model a(tiny_full_config(), be), b(tiny_full_config(), be);
        a.init_weights(1);
        b.init_weights(2);
        const Batch batch = random_batch(32, 2, 8, 1);
        QVERIFY(a.forward(batch).loss != b.forward(batch).loss);
    }

    // The probe returns, per MoE layer, top-k ids, weights, scores and biased selection scores
    // that are consistent with each other; without the request nothing is recorded.
    void routingProbe() {
        CpuBackend be(2);
        const ModelConfig cfg = tiny_full_config();
        Model m(cfg, be);
        m.init_weights(3);
        spread_router(m, 4);
        const Batch batch = random_batch(cfg.vocab_size, 2, 8, 2);
        ForwardOptions opt;
        m.forward(batch, opt);
        QVERIFY(m.routing().empty());
        opt.probe_routing = true;
        m.forward(batch, opt);
        QCOMPARE(m.routing().size(), size_t(2));  // layer 1 and the MTP layer 2
        QCOMPARE(m.routing()[0].layer, int64_t(1));
        QCOMPARE(m.routing()[1].layer, int64_t(2));
        const auto layers = m.moe_layers();
        for (size_t l = 0; l < m.routing().size(); ++l) {
            const RoutingRecord& r = m.routing()[l];
            const int64_t E = r.n_experts, K = r.top_k;
            QCOMPARE(r.tokens, int64_t(16));
            std::vector<int64_t> counts(static_cast<size_t>(E), 0);
            for (int64_t t = 0; t < r.tokens; ++t) {
                double wsum = 0.0, ssum = 0.0;
                for (int64_t k = 0; k < K; ++k) {
                    const int32_t e = r.topk_idx[t * K + k];
                    ++counts[e];
                    wsum += r.topk_weight[t * K + k];
                    ssum += r.scores[t * E + e];
                    // Selection = score + bias; the bias changes the choice, not the weight.
                    const float bias = layers[l]->bias().value[e];
                    QVERIFY(std::fabs(r.selection_scores[t * E + e] - (r.scores[t * E + e] + bias)) < 1e-6);
                    QVERIFY(std::fabs(r.topk_weight[t * K + k] - 2.5 * r.scores[t * E + e] / ssum) < 1e-5 || k + 1 < K);
                    if (k > 0) QVERIFY(r.selection_scores[t * E + e] <= r.selection_scores[t * E + r.topk_idx[t * K + k - 1]]);
                }
                QVERIFY(std::fabs(wsum - cfg.routed_scaling_factor) < 1e-5);  // renormalized, scaled
                // Group limit: n_group 2, topk_group 1 -> all chosen experts in one group.
                const int32_t g0 = r.topk_idx[t * K] / 4;
                for (int64_t k = 1; k < K; ++k) QCOMPARE(r.topk_idx[t * K + k] / 4, g0);
            }
            QCOMPARE(counts, layers[l]->expert_counts());
        }
    }

    void checkpointRoundTrip() {
        QTemporaryDir dir;
        CpuBackend be(2);
        const ModelConfig cfg = tiny_full_config();
        Model a(cfg, be);
        a.init_weights(5);
        spread_router(a, 6);
        save_model_checkpoint(dir.filePath("ck").toStdString(), a);
        QVERIFY(QFile::exists(dir.filePath("ck/config.json")));
        QVERIFY(QFile::exists(dir.filePath("ck/model.safetensors")));
        const ModelConfig loaded = load_checkpoint_config(dir.filePath("ck").toStdString());
        QVERIFY(loaded == cfg);
        Model b(loaded, be);
        load_model_weights(dir.filePath("ck").toStdString(), b);
        const Batch batch = random_batch(cfg.vocab_size, 2, 8, 7);
        const double la = a.forward(batch).total, lb = b.forward(batch).total;
        QCOMPARE(la, lb);
        QVERIFY(std::memcmp(a.logits().data(), b.logits().data(), a.logits().numel() * 4) == 0);
    }

    // A checkpoint from a model of another shape is refused with the tensor named.
    void checkpointOfAnotherShapeIsRefused() {
        QTemporaryDir dir;
        CpuBackend be(1);
        Model a(tiny_full_config(), be);
        save_model_checkpoint(dir.filePath("ck").toStdString(), a);
        ModelConfig other = tiny_full_config();
        other.kv_lora_rank = 12;
        Model b(other, be);
        try {
            load_model_weights(dir.filePath("ck").toStdString(), b);
            QFAIL("a mismatched checkpoint loaded");
        } catch (const Error& e) {
            const QString msg = e.what();
            QVERIFY2(msg.contains("kv_a_layernorm") || msg.contains("kv_b_proj") || msg.contains("kv_a_proj"), e.what());
        }
    }

    void badInputs() {
        CpuBackend be(1);
        Model m(tiny_full_config(), be);
        Batch bad = random_batch(32, 1, 4, 1);
        bad.tokens[2] = 32;
        QVERIFY_THROWS_EXCEPTION(Error, m.forward(bad));
        Batch short_batch = random_batch(32, 2, 4, 1);
        short_batch.tokens.pop_back();
        QVERIFY_THROWS_EXCEPTION(Error, m.forward(short_batch));
        QVERIFY_THROWS_EXCEPTION(Error, m.backward());  // no training forward yet
        ModelConfig broken = tiny_full_config();
        broken.kv_lora_rank = 0;
        QVERIFY_THROWS_EXCEPTION(ConfigError, Model(broken, be));
    }

    void tokenFileErrorsNameLineAndValue() {
        QTemporaryDir dir;
        auto write = [&](const char* text) {
            std::ofstream(dir.filePath("t.txt").toStdString()) << text;
            return dir.filePath("t.txt").toStdString();
        };
        auto message = [&](const char* text) -> QString {
            try {
                read_token_lines(write(text), 32);
            } catch (const FileError& e) {
                return e.what();
            }
            return {};
        };
        QVERIFY(message("1 2 3\n4 5\n").contains("line 2"));
        QVERIFY(message("1 2 x\n").contains("'x'"));
        QVERIFY(message("1 2 40\n").contains("40"));
        QVERIFY(message("\n\n").contains("no token"));
        const TokenLines ok = read_token_lines(write("1 2 3\n\n4 5 6\n"), 32);
        QCOMPARE(ok.rows, int64_t(2));
        QCOMPARE(ok.length, int64_t(3));
    }
};

QTEST_APPLESS_MAIN(TestModel)
#include "tst_model.moc"
