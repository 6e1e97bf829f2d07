// The training pieces of engine/train: AdamW (against torch.optim.AdamW), learning-rate and MTP
// schedules, global gradient-norm clipping, the auxiliary-loss-free bias balancer, the
// balancing-mode mapping, the batch-wise balance loss, strict JSON, and a short training run.
#include <QtTest>

#include <QProcess>
#include <QTemporaryDir>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "model/model.h"
#include "model/moe_layer.h"
#include "model_fixtures.h"
#include "test_support.h"
#include "train/adamw.h"
#include "train/bias_balancer.h"
#include "train/grad_clip.h"
#include "train/optimizer_settings.h"

using namespace moe;
using namespace moe::test;
using nlohmann::json;

namespace {

// Runs `fn`, expecting a ConfigError whose field and message contain the given texts.
template <class Fn>
bool config_error(Fn fn, const std::string& field, const std::string& in_message) {
    try {
        fn();
    } catch (const ConfigError& e) {
        const std::string what = e.what();
        if (e.field() == field && what.find(in_message) != std::string::npos) return true;
        qWarning("ConfigError field \"%s\": %s", e.field().c_str(), e.what());
        return false;
    }
    qWarning("no ConfigError thrown (expected field %s)", field.c_str());
    return false;
}

// A MoE layer config whose routing the test controls through the selection bias alone: zero
// gate weights make every score 0.5, so sel = 0.5 + bias picks the experts with the largest
// bias. 4 experts, top-2, no groups.
ModelConfig routing_config() {
    ModelConfig c = tiny_full_config();
    c.n_routed_experts = 4;
    c.num_experts_per_tok = 2;
    c.n_group = 1;
    c.topk_group = 1;
    return c;
}

}  // namespace

class TestOptim : public QObject {
    Q_OBJECT

private:
    CpuBackend be_{2};

    // A store with a matrix, a norm weight and a buffer, filled deterministically.
    static void fill_store(ParameterStore& store) {
        store.add("w", {4, 6});
        store.add("norm", {6});
        store.add("bias_buffer", {3}, /*trainable=*/false);
        uint64_t s = 1;
        for (Parameter* p : store.all()) fill_uniform(p->value.data(), p->value.numel(), s++, 1.0f);
    }

private slots:
    // ---- AdamW

