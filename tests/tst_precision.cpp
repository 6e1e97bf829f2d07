// Precision modes: the quantized GEMM op, projections in bf16/fp8, fp16 loss scaling, and what a
// quantized training run records in its run file (/quant, /sparsity).
#include <QtTest>

#include <cmath>
#include <filesystem>
#include <functional>
#include <random>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "model/linear_precision.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "inspect/weight_quantization.h"
#include "quant/block_scaling.h"
#include "quant/quant_recorder.h"
#include "store/run_reader.h"
#include "test_support.h"
#include "train/loss_scaler.h"
#include "train/trainer.h"

using namespace moe;

namespace {

std::vector<float> gaussian(int64_t n, uint64_t seed, float sd = 1.0f) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = d(rng);
    return v;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        den += double(b[i]) * b[i];
    }
    return std::sqrt(num / den);
}

double grad_rel_diff(Model& a, Model& b, const char* only = nullptr) {
    double num = 0, den = 0;
    for (Parameter* p : a.parameters().all()) {
        if (!p->trainable) continue;
        if (only && p->name.find(only) == std::string::npos) continue;
        const Parameter& q = b.parameters().at(p->name);
        for (int64_t i = 0; i < p->grad.numel(); ++i) {
            const double d = double(p->grad[i]) - q.grad[i];
            num += d * d;
            den += double(q.grad[i]) * q.grad[i];
        }
    }
    return std::sqrt(num / den);
}

// The message of the Error fn throws ("" if none).
QString thrown(const std::function<void()>& fn) {
    try {
        fn();
        return {};
    } catch (const Error& e) {
        return QString::fromStdString(e.what());
    }
}

LinearRecipe recipe(LinearPrecision mode, bool per_tensor = false) {
    LinearRecipe r;
    r.mode = mode;
    r.per_tensor = per_tensor;
    return r;
}

}  // namespace

class TestPrecision : public QObject {
    Q_OBJECT

private slots:
    // gemm_quantized multiplies exactly the fake-quantized operands; in fp32 it is gemm itself.
    void quantizedGemmMultipliesTheCastOperands() {
        CpuBackend be(2);
        const int64_t M = 37, N = 70, K = 300;  // partial tiles along every dimension
        const auto A = gaussian(M * K, 1), B = gaussian(N * K, 2, 0.05f);
        const LinearRecipe r = recipe(LinearPrecision::FP8);
        std::vector<float> C(M * N), Cref(M * N), qa(A.size()), qb(B.size());
        be.gemm_quantized(false, true, M, N, K, 1.0f, A.data(), K, r.activation(), B.data(), K,
                          r.weight(), 0.0f, C.data(), N);
        fake_quantize(A.data(), M, K, K, r.activation(), qa.data(), K);
        fake_quantize(B.data(), N, K, K, r.weight(), qb.data(), K);
        be.gemm(false, true, M, N, K, 1.0f, qa.data(), K, qb.data(), K, 0.0f, Cref.data(), N);
        QCOMPARE(C, Cref);
        // Against DeepSeek's promotion rule with an fp32 accumulator: equal up to summation order.
        std::vector<float> Cpromoted(M * N);
        gemm_block_scaled_reference(A.data(), B.data(), M, N, K, r.activation(), r.weight(), 128,
                                    23, Cpromoted.data());
        QVERIFY2(rel_diff(C, Cpromoted) < 1e-6, qPrintable(QString::number(rel_diff(C, Cpromoted))));
        // And it really quantizes: far from the fp32 product, by about E4M3's precision.
        std::vector<float> C32(M * N);
        be.gemm(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, C32.data(), N);
        const double err = rel_diff(C, C32);
        qInfo("fp8 GEMM relative error vs fp32: %.4f", err);
        QVERIFY(err > 5e-3 && err < 0.1);
        // fp32 recipe: bitwise the plain GEMM.
        const LinearRecipe f = recipe(LinearPrecision::FP32);
        be.gemm_quantized(false, true, M, N, K, 1.0f, A.data(), K, f.activation(), B.data(), K,
                          f.weight(), 0.0f, C.data(), N);
        QCOMPARE(C, C32);
    }

