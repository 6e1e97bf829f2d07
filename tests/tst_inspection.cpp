// Routing inspection: a tiny model saved as a checkpoint and inspected through
// CheckpointInspector; agreement between checkpoints, specialization matrices, an expert's top
// tokens, truncation and the error messages.
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <functional>
#include <set>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "inspect/checkpoint_inspector.h"
#include "inspect/routing_inspection.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "store/model_checkpoint.h"

using namespace moe;

namespace {

// The full-feature tiny model with a byte vocabulary, so any text can be inspected.
ModelConfig byte_config() {
    ModelConfig c = test::tiny_full_config();
    c.vocab_size = 256;
    c.max_position_embeddings = 48;
    return c;
}

// Saves a freshly initialized model (router spread so choices differ between seeds).
std::string save_model(const QTemporaryDir& tmp, const QString& name, uint64_t seed) {
    ModelConfig cfg = byte_config();
    CpuBackend be(1);
    Model model(cfg, be);
    model.init_weights(seed);
    test::spread_router(model, seed);
    const std::string dir = tmp.filePath(name).toStdString();
    save_model_checkpoint(dir, model);
    return dir;
}

QString error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return QString::fromStdString(e.what());
    }
    return QString();
}

const std::string kText = "The gate picks experts; 2+3=5.";

}  // namespace

class TestInspection : public QObject {
    Q_OBJECT