    void adamwMatchesTorch() {
        const QString python = QStringLiteral(MOE_REFERENCE_PYTHON);
        {
            QProcess probe;
            probe.start(python, {"-c", "import torch"});
            if (!probe.waitForFinished(60000) || probe.exitStatus() != QProcess::NormalExit ||
                probe.exitCode() != 0)
                QSKIP(qPrintable(python + " cannot import torch: the AdamW reference is skipped"));
        }
        OptimizerSettings s;
        s.beta1 = 0.9;
        s.beta2 = 0.95;
        s.eps = 1e-8;
        s.weight_decay = 0.1;
        const int steps = 10;

        ParameterStore store;
        fill_store(store);
        std::vector<Parameter*> trainable;
        for (Parameter* p : store.all())
            if (p->trainable) trainable.push_back(p);

        std::ostringstream in;
        in.precision(9);
        in << steps << ' ' << trainable.size() << ' ' << s.beta1 << ' ' << s.beta2 << ' ' << s.eps
           << ' ' << s.weight_decay << '\n';
        AdamW opt(store, be_, s);
        for (Parameter* p : trainable) {
            in << p->value.numel() << ' ' << (opt.decay_for(*p) > 0 ? 1 : 0);
            for (int64_t i = 0; i < p->value.numel(); ++i) in << ' ' << p->value[i];
            in << '\n';
        }
        uint64_t seed = 100;
        for (int t = 0; t < steps; ++t) {
            // Varying lr and scale exercise the per-step arguments; gradients of mixed scale,
            // with an exact zero, exercise the eps term.
            const double lr = 1e-2 * (1.0 + 0.1 * t);
            const double scale = t % 3 == 0 ? 0.5 : 1.0;
            in << lr << ' ' << scale << '\n';
            for (Parameter* p : trainable) {
                fill_uniform(p->grad.data(), p->grad.numel(), seed++, t % 2 ? 1.0f : 1e-3f);
                p->grad[0] = 0.0f;
                for (int64_t i = 0; i < p->grad.numel(); ++i) in << ' ' << p->grad[i];
                in << '\n';
            }
            opt.step(lr, scale);
        }
        QCOMPARE(opt.step_count(), int64_t(steps));

        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString in_path = dir.filePath("in.txt"), out_path = dir.filePath("out.txt");
        {
            std::ofstream f(in_path.toStdString());
            f << in.str();
        }
        QProcess py;
        py.start(python, {QString::fromStdString(source_path("tests/reference/adamw_check.py")),
                          in_path, out_path});
        QVERIFY(py.waitForFinished(120000));
        if (py.exitCode() == 3) QSKIP(qPrintable(python + " cannot import torch"));
        QVERIFY2(py.exitCode() == 0, py.readAllStandardError().constData());

        std::ifstream f(out_path.toStdString());
        const auto state = opt.state_tensors();
        double worst = 0.0, per_kind[3] = {0.0, 0.0, 0.0};
        for (size_t k = 0; k < trainable.size(); ++k) {
            Parameter* p = trainable[k];
            const Tensor* ours[3] = {&p->value, state[k].second,
                                     state[trainable.size() + k].second};
            for (int kind = 0; kind < 3; ++kind) {
                const Tensor* t = ours[kind];
                std::vector<float> ref(static_cast<size_t>(t->numel()));
                for (float& x : ref) QVERIFY(f >> x);
                // Floors: a parameter that crosses zero (one ends at 4e-4 here) carries
                // rounding errors of the size of one update (lr ~ 1e-2 times ulp), so it is
                // measured against 1e-2; the moments of the 1e-3-scale gradients are ~1e-7, so
                // theirs is 1e-12 (no floor in effect).
                const double floor = kind == 0 ? 1e-2 : 1e-12;
                const double err = max_relative_error(t->data(), ref.data(), t->numel(), floor);
                per_kind[kind] = std::max(per_kind[kind], err);
                worst = std::max(worst, err);
            }
        }
        qInfo("AdamW vs torch.optim.AdamW after %d steps: max relative error %.3e "
              "(parameters %.3e, exp_avg %.3e, exp_avg_sq %.3e)", steps, worst, per_kind[0],
              per_kind[1], per_kind[2]);
        QVERIFY2(worst < 1e-5, qPrintable(QString("max relative error %1").arg(worst)));
    }

    void adamwDecaysMatricesOnlyAndSkipsBuffers() {
        ParameterStore store;
        fill_store(store);
        OptimizerSettings s;
        s.weight_decay = 0.5;
        AdamW opt(store, be_, s);
        QCOMPARE(opt.decay_for(store.at("w")), 0.5f);
        QCOMPARE(opt.decay_for(store.at("norm")), 0.0f);
        // Zero gradients: only weight decay moves a parameter.
        const Tensor w0 = store.at("w").value, n0 = store.at("norm").value,
                     b0 = store.at("bias_buffer").value;
        store.zero_grads();
        opt.step(0.1, 1.0);
        for (int64_t i = 0; i < w0.numel(); ++i)
            QCOMPARE(store.at("w").value[i], w0[i] - 0.1f * (0.5f * w0[i]));
        for (int64_t i = 0; i < n0.numel(); ++i) QCOMPARE(store.at("norm").value[i], n0[i]);
        for (int64_t i = 0; i < b0.numel(); ++i) QCOMPARE(store.at("bias_buffer").value[i], b0[i]);

        const auto st = opt.state_tensors();
        QCOMPARE(st.size(), size_t(4));
        QCOMPARE(st[0].first, std::string("optimizer.m.w"));
        QCOMPARE(st[1].first, std::string("optimizer.m.norm"));
        QCOMPARE(st[2].first, std::string("optimizer.v.w"));
        QCOMPARE(st[3].first, std::string("optimizer.v.norm"));
        QCOMPARE(st[0].second->shape(), store.at("w").value.shape());
    }