    // The model in each precision: loss and gradients close to fp32 by about the format's
    // precision, not equal (the casts are really applied), fp8 per-tensor no better than tiles.
    void modelGradientsFollowThePrecision() {
        CpuBackend be(2);
        const ModelConfig cfg = test::tiny_full_config();
        const Batch batch = test::random_batch(cfg.vocab_size, 2, 16, 7);
        auto run = [&](LinearRecipe r, Model& m) {
            m.init_weights(3);
            test::spread_router(m, 3);
            m.set_linear_recipe(r);
            m.parameters().zero_grads();
            const LossReport rep = m.forward(batch);
            m.backward();
            return rep.total;
        };
        Model ref(cfg, be);
        const double loss32 = run(recipe(LinearPrecision::FP32), ref);
        struct Case {
            const char* name;
            LinearRecipe r;
            double max_grad_err;
        };
        const Case cases[] = {{"bf16", recipe(LinearPrecision::BF16), 0.03},
                              {"fp16", recipe(LinearPrecision::FP16), 0.01},
                              {"fp8", recipe(LinearPrecision::FP8), 0.4}};  // 3 mantissa bits: 16x bf16's step
        for (const Case& c : cases) {
            Model m(cfg, be);
            const double loss = run(c.r, m);
            const double gerr = grad_rel_diff(m, ref);
            qInfo("%s: loss %.6f vs fp32 %.6f (rel %.2e), gradients rel. error %.2e "
                  "(attention %.2e, experts %.2e, gate %.2e)", c.name, loss,
                  loss32, std::fabs(loss - loss32) / loss32, gerr, grad_rel_diff(m, ref, "self_attn"),
                  grad_rel_diff(m, ref, ".experts."), grad_rel_diff(m, ref, ".mlp.gate."));
            QVERIFY2(loss != loss32 && gerr > 0, c.name);
            QVERIFY2(std::fabs(loss - loss32) / loss32 < 0.01, c.name);
            QVERIFY2(gerr < c.max_grad_err, c.name);
        }
    }

    // A recorder sees every projection's weight, input and output gradient; the head and gate
    // are not quantized and not recorded.
    void recorderObservesEveryProjection() {
        CpuBackend be(1);
        const ModelConfig cfg = test::tiny_full_config();
        Model m(cfg, be);
        m.init_weights(1);
        m.set_linear_recipe(recipe(LinearPrecision::FP8));
        std::vector<std::string> keys;
        for (const Parameter* p : m.parameters().all()) {
            if (p->name == "lm_head.weight" || p->name.ends_with(".mlp.gate.weight"))
                QVERIFY(!is_projection_weight(p->name, p->value.rank()));
            if (!is_projection_weight(p->name, p->value.rank())) continue;
            for (const char* suffix : {"", "@input", "@grad"}) keys.push_back(p->name + suffix);
        }
        keys.push_back("lm_head.weight");
        QuantRecorder rec(keys, {}, {}, {});
        m.precision().recorder = &rec;
        const Batch batch = test::random_batch(cfg.vocab_size, 2, 16, 1);
        m.parameters().zero_grads();
        m.forward(batch);
        m.backward();
        m.precision().recorder = nullptr;
        const QuantRow row = rec.row(1);
        int seen = 0;
        for (size_t q = 0; q + 1 < keys.size(); ++q) {
            // An expert that got no token this batch is legitimately unobserved.
            if (row.amax[q] == 0 && keys[q].find(".experts.") != std::string::npos) continue;
            ++seen;
            QVERIFY2(row.rel_error[q] > 1e-3 && row.rel_error[q] < 0.1, keys[q].c_str());
            QVERIFY2(row.snr_db[q] > 20 && row.snr_db[q] < 60, keys[q].c_str());
        }
        QVERIFY(seen > int(keys.size()) / 2);
        QCOMPARE(row.amax.back(), 0.0f);  // the head: never observed
    }

    void lossScalerBacksOffAndGrows() {
        LossScaleSettings s;
        s.initial = 1024;
        s.growth_interval = 3;
        LossScaler ls(s, true);
        QVERIFY(ls.update(true) && ls.update(true));
        QCOMPARE(ls.scale(), 1024.0);
        QVERIFY(ls.update(true));
        QCOMPARE(ls.scale(), 2048.0);  // 3 good steps
        QVERIFY(!ls.update(false));
        QVERIFY(ls.last_was_overflow());
        QCOMPARE(ls.scale(), 1024.0);
        QCOMPARE(ls.good_steps(), int64_t(0));
        ls.restore(1.0, 0);
        QVERIFY(!ls.update(false));
        QVERIFY(!ls.last_was_overflow());  // at scale 1 an overflow is a divergence
        QCOMPARE(ls.scale(), 1.0);
        LossScaler off(s, false);
        QCOMPARE(off.scale(), 1.0);
        QVERIFY(!off.update(false));
        QVERIFY(off.update(true));
        QCOMPARE(off.scale(), 1.0);
    }