    QTemporaryDir tmp_;
    std::string ckpt_a_, ckpt_b_;

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        ckpt_a_ = save_model(tmp_, "a", 11);
        ckpt_b_ = save_model(tmp_, "b", 12);
    }

    void shapes() {
        CheckpointInspector insp(ckpt_a_);
        const ModelConfig& cfg = insp.config();
        Inspection ins = insp.inspect_text(kText);
        const int64_t T = static_cast<int64_t>(kText.size());
        QCOMPARE(ins.n_tokens(), T);
        QCOMPARE(ins.token_text.size(), kText.size());
        QCOMPARE(ins.token_text[3], std::string("\u2420"));  // the space after "The"
        QCOMPARE(ins.E, cfg.n_routed_experts);
        QCOMPARE(ins.K, cfg.num_experts_per_tok);
        QCOMPARE(ins.heads, cfg.num_attention_heads);
        QCOMPARE(ins.n_layers(), cfg.num_moe_layers());  // main layers only, no MTP layer
        QCOMPARE(ins.layers.front(), cfg.first_k_dense_replace);
        QVERIFY(ins.note.empty());
        for (size_t l = 0; l < ins.routing.size(); ++l) {
            const RoutingRecord& r = ins.routing[l];
            QCOMPARE(r.tokens, T);
            QCOMPARE(r.layer, ins.layers[l]);
            QCOMPARE(static_cast<int64_t>(r.topk_idx.size()), T * ins.K);
            QCOMPARE(static_cast<int64_t>(r.scores.size()), T * ins.E);
            QCOMPARE(static_cast<int64_t>(ins.bias[l].size()), ins.E);
            // spread_router gave the bias non-zero values; the inspection must carry them.
            double bias_abs = 0;
            for (float b : ins.bias[l]) bias_abs += std::fabs(b);
            QVERIFY(bias_abs > 0);
            // selection = score + bias, the definition the view's tooltip explains.
            for (int64_t e = 0; e < ins.E; ++e)
                QVERIFY(std::fabs(r.selection_scores[e] - (r.scores[e] + ins.bias[l][e])) < 1e-6);
            // Each token's chosen experts are distinct.
            for (int64_t t = 0; t < T; ++t) {
                std::set<int32_t> s(r.topk_idx.begin() + t * ins.K,
                                    r.topk_idx.begin() + (t + 1) * ins.K);
                QCOMPARE(static_cast<int64_t>(s.size()), ins.K);
            }
        }
        QCOMPARE(static_cast<int64_t>(ins.attention.size()), cfg.num_hidden_layers);
        for (const auto& a : ins.attention) {
            QCOMPARE(static_cast<int64_t>(a.size()), ins.heads * T * T);
            // Causal rows of probabilities: row q sums to 1 over keys 0..q, 0 beyond.
            for (int64_t h = 0; h < ins.heads; ++h)
                for (int64_t q = 0; q < T; ++q) {
                    double sum = 0;
                    for (int64_t k = 0; k < T; ++k) {
                        const float p = a[static_cast<size_t>((h * T + q) * T + k)];
                        if (k > q) QCOMPARE(p, 0.0f);
                        sum += p;
                    }
                    QVERIFY(std::fabs(sum - 1.0) < 1e-4);
                }
        }
    }

    void sameAsDirectModel() {
        // The inspector's numbers are the model's: same weights, same routing.
        ModelConfig cfg = byte_config();
        CpuBackend be(1);
        Model model(cfg, be);
        load_model_weights(ckpt_a_, model);
        std::vector<int32_t> tokens(kText.begin(), kText.end());
        Inspection direct = inspect_tokens(model, tokens);
        CheckpointInspector insp(ckpt_a_);
        Inspection via = insp.inspect_text(kText);
        QCOMPARE(via.routing.size(), direct.routing.size());
        for (size_t l = 0; l < via.routing.size(); ++l) {
            QCOMPARE(via.routing[l].topk_idx, direct.routing[l].topk_idx);
            QCOMPARE(via.routing[l].scores, direct.routing[l].scores);
        }
    }

    void agreementWithItself() {
        CheckpointInspector insp(ckpt_a_);
        Inspection a1 = insp.inspect_text(kText);
        Inspection a2 = insp.inspect_text(kText);  // a second call reuses the loaded model
        RoutingAgreement ag = routing_agreement(a1, a2);
        QCOMPARE(ag.overlap, 1.0);
        QCOMPARE(ag.exact, 1.0);
        QCOMPARE(ag.top1, 1.0);
        QCOMPARE(static_cast<int64_t>(ag.layer_overlap.size()), a1.n_layers());
        for (double v : ag.layer_exact) QCOMPARE(v, 1.0);
    }

    void agreementWithAnotherSeed() {
        CheckpointInspector ia(ckpt_a_), ib(ckpt_b_);
        Inspection a = ia.inspect_text(kText), b = ib.inspect_text(kText);
        RoutingAgreement ag = routing_agreement(a, b);
        QVERIFY(ag.overlap < 1.0);
        QVERIFY(ag.exact <= ag.overlap);  // an identical set is a full overlap
        QVERIFY(ag.overlap >= 0.0);
        // Symmetric.
        RoutingAgreement ba = routing_agreement(b, a);
        QCOMPARE(ba.overlap, ag.overlap);
        QCOMPARE(ba.exact, ag.exact);
    }

    void agreementDefinition() {
        // Hand-made: 2 tokens, K = 2, one layer. Token 0: {1,2} vs {2,1} (same set, other
        // order: counts as identical); token 1: {0,3} vs {0,4} (half the set).
        Inspection a, b;
        a.tokens = b.tokens = {65, 66};
        a.layers = b.layers = {1};
        a.K = b.K = 2;
        a.E = b.E = 5;
        RoutingRecord ra;
        ra.tokens = 2;
        ra.top_k = 2;
        ra.n_experts = 5;
        RoutingRecord rb = ra;
        ra.topk_idx = {1, 2, 0, 3};
        rb.topk_idx = {2, 1, 0, 4};
        a.routing = {ra};
        b.routing = {rb};
        RoutingAgreement ag = routing_agreement(a, b);
        QCOMPARE(ag.overlap, 0.75);
        QCOMPARE(ag.exact, 0.5);
        QCOMPARE(ag.top1, 0.5);  // token 0's first choice changed, token 1's did not

        b.tokens = {65, 67};
        QVERIFY(error_of([&] { routing_agreement(a, b); }).contains("different tokens"));
    }

    void specialization() {
        // 4 tokens, 2 layers, K = 2, E = 3, labels {0, 0, 1, -1}.
        const std::vector<int32_t> labels = {0, 0, 1, -1};
        const std::vector<int32_t> topk = {
            0, 1, 0, 2, 2, 1, 0, 1,   // layer 0
            1, 2, 1, 2, 0, 2, 0, 0};  // layer 1
        SpecializationMatrix m0 = specialization_matrix(labels, topk, 3, 3, 2, 0);
        QCOMPARE(m0.labels, int64_t(3));
        QCOMPARE(m0.experts, int64_t(3));
        QCOMPARE(m0.at(0, 0), 0.5);   // label 0: slots {0,1,0,2}
        QCOMPARE(m0.at(0, 1), 0.25);
        QCOMPARE(m0.at(0, 2), 0.25);
        QCOMPARE(m0.at(1, 2), 0.5);
        QCOMPARE(m0.at(1, 1), 0.5);
        QCOMPARE(m0.label_tokens, (std::vector<int64_t>{2, 1, 0}));
        for (int64_t e = 0; e < 3; ++e) QCOMPARE(m0.at(2, e), 0.0);  // label without tokens
        SpecializationMatrix m1 = specialization_matrix(labels, topk, 3, 3, 2, 1);
        QCOMPARE(m1.at(0, 1), 0.5);
        QCOMPARE(m1.at(0, 2), 0.5);

        QVERIFY(error_of([&] { specialization_matrix(labels, topk, 3, 3, 2, 2); })
                    .contains("layer 2"));
        QVERIFY(error_of([&] { specialization_matrix(labels, {0, 1, 2}, 3, 3, 2, 0); })
                    .contains("do not split"));
    }

    void specializationRowsSumToOne() {
        // From a real inspection: every label with tokens sums to 1 over experts.
        CheckpointInspector insp(ckpt_a_);
        Inspection ins = insp.inspect_text(kText);
        const int64_t T = ins.n_tokens(), K = ins.K, E = ins.E;
        std::vector<int32_t> labels(static_cast<size_t>(T));
        for (int64_t t = 0; t < T; ++t) labels[t] = static_cast<int32_t>(t % 3);
        std::vector<int32_t> topk;  // the RoutingRow layout [L*T*K]
        for (const RoutingRecord& r : ins.routing)
            topk.insert(topk.end(), r.topk_idx.begin(), r.topk_idx.end());
        for (int64_t l = 0; l < ins.n_layers(); ++l) {
            SpecializationMatrix m = specialization_matrix(labels, topk, 3, E, K, l);
            for (int64_t lab = 0; lab < 3; ++lab) {
                double sum = 0;
                for (int64_t e = 0; e < E; ++e) sum += m.at(lab, e);
                QVERIFY(std::fabs(sum - 1.0) < 1e-12);
            }
        }
    }

    void topTokens() {
        CheckpointInspector insp(ckpt_a_);
        Inspection ins = insp.inspect_text(kText);
        const RoutingRecord& r = ins.routing[0];
        // The expert that the most tokens chose.
        std::vector<int64_t> counts(static_cast<size_t>(ins.E), 0);
        for (int32_t e : r.topk_idx) ++counts[static_cast<size_t>(e)];
        const int64_t busiest = std::max_element(counts.begin(), counts.end()) - counts.begin();
        std::vector<ExpertToken> all = top_tokens_for_expert(ins, 0, busiest, -1);
        QCOMPARE(static_cast<int64_t>(all.size()), counts[static_cast<size_t>(busiest)]);
        for (size_t i = 1; i < all.size(); ++i) QVERIFY(all[i - 1].weight >= all[i].weight);
        for (const ExpertToken& x : all) {
            QCOMPARE(r.topk_idx[static_cast<size_t>(x.position * ins.K + x.slot)], int32_t(busiest));
            QCOMPARE(x.token, static_cast<int32_t>(static_cast<unsigned char>(kText[x.position])));
            QCOMPARE(x.score, r.scores[static_cast<size_t>(x.position * ins.E + busiest)]);
        }
        std::vector<ExpertToken> three = top_tokens_for_expert(ins, 0, busiest, 3);
        QCOMPARE(three.size(), std::min<size_t>(3, all.size()));
        QVERIFY(error_of([&] { top_tokens_for_expert(ins, 0, ins.E, 3); }).contains("expert"));
    }

    void truncation() {
        CheckpointInspector insp(ckpt_a_);
        const std::string long_text(100, 'x');
        Inspection ins = insp.inspect_text(long_text);
        QCOMPARE(ins.n_tokens(), insp.config().max_position_embeddings);
        QVERIFY(QString::fromStdString(ins.note).contains("48"));
        QVERIFY(QString::fromStdString(ins.note).contains("100"));
    }

    void errors() {
        CheckpointInspector insp(ckpt_a_);
        QVERIFY(error_of([&] { insp.inspect_text(""); }).contains("empty"));
        QVERIFY(!error_of([&] { CheckpointInspector bad(tmp_.filePath("missing").toStdString()); })
                     .isEmpty());
        // A model with a smaller vocabulary names the offending byte.
        ModelConfig cfg = test::tiny_full_config();  // vocab 32
        CpuBackend be(1);
        Model small(cfg, be);
        small.init_weights(3);
        const std::string dir = tmp_.filePath("small").toStdString();
        save_model_checkpoint(dir, small);
        CheckpointInspector si(dir);
        const QString e = error_of([&] { si.inspect_text("A"); });
        QVERIFY2(e.contains("byte 65") && e.contains("vocabulary"), qPrintable(e));
    }
};

QTEST_APPLESS_MAIN(TestInspection)
#include "tst_inspection.moc"