    // Restoring the moments and the step count continues a run exactly.
    void adamwStateRestoreContinuesExactly() {
        ParameterStore a, b;
        fill_store(a);
        fill_store(b);
        OptimizerSettings s;
        AdamW oa(a, be_, s), ob(b, be_, s);
        auto grads = [](ParameterStore& st, uint64_t seed) {
            for (Parameter* p : st.all())
                if (p->trainable) fill_uniform(p->grad.data(), p->grad.numel(), seed++, 1.0f);
        };
        for (int t = 0; t < 4; ++t) {
            grads(a, 10 + 5 * t);
            oa.step(1e-2, 1.0);
        }
        // b: the parameters and the optimizer state of a, as a checkpoint would restore them.
        for (Parameter* p : a.all()) b.at(p->name).value = p->value;
        auto sa = oa.state_tensors(), sb = ob.state_tensors();
        for (size_t k = 0; k < sa.size(); ++k) {
            QCOMPARE(sa[k].first, sb[k].first);
            *sb[k].second = *sa[k].second;
        }
        ob.set_step_count(oa.step_count());
        for (int t = 4; t < 8; ++t) {
            grads(a, 10 + 5 * t);
            grads(b, 10 + 5 * t);
            oa.step(1e-2, 1.0);
            ob.step(1e-2, 1.0);
        }
        for (Parameter* p : a.all())
            for (int64_t i = 0; i < p->value.numel(); ++i)
                QCOMPARE(b.at(p->name).value[i], p->value[i]);
        oa.reset();
        QCOMPARE(oa.step_count(), int64_t(0));
        QCOMPARE(oa.state_tensors()[0].second->data()[1], 0.0f);
    }

    // ---- schedules

    void lrWarmupAndCosine() {
        LrSchedule s;
        s.kind = "cosine";
        s.warmup_steps = 10;
        s.total_steps = 110;
        s.min_lr_ratio = 0.1;
        const double peak = 2.0;
        QCOMPARE(s.lr_at(0, peak), 0.2);             // peak / warmup at the first step
        QCOMPARE(s.lr_at(4, peak), 1.0);
        QCOMPARE(s.lr_at(9, peak), peak);            // end of warmup
        QCOMPARE(s.lr_at(10, peak), peak);           // start of the decay
        QVERIFY(std::fabs(s.lr_at(60, peak) - 0.5 * (2.0 + 0.2)) < 1e-12);  // cosine midpoint
        QVERIFY(std::fabs(s.lr_at(110, peak) - 0.2) < 1e-12);
        QVERIFY(std::fabs(s.lr_at(500, peak) - 0.2) < 1e-12);  // stays at the floor
        for (int64_t t = 1; t < 10; ++t) QVERIFY(s.lr_at(t, peak) > s.lr_at(t - 1, peak));
        for (int64_t t = 11; t <= 110; ++t) QVERIFY(s.lr_at(t, peak) < s.lr_at(t - 1, peak));
    }

    void lrWsdConstantAndWarmupConstant() {
        LrSchedule s;
        s.kind = "wsd";
        s.warmup_steps = 10;
        s.total_steps = 100;
        s.decay_fraction = 0.2;
        s.min_lr_ratio = 0.0;
        const double peak = 1.0;
        QCOMPARE(s.lr_at(0, peak), 0.1);
        QCOMPARE(s.lr_at(9, peak), 1.0);
        for (int64_t t = 10; t <= 80; ++t) QCOMPARE(s.lr_at(t, peak), 1.0);  // plateau
        QVERIFY(std::fabs(s.lr_at(90, peak) - 0.5) < 1e-12);  // linear decay midpoint
        QVERIFY(std::fabs(s.lr_at(100, peak)) < 1e-12);
        for (int64_t t = 81; t <= 100; ++t) QVERIFY(s.lr_at(t, peak) < s.lr_at(t - 1, peak));

        s.kind = "warmup_constant";
        QCOMPARE(s.lr_at(0, peak), 0.1);
        QCOMPARE(s.lr_at(9, peak), 1.0);
        QCOMPARE(s.lr_at(1000, peak), 1.0);
        s.kind = "constant";
        QCOMPARE(s.lr_at(0, peak), 1.0);
        QCOMPARE(s.lr_at(99, peak), 1.0);
        s.kind = "cosine";
        s.warmup_steps = 0;  // no warmup: the decay starts at step 0 from peak
        QCOMPARE(s.lr_at(0, peak), 1.0);
    }