    // fp16 without loss scaling flushes small gradients to zero; with the scale they survive.
    void fp16LossScalingKeepsSmallGradients() {
        CpuBackend be(1);
        ModelConfig cfg = test::tiny_full_config();
        const Batch batch = test::random_batch(cfg.vocab_size, 2, 16, 5);
        auto zero_grads = [&](float scale) {
            Model m(cfg, be);
            m.init_weights(11);
            for (Parameter* p : m.parameters().all())  // tiny weights: tiny gradients
                if (p->value.rank() == 2)
                    for (int64_t i = 0; i < p->value.numel(); ++i) p->value[i] *= 0.005f;
            m.set_linear_recipe(recipe(LinearPrecision::FP16));
            m.parameters().zero_grads();
            m.forward(batch);
            m.backward(scale);
            int64_t zeros = 0, total = 0;
            for (Parameter* p : m.parameters().all()) {
                if (!is_projection_weight(p->name, p->value.rank())) continue;
                for (int64_t i = 0; i < p->grad.numel(); ++i) zeros += p->grad[i] == 0.0f;
                total += p->grad.numel();
            }
            return double(zeros) / double(total);
        };
        const double unscaled = zero_grads(1.0f), scaled = zero_grads(65536.0f);
        qInfo("fp16 projection gradients exactly zero: %.1f%% unscaled, %.1f%% with scale 65536",
              100 * unscaled, 100 * scaled);
        QVERIFY(unscaled > scaled + 0.05);
    }

    // A quantized run writes /quant rows (errors, histograms, scales) and /sparsity rows, and
    // ends near the fp32 run's loss.
    void fp8RunRecordsQuantizationAndTracksFp32() {
        QTemporaryDir tmp;
        auto train = [&](const char* mode, const std::string& name) {
            Project p = test::shrunk_tiny_tasks(40);
            p.training.precision.mode = mode;
            p.training.precision.record_every = 20;
            p.training.log_every = 10;
            Trainer t(p, {tmp.filePath(QString::fromStdString(name)).toStdString(), ""}, 1);
            while (!t.finished()) t.step();
            const double loss = t.evaluate().loss;
            t.close();
            return loss;
        };
        const double l32 = train("fp32", "fp32.h5"), l8 = train("fp8", "fp8.h5");
        qInfo("40 steps: eval loss fp32 %.4f, fp8 %.4f (%.2f%%)", l32, l8, 100 * (l8 - l32) / l32);
        QVERIFY(l8 != l32);
        QVERIFY(std::fabs(l8 - l32) / l32 < 0.02);

        RunReader r(tmp.filePath("fp8.h5").toStdString());
        const RunHeader& h = r.header();
        QCOMPARE(h.precision, std::string("fp8"));
        QVERIFY(h.n_quant() > 30 && h.n_quant() % 3 == 0);
        QCOMPARE(r.quant_count(), int64_t(3));  // steps 1, 20, 40
        const QuantRow row = r.quant(2);
        QCOMPARE(row.step, int64_t(40));
        int64_t weights = 0;
        for (int64_t q = 0; q < h.n_quant(); ++q) {
            if (h.quant_roles[q] != "weight") continue;
            ++weights;
            if (row.amax[q] == 0) continue;  // an expert that got no token in this step
            QVERIFY2(row.rel_error[q] > 1e-3 && row.rel_error[q] < 0.1, h.quant_tensors[q].c_str());
            uint64_t n = row.value_zeros[q];
            for (int64_t b = 0; b < kQuantHistogramBins; ++b) n += row.value_hist[q * kQuantHistogramBins + b];
            QVERIFY(n > 0);
        }
        QCOMPARE(weights, h.n_quant() / 3);
        QCOMPARE(int64_t(row.scales.size()), h.n_scale_values());
        // Unobserved grids (an expert without tokens at that step) stay 0.
        int64_t positive = 0;
        for (float s : row.scales) {
            QVERIFY(s >= 0 && std::isfinite(s));
            positive += s > 0;
        }
        QVERIFY(positive > int64_t(row.scales.size()) / 2);
        const QuantErrorSeries s = r.quant_error_series(0);
        QCOMPARE(s.step, (std::vector<int64_t>{1, 20, 40}));

        QVERIFY(r.sparsity_count() >= 4);
        const SparsityRows sp = r.sparsity_rows();
        QCOMPARE(int64_t(sp.near_zero.size()), r.sparsity_count() * h.n_ffn_layers());
        for (float f : sp.near_zero) QVERIFY(f >= 0 && f < 0.5);
        for (float f : sp.unused_experts) QVERIFY(f >= 0 && f <= 1);

        RunReader r32(tmp.filePath("fp32.h5").toStdString());
        QCOMPARE(r32.header().precision, std::string("fp32"));
        QCOMPARE(r32.quant_count(), int64_t(0));
        QCOMPARE(r32.header().n_quant(), int64_t(0));
        QVERIFY(r32.sparsity_count() >= 4);
    }