    void mtpLambdaSchedule() {
        MtpSchedule m;
        QCOMPARE(m.lambda_at(0, 1000), 0.3);
        QCOMPARE(m.lambda_at(699, 1000), 0.3);
        QCOMPARE(m.lambda_at(700, 1000), 0.1);
        QCOMPARE(m.lambda_at(999, 1000), 0.1);
        QCOMPARE(m.lambda_at(5000, 0), 0.3);  // unknown length: early value
    }

    // ---- gradient clipping

    void gradNormMatchesNaiveAndClips() {
        ParameterStore store;
        fill_store(store);
        uint64_t seed = 50;
        double naive = 0.0;
        for (Parameter* p : store.all()) {
            if (!p->trainable) continue;
            fill_uniform(p->grad.data(), p->grad.numel(), seed++, 2.0f);
            for (int64_t i = 0; i < p->grad.numel(); ++i) naive += double(p->grad[i]) * p->grad[i];
        }
        naive = std::sqrt(naive);
        GradNorm r = global_grad_norm(store, be_, 1.0);
        QVERIFY(r.finite);
        QVERIFY(std::fabs(r.norm - naive) <= 1e-12 * naive);
        QVERIFY(naive > 1.0);
        QVERIFY(std::fabs(r.factor - 1.0 / (naive + 1e-6)) < 1e-15);
        // The factor applied to the gradients gives (just under) the max norm.
        for (Parameter* p : store.all())
            if (p->trainable) be_.scale(p->grad.data(), float(r.factor), p->grad.numel());
        const GradNorm after = global_grad_norm(store, be_, 1.0);
        QVERIFY(std::fabs(after.norm - 1.0) < 1e-5);
        QVERIFY(after.factor > 0.99999 && after.factor <= 1.0);

        // pre_scale (1 / grad_accum) scales the measured norm; clipping off gives factor 1.
        const GradNorm half = global_grad_norm(store, be_, 0.0, 0.5);
        QVERIFY(std::fabs(half.norm - 0.5 * after.norm) < 1e-12);
        QCOMPARE(half.factor, 1.0);
        const GradNorm loose = global_grad_norm(store, be_, 10.0);
        QCOMPARE(loose.factor, 1.0);
    }

    void gradNormDetectsNonFinite() {
        ParameterStore store;
        fill_store(store);
        store.zero_grads();
        store.at("norm").grad[2] = std::numeric_limits<float>::quiet_NaN();
        GradNorm r = global_grad_norm(store, be_, 1.0);
        QVERIFY(!r.finite);
        QCOMPARE(r.factor, 0.0);
        store.at("norm").grad[2] = std::numeric_limits<float>::infinity();
        QVERIFY(!global_grad_norm(store, be_, 1.0).finite);
        // A buffer's grad is not looked at.
        store.at("norm").grad[2] = 0.0f;
        QVERIFY(global_grad_norm(store, be_, 1.0).finite);
    }

    // ---- auxiliary-loss-free balancing

    void biasBalancerMovesByGamma() {
        const ModelConfig cfg = routing_config();
        ParameterStore store;
        MoeLayer layer(store, "mlp", 1, cfg);
        for (Parameter* p : store.all())
            if (p->trainable) fill_uniform(p->value.data(), p->value.numel(), 3, 0.3f);
        store.at("mlp.gate.weight").value.zero();
        Tensor& bias = layer.bias().value;
        const float b0[4] = {0.3f, 0.2f, 0.0f, -0.1f};  // every token picks experts 0 and 1
        std::copy(b0, b0 + 4, bias.data());
        const int64_t B = 2, T = 5, n = B * T, D = cfg.hidden_size;
        const std::vector<float> h = random_vector(n * D, 7);
        std::vector<float> y(static_cast<size_t>(n * D));
        layer.forward(be_, h.data(), B, T, nullptr, y.data());
        QCOMPARE(layer.expert_counts(), (std::vector<int64_t>{n, n, 0, 0}));

        const float gamma = 0.001f;
        BiasBalancer bal(gamma);
        std::vector<MoeLayer*> layers{&layer};
        bal.accumulate(layers);
        bal.update(layers, be_);
        // Overloaded experts go down by exactly gamma, idle ones up.
        QCOMPARE(bias[0], b0[0] - gamma);
        QCOMPARE(bias[1], b0[1] - gamma);
        QCOMPARE(bias[2], b0[2] + gamma);
        QCOMPARE(bias[3], b0[3] + gamma);
        QCOMPARE(bal.last_counts()[0], (std::vector<int64_t>{n, n, 0, 0}));
        QVERIFY(bal.counts().empty());
        QCOMPARE(max_violation(bal.last_counts()[0]), 1.0);
        QCOMPARE(dead_experts(bal.last_counts()[0]), int64_t(2));

        // No forward since the update: a second update changes nothing.
        const Tensor b1 = bias;
        bal.update(layers, be_);
        for (int64_t e = 0; e < 4; ++e) QCOMPARE(bias[e], b1[e]);
    }

    // Two micro-batches routed to opposite halves: the global batch is balanced, so the sum of
    // the counts (not the last micro-batch's) must leave the bias unchanged.
    void biasBalancerSumsMicroBatches() {
        const ModelConfig cfg = routing_config();
        ParameterStore store;
        MoeLayer layer(store, "mlp", 1, cfg);
        for (Parameter* p : store.all())
            if (p->trainable) fill_uniform(p->value.data(), p->value.numel(), 3, 0.3f);
        store.at("mlp.gate.weight").value.zero();
        Tensor& bias = layer.bias().value;
        const int64_t B = 1, T = 4, n = B * T, D = cfg.hidden_size;
        const std::vector<float> h = random_vector(n * D, 8);
        std::vector<float> y(static_cast<size_t>(n * D));
        BiasBalancer bal(0.01);
        std::vector<MoeLayer*> layers{&layer};

        const float first[4] = {0.3f, 0.2f, 0.0f, 0.0f}, second[4] = {0.0f, 0.0f, 0.3f, 0.2f};
        std::copy(first, first + 4, bias.data());
        layer.forward(be_, h.data(), B, T, nullptr, y.data());
        bal.accumulate(layers);
        std::copy(second, second + 4, bias.data());
        layer.forward(be_, h.data(), B, T, nullptr, y.data());
        bal.accumulate(layers);
        QCOMPARE(bal.pending_micro_batches(), int64_t(2));
        QCOMPARE(bal.counts()[0], (std::vector<int64_t>{n, n, n, n}));
        bal.update(layers, be_);
        for (int64_t e = 0; e < 4; ++e) QCOMPARE(bias[e], second[e]);
        QCOMPARE(max_violation(bal.last_counts()[0]), 0.0);
        QCOMPARE(bal.pending_micro_batches(), int64_t(0));
    }

    void biasBalancerSkipsLayersWithoutBias() {
        const ModelConfig cfg = tiny_softmax_config();  // greedy routing: no selection bias
        ParameterStore store;
        MoeLayer layer(store, "mlp", 1, cfg);
        QVERIFY(!layer.has_bias());
        for (Parameter* p : store.all()) fill_uniform(p->value.data(), p->value.numel(), 4, 0.3f);
        const int64_t n = 6, D = cfg.hidden_size;
        const std::vector<float> h = random_vector(n * D, 9);
        std::vector<float> y(static_cast<size_t>(n * D));
        layer.forward(be_, h.data(), 1, n, nullptr, y.data());
        BiasBalancer bal(0.001);
        std::vector<MoeLayer*> layers{&layer};
        bal.accumulate(layers);
        bal.update(layers, be_);  // counted, nothing to update, no crash
        QCOMPARE(bal.last_counts().size(), size_t(1));
    }

    void maxViolationKnownAnswers() {
        QCOMPARE(max_violation({10, 10, 10, 10}), 0.0);
        QCOMPARE(max_violation({40, 0, 0, 0}), 3.0);
        QCOMPARE(max_violation({15, 5, 10, 10}), 0.5);
        QCOMPARE(max_violation({0, 0, 0}), 0.0);
        QCOMPARE(max_violation({}), 0.0);
        QCOMPARE(dead_experts({0, 3, 0, 1}), int64_t(2));
        QCOMPARE(dead_experts({1, 1}), int64_t(0));
    }

    // ---- balancing modes and the batch-wise loss