    // Inference with quantized weights: fp32 reproduces itself, int8 is closer than fp8, int4
    // is the furthest, and every format restores the weights afterwards.
    void weightQuantizedInference() {
        QTemporaryDir tmp;
        Project p = test::shrunk_tiny_tasks(30);
        p.model.moe_intermediate_size = 128;  // a group of 128 fits the experts' down_proj
        p.model.intermediate_size = 128;
        p.model.hidden_size = 128;
        Trainer t(p, {tmp.filePath("run.h5").toStdString(), ""}, 1);
        while (!t.finished()) t.step();
        Model& m = t.model();
        const std::vector<float> before(m.parameters().at("model.layers.1.mlp.experts.0.up_proj.weight").value.data(),
                                        m.parameters().at("model.layers.1.mlp.experts.0.up_proj.weight").value.data() +
                                            m.parameters().at("model.layers.1.mlp.experts.0.up_proj.weight").value.numel());
        const ProbeBatch probe = t.data().probe_batch(32);
        const std::vector<int32_t> tokens(probe.batch.tokens.begin(), probe.batch.tokens.begin() + probe.batch.seq_len);
        std::vector<WeightFormat> formats;
        for (const char* f : {"fp32", "fp8", "int8", "int4-g128", "int4"}) formats.push_back(WeightFormat::parse(f));
        const auto res = evaluate_weight_formats(m, t.data(), 2, tokens, formats);
        QCOMPARE(res.size(), size_t(5));
        for (const auto& r : res)
            qInfo("%-10s bits %.2f  weight err %.4f  val loss %.4f (%+.2f%%)  routing same %.1f%%  top-1 %.1f%%",
                  r.format.c_str(), r.bits_per_weight, r.weight_rel_error, r.val_loss, 100 * r.loss_change,
                  100 * r.routing.exact, 100 * r.routing.top1);
        QCOMPARE(res[0].loss_change, 0.0);
        QCOMPARE(res[0].weight_rel_error, 0.0);
        QCOMPARE(res[0].routing.exact, 1.0);
        QCOMPARE(res[0].bits_per_weight, 32.0);
        QVERIFY(res[1].weight_rel_error > 0.01 && res[1].weight_rel_error < 0.06);  // E4M3: ~3 bits
        QVERIFY(res[2].weight_rel_error < res[1].weight_rel_error);                // int8 < fp8
        QVERIFY(res[3].weight_rel_error > res[2].weight_rel_error * 4);             // int4 >> int8
        QVERIFY(res[4].weight_rel_error >= res[3].weight_rel_error);                // groups help
        QVERIFY(res[1].bits_per_weight > 8 && res[1].bits_per_weight < 8.1);
        QVERIFY(res[3].bits_per_weight > 4 && res[3].bits_per_weight < 4.6);
        QVERIFY(std::fabs(res[3].loss_change) > std::fabs(res[2].loss_change));
        QVERIFY(res[3].routing.overlap <= 1.0 && res[3].routing.overlap > 0.5);
        const Tensor& after = m.parameters().at("model.layers.1.mlp.experts.0.up_proj.weight").value;
        QVERIFY(std::equal(before.begin(), before.end(), after.data()));
        QVERIFY(thrown([] { WeightFormat::parse("int5"); }).contains("int5"));
        QCOMPARE(WeightFormat::parse("int4-g32-asym").int_spec.group_size, int64_t(32));
        QVERIFY(!WeightFormat::parse("int4-g32-asym").int_spec.symmetric);
    }

    void precisionSettingsAreValidated() {
        Project p = test::shrunk_tiny_tasks(4);
        nlohmann::json j = p.to_json();
        j["training"]["precision"]["mode"] = "fp4";
        QVERIFY(thrown([&] { Project::from_json(j); }).contains("training.precision.mode"));
        j["training"]["precision"]["mode"] = "fp8";
        j["training"]["precision"]["scaling"] = "block";
        QVERIFY(thrown([&] { Project::from_json(j); }).contains("training.precision.scaling"));
        j["training"]["precision"]["scaling"] = "tensor";
        j["training"]["precision"]["loss_scale"]["backoff"] = 2;
        const QString msg = thrown([&] { Project::from_json(j); });
        QVERIFY2(msg.contains("training.precision.loss_scale.backoff") && msg.contains("2"), qPrintable(msg));
        j["training"]["precision"]["loss_scale"]["backoff"] = 0.25;
        const Project q = Project::from_json(j);
        QCOMPARE(q.training.precision.scaling, std::string("tensor"));
        QVERIFY(q.training.precision.recipe().per_tensor);
        QCOMPARE(Project::from_json(q.to_json()), q);
    }
};

QTEST_APPLESS_MAIN(TestPrecision)
#include "tst_precision.moc"