    void balanceModeMapping() {
        ModelConfig cfg = tiny_full_config();
        BalanceSettings b;
        b.alpha = 2e-3;
        b.mode = "aux_free";
        apply_balance_mode(b, cfg);
        QCOMPARE(cfg.aux_loss_alpha, 0.0);
        QVERIFY(b.bias_updates());
        b.mode = "seq_aux";
        apply_balance_mode(b, cfg);
        QCOMPARE(cfg.aux_loss_alpha, 2e-3);
        QVERIFY(cfg.seq_aux);
        QVERIFY(!b.bias_updates());
        b.mode = "batch_aux";
        apply_balance_mode(b, cfg);
        QCOMPARE(cfg.aux_loss_alpha, 2e-3);
        QVERIFY(!cfg.seq_aux);
        QVERIFY(!b.bias_updates());
        b.mode = "none";
        apply_balance_mode(b, cfg);
        QCOMPARE(cfg.aux_loss_alpha, 0.0);
        QVERIFY(!b.bias_updates());

        ModelConfig greedy = tiny_softmax_config();
        b.mode = "aux_free";
        QVERIFY(config_error([&] { apply_balance_mode(b, greedy); }, "training.balance.mode",
                             "greedy"));
    }

    // seq_aux = false: the layer's loss is the sequence-wise formula over the whole batch as
    // one sequence, which differs from the per-sequence average.
    void batchWiseAuxLoss() {
        ModelConfig seq_cfg = tiny_full_config(), batch_cfg = tiny_full_config();
        batch_cfg.seq_aux = false;
        ParameterStore s1, s2;
        MoeLayer seq_layer(s1, "mlp", 1, seq_cfg), batch_layer(s2, "mlp", 1, batch_cfg);
        uint64_t seed = 11;
        for (Parameter* p : s1.all()) {
            fill_uniform(p->value.data(), p->value.numel(), seed++, 0.5f);
            s2.at(p->name).value = p->value;
        }
        const int64_t B = 3, T = 5, n = B * T, D = seq_cfg.hidden_size;
        const std::vector<float> h = random_vector(n * D, 12);
        std::vector<float> y1(static_cast<size_t>(n * D)), y2(y1.size());
        RoutingRecord rec;
        const double l_seq = seq_layer.forward(be_, h.data(), B, T, &rec, y1.data());
        const double l_batch = batch_layer.forward(be_, h.data(), B, T, nullptr, y2.data());
        const auto E = seq_cfg.n_routed_experts, K = seq_cfg.num_experts_per_tok;
        const auto alpha = static_cast<float>(seq_cfg.aux_loss_alpha);
        QCOMPARE(l_seq, be_.seq_aux_loss_forward(rec.scores.data(), rec.topk_idx.data(), B, T, E,
                                                 K, alpha));
        QCOMPARE(l_batch, be_.seq_aux_loss_forward(rec.scores.data(), rec.topk_idx.data(), 1, n,
                                                   E, K, alpha));
        QVERIFY(std::fabs(l_seq - l_batch) > 1e-9 * std::fabs(l_seq));
        QCOMPARE(y1, y2);  // the loss does not change the layer's output
    }

    // ---- JSON

    void jsonRoundTrip() {
        OptimizerSettings o;
        o.lr = 1e-3;
        o.grad_accum = 4;
        o.schedule.kind = "wsd";
        o.schedule.total_steps = 5000;
        QCOMPARE(OptimizerSettings::from_json(o.to_json()), o);
        BalanceSettings b;
        b.mode = "batch_aux";
        QCOMPARE(BalanceSettings::from_json(b.to_json()), b);
        MtpSchedule m;
        m.switch_fraction = 0.5;
        QCOMPARE(MtpSchedule::from_json(m.to_json()), m);
        // Missing fields keep their defaults.
        const OptimizerSettings partial = OptimizerSettings::from_json(json{{"lr", 5e-4}});
        QCOMPARE(partial.lr, 5e-4);
        QCOMPARE(partial.beta2, 0.95);
        QCOMPARE(partial.schedule.kind, std::string("cosine"));
    }

    void jsonErrorsNameFieldAndValue() {
        QVERIFY(config_error([] { OptimizerSettings::from_json(json{{"lrr", 1e-3}}); },
                             "training.optimizer.lrr", "did you mean \"lr\""));
        QVERIFY(config_error([] { OptimizerSettings::from_json(json{{"beta2", 1.5}}); },
                             "training.optimizer.beta2", "1.5"));
        QVERIFY(config_error([] { OptimizerSettings::from_json(json{{"lr", "fast"}}); },
                             "training.optimizer.lr", "\"fast\""));
        QVERIFY(config_error([] { OptimizerSettings::from_json(json{{"grad_accum", 0}}); },
                             "training.optimizer.grad_accum", "got 0"));
        QVERIFY(config_error([] { OptimizerSettings::from_json(json{{"grad_clip", -1}}); },
                             "training.optimizer.grad_clip", "-1"));
        QVERIFY(config_error(
            [] { OptimizerSettings::from_json(json{{"schedule", {{"kind", "linear"}}}}); },
            "training.optimizer.schedule.kind", "\"linear\""));
        QVERIFY(config_error(
            [] { OptimizerSettings::from_json(json{{"schedule", {{"warmup", 10}}}}); },
            "training.optimizer.schedule.warmup", "unknown field"));
        QVERIFY(config_error(
            [] {
                OptimizerSettings::from_json(
                    json{{"schedule", {{"warmup_steps", 200}, {"total_steps", 100}}}});
            },
            "training.optimizer.schedule.warmup_steps", "200"));
        QVERIFY(config_error([] { OptimizerSettings::from_json(json::array()); },
                             "training.optimizer", "JSON object"));
        QVERIFY(config_error([] { BalanceSettings::from_json(json{{"mode", "aux"}}); },
                             "training.balance.mode", "\"aux\""));
        QVERIFY(config_error([] { BalanceSettings::from_json(json{{"gamma", -0.1}}); },
                             "training.balance.gamma", "-0.1"));
        QVERIFY(config_error([] { MtpSchedule::from_json(json{{"switch_fraction", 2}}); },
                             "training.mtp.switch_fraction", "2"));
        QVERIFY(config_error([] { MtpSchedule::from_json(json{{"lambda", 0.3}, {"x", 1}}); },
                             "training.mtp.x", "unknown field"));
        // Callers nesting the settings elsewhere choose the prefix.
        QVERIFY(config_error([] { BalanceSettings::from_json(json{{"alpha", -1}}, "run.bal"); },
                             "run.bal.alpha", "-1"));
    }

    // ---- end to end

    // AdamW + clipping + the bias balancer lower the loss of the tiny model on a fixed batch.
    void trainingLowersTheLoss() {
        ModelConfig cfg = tiny_full_config();
        BalanceSettings balance;  // aux_free
        apply_balance_mode(balance, cfg);
        Model model(cfg, be_);
        model.init_weights(42);
        const Batch batch = random_batch(cfg.vocab_size, 2, 8, 3);
        OptimizerSettings s;
        s.lr = 1e-2;
        s.schedule.kind = "warmup_constant";
        s.schedule.warmup_steps = 5;
        s.schedule.total_steps = 30;
        AdamW opt(model.parameters(), be_, s);
        BiasBalancer balancer(balance.gamma);
        MtpSchedule mtp;
        std::vector<MoeLayer*> layers = model.moe_layers();
        double first = 0.0, last = 0.0;
        for (int64_t step = 0; step < 30; ++step) {
            ForwardOptions fo;
            fo.mtp_lambda = mtp.lambda_at(step, 30);
            model.parameters().zero_grads();
            const LossReport rep = model.forward(batch, fo);
            QVERIFY(std::isfinite(rep.total));
            model.backward();
            balancer.accumulate(layers);
            const GradNorm gn = global_grad_norm(model.parameters(), be_, s.grad_clip);
            QVERIFY(gn.finite);
            opt.step(s.schedule.lr_at(step, s.lr), gn.factor);
            balancer.update(layers, be_);
            if (step == 0) first = rep.loss;
            last = rep.loss;
        }
        qInfo("main loss %.4f -> %.4f over 30 steps", first, last);
        QVERIFY2(last < 0.7 * first, qPrintable(QString("%1 -> %2").arg(first).arg(last)));
        // The balancer moved the biases (they start at 0).
        double moved = 0.0;
        for (MoeLayer* l : layers)
            for (int64_t e = 0; e < l->n_experts(); ++e) moved += std::fabs(l->bias().value[e]);
        QVERIFY(moved > 0.0);
    }
};

QTEST_APPLESS_MAIN(TestOptim)
#include "tst_optim.moc"
