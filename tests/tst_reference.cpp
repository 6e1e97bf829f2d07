// The engine against an independent PyTorch implementation of the same architecture
// (tests/reference/deepseek_v3_ref.py, float64, autograd), as llm.c's test_gpt2.c checks
// train_gpt2.c against train_gpt2.py: logits, the three losses, every parameter gradient and
// every routing decision, from the same safetensors checkpoint. Checkpoints go both ways: one
// written by the reference (a "foreign" checkpoint with the MTP alias tensors) and one written
// by the engine.
#include <QtTest>

#include <QProcess>
#include <QTemporaryDir>

#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "data/token_lines.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "store/model_checkpoint.h"
#include "store/safetensors.h"
#include "test_support.h"

using namespace moe;
using namespace moe::test;

namespace {

// fp32 engine vs float64 reference: the errors below come from fp32 rounding alone.
constexpr double kLogitTolerance = 1e-5;  // max |a-b| / max |b| over the logits
constexpr double kLossTolerance = 1e-5;   // relative
constexpr double kGradTolerance = 1e-4;   // per tensor: max |a-b| / max |b|

double scaled_max_error(const float* a, const float* b, int64_t n) {
    double diff = 0.0, ref = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        diff = std::max(diff, std::fabs(double(a[i]) - double(b[i])));
        ref = std::max(ref, std::fabs(double(b[i])));
        if (!std::isfinite(a[i])) return INFINITY;
    }
    return ref > 0 ? diff / ref : diff;
}

QString python() {
    return QStringLiteral(MOE_REFERENCE_PYTHON);
}
QString reference_script() {
    return QString::fromStdString(source_path("tests/reference/deepseek_v3_ref.py"));
}

// Runs the reference CLI; the test fails with its stderr when it does.
bool run_reference(const QStringList& args, QString* error) {
    QProcess p;
    p.start(python(), QStringList{reference_script()} + args);
    if (!p.waitForFinished(600000) || p.exitStatus() != QProcess::NormalExit || p.exitCode() != 0) {
        *error = QString("reference %1 failed (%2): %3")
                     .arg(args.join(' '))
                     .arg(p.exitCode())
                     .arg(QString::fromUtf8(p.readAllStandardError()));
        return false;
    }
    return true;
}

double read_scalar(const SafetensorsReader& r, const std::string& name) {
    return double(r.read_f32(name)[0]);
}

}  // namespace

class TestReference : public QObject {
    Q_OBJECT

    CpuBackend be_{2};

    // Compares the engine's forward/backward on `batch_file` with the reference's output.
    void compare(Model& model, const QString& batch_file, const QString& ref_file) {
        const ModelConfig& cfg = model.config();
        const TokenLines lines = read_token_lines(batch_file.toStdString(), cfg.vocab_size);
        Batch batch;
        batch.batch = lines.rows;
        batch.seq_len = lines.length - 1;
        batch.tokens = lines.ids;
        ForwardOptions opt;
        opt.mtp_lambda = 0.3;
        opt.probe_routing = true;
        const LossReport rep = model.forward(batch, opt);
        model.parameters().zero_grads();
        model.backward();

        const SafetensorsReader ref(ref_file.toStdString());
        const Tensor ref_logits = ref.read_f32("logits");
        QCOMPARE(ref_logits.numel(), model.logits().numel());
        const double logit_err =
            scaled_max_error(model.logits().data(), ref_logits.data(), ref_logits.numel());

        auto rel = [](double a, double b) {
            return std::fabs(a - b) / std::max(std::fabs(b), 1e-12);
        };
        const double loss_err = rel(rep.loss, read_scalar(ref, "loss"));
        const double total_err = rel(rep.total, read_scalar(ref, "total_loss"));
        const double ref_mtp = read_scalar(ref, "mtp_loss"), ref_aux = read_scalar(ref, "aux_loss");
        const double mtp_err = ref_mtp != 0 ? rel(rep.mtp_loss, ref_mtp) : std::fabs(rep.mtp_loss);
        const double aux_err = ref_aux != 0 ? rel(rep.aux_loss, ref_aux) : std::fabs(rep.aux_loss);
        qInfo("losses: engine %.9f / %.9f / %.9f, reference %.9f / %.9f / %.9f (main / mtp / aux)",
              rep.loss, rep.mtp_loss, rep.aux_loss, read_scalar(ref, "loss"), ref_mtp, ref_aux);
        qInfo("relative error: logits %.2e, loss %.2e, mtp loss %.2e, aux loss %.2e, total %.2e",
              logit_err, loss_err, mtp_err, aux_err, total_err);
        QVERIFY2(logit_err < kLogitTolerance, "logits differ");
        QVERIFY2(loss_err < kLossTolerance, "main loss differs");
        QVERIFY2(mtp_err < kLossTolerance, "MTP loss differs");
        QVERIFY2(aux_err < kLossTolerance, "aux loss differs");
        QVERIFY2(total_err < kLossTolerance, "total loss differs");
        if (cfg.index_topk > 0) {
            const double ref_index = read_scalar(ref, "indexer_loss");
            const double index_err = rel(rep.indexer_loss, ref_index);
            qInfo("indexer KL: engine %.9f, reference %.9f, relative error %.2e", rep.indexer_loss,
                  ref_index, index_err);
            QVERIFY(ref_index > 0.0);
            QVERIFY2(index_err < kLossTolerance, "indexer loss differs");
        }

        // Routing: identical expert choices in every MoE layer, MTP included.
        int layers = 0;
        for (const RoutingRecord& r : model.routing()) {
            const std::string key = "routing." + std::to_string(r.layer);
            QVERIFY2(ref.contains(key + ".topk_idx"), key.c_str());
            const std::vector<int32_t> idx = ref.read_i32(key + ".topk_idx");
            QCOMPARE(idx.size(), r.topk_idx.size());
            int64_t differ = 0;
            for (size_t i = 0; i < idx.size(); ++i) differ += idx[i] != r.topk_idx[i];
            QVERIFY2(differ == 0,
                     qPrintable(
                         QString("layer %1: %2 routing choices differ").arg(r.layer).arg(differ)));
            const Tensor w = ref.read_f32(key + ".topk_weight");
            const double werr = scaled_max_error(r.topk_weight.data(), w.data(), w.numel());
            QVERIFY2(
                werr < kLogitTolerance,
                qPrintable(QString("layer %1 routing weights differ: %2").arg(r.layer).arg(werr)));
            ++layers;
        }
        QCOMPARE(layers, int(model.moe_layers().size()));

        // Every trainable parameter's gradient.
        double worst = 0.0;
        std::string worst_name;
        int checked = 0;
        for (const Parameter* p : model.parameters().all()) {
            if (!p->trainable) continue;
            const std::string key = "grad." + p->name;
            QVERIFY2(ref.contains(key), key.c_str());
            const Tensor g = ref.read_f32(key);
            QCOMPARE(g.numel(), p->grad.numel());
            const double err = scaled_max_error(p->grad.data(), g.data(), g.numel());
            if (err > worst) {
                worst = err;
                worst_name = p->name;
            }
            ++checked;
        }
        qInfo("gradients: %d tensors, worst max|engine - reference| / max|reference| = %.2e (%s)",
              checked, worst, worst_name.c_str());
        QVERIFY2(worst < kGradTolerance, worst_name.c_str());
    }

    // The reference's side of a comparison, in `dir`: config.json of `cfg`, a checkpoint the
    // reference makes from it (ckpt/, weights from `seed`), a batch of `batch` x `seq` tokens
    // (batch.txt) and the reference's forward and backward on it (ref.safetensors). Empty on
    // success, else what failed.
    QString make_reference_case(const QTemporaryDir& dir, const ModelConfig& cfg, int seed,
                                int batch, int seq, int batch_seed) {
        const QString cfg_path = dir.filePath("config.json"), ckpt = dir.filePath("ckpt");
        cfg.save(cfg_path.toStdString());
        QString err;
        if (!run_reference({"make-checkpoint", "--config", cfg_path, "--seed",
                            QString::number(seed), "--out", ckpt},
                           &err) ||
            !run_reference({"make-batch", "--vocab", QString::number(cfg.vocab_size), "--batch",
                            QString::number(batch), "--seq", QString::number(seq), "--seed",
                            QString::number(batch_seed), "--out", dir.filePath("batch.txt")},
                           &err) ||
            !run_reference({"forward", "--checkpoint", ckpt, "--batch", dir.filePath("batch.txt"),
                            "--out", dir.filePath("ref.safetensors"), "--mtp-lambda", "0.3"},
                           &err))
            return err.isEmpty() ? QStringLiteral("the reference failed") : err;
        return {};
    }

    // The checkpoint's weights under another config (one feature switched off): its logits'
    // error against the reference's, which must then be large.
    double logits_error(const ModelConfig& cfg, const QString& ckpt, const QString& batch_path,
                        const QString& ref_path) {
        Model model(cfg, be_);
        load_model_weights(ckpt.toStdString(), model);
        const TokenLines lines = read_token_lines(batch_path.toStdString(), cfg.vocab_size);
        Batch batch;
        batch.batch = lines.rows;
        batch.seq_len = lines.length - 1;
        batch.tokens = lines.ids;
        model.forward(batch, {});
        const Tensor ref = SafetensorsReader(ref_path.toStdString()).read_f32("logits");
        return scaled_max_error(model.logits().data(), ref.data(), ref.numel());
    }

private slots:
    void initTestCase() {
        QProcess p;
        p.start(python(), {"-c", "import torch, numpy"});
        const bool ok = p.waitForFinished(120000) && p.exitCode() == 0;
        if (!ok)
            QFAIL(qPrintable(QString("%1 cannot import torch/numpy: install python3-torch "
                                     "(scripts/install-deps.sh). %2")
                                 .arg(python(), QString::fromUtf8(p.readAllStandardError()))));
    }

    // A checkpoint written by another program (the reference), MTP alias tensors included.
    void everyFeatureFromForeignCheckpoint() {
        QTemporaryDir dir;
        const QString ckpt = dir.filePath("ckpt");
        ModelConfig cfg = tiny_full_config();
        cfg.hidden_size = 32;
        const QString err = make_reference_case(dir, cfg, 7, 3, 12, 3);
        QVERIFY2(err.isEmpty(), qPrintable(err));

        const ModelConfig loaded = load_checkpoint_config(ckpt.toStdString());
        Model model(loaded, be_);
        load_model_weights(ckpt.toStdString(), model);
        compare(model, dir.filePath("batch.txt"), dir.filePath("ref.safetensors"));
    }

    // Sliding-window attention (window 4 over 12 tokens, MTP included) from a foreign
    // checkpoint whose config.json carries the window; the same weights without the window
    // must disagree with the reference, so the comparison cannot pass by ignoring the field.
    void slidingWindowFromForeignCheckpoint() {
        QTemporaryDir dir;
        const QString ckpt = dir.filePath("ckpt");
        ModelConfig cfg = tiny_full_config();
        cfg.hidden_size = 32;
        cfg.sliding_window = 4;
        const QString err = make_reference_case(dir, cfg, 8, 2, 12, 5);
        QVERIFY2(err.isEmpty(), qPrintable(err));

        const ModelConfig loaded = load_checkpoint_config(ckpt.toStdString());
        QCOMPARE(loaded.sliding_window, int64_t(4));
        Model model(loaded, be_);
        load_model_weights(ckpt.toStdString(), model);
        compare(model, dir.filePath("batch.txt"), dir.filePath("ref.safetensors"));

        ModelConfig full = loaded;
        full.sliding_window = 0;
        const double full_err =
            logits_error(full, ckpt, dir.filePath("batch.txt"), dir.filePath("ref.safetensors"));
        qInfo("full causal attention vs the windowed reference: %.2e (must be large)", full_err);
        QVERIFY(full_err > 100 * kLogitTolerance);
    }

    // Dynamic top-k sparse attention (4 of up to 12 keys, MTP included) from a foreign
    // checkpoint with the indexer's weights: logits, losses, the indexers' KL loss and every
    // gradient (the indexers' from their KL) against the reference. The same weights choosing
    // every key (index_topk = T) must disagree, so the comparison cannot pass by attending densely.
    void sparseAttentionFromForeignCheckpoint() {
        QTemporaryDir dir;
        const QString ckpt = dir.filePath("ckpt");
        ModelConfig cfg = tiny_full_config();
        cfg.hidden_size = 32;
        cfg.index_topk = 4;
        cfg.index_n_heads = 2;
        cfg.index_head_dim = cfg.qk_rope_head_dim + 6;
        const QString err = make_reference_case(dir, cfg, 9, 2, 12, 6);
        QVERIFY2(err.isEmpty(), qPrintable(err));

        const ModelConfig loaded = load_checkpoint_config(ckpt.toStdString());
        QCOMPARE(loaded.index_topk, int64_t(4));
        QCOMPARE(loaded.index_head_dim, cfg.index_head_dim);
        Model model(loaded, be_);
        load_model_weights(ckpt.toStdString(), model);
        compare(model, dir.filePath("batch.txt"), dir.filePath("ref.safetensors"));

        ModelConfig dense = loaded;
        dense.index_topk = 12;
        const double dense_err =
            logits_error(dense, ckpt, dir.filePath("batch.txt"), dir.filePath("ref.safetensors"));
        qInfo("every key chosen vs the top-4 reference: %.2e (must be large)", dense_err);
        QVERIFY(dense_err > 100 * kLogitTolerance);
    }

    // YaRN rope scaling (DeepSeek's definition) from a foreign checkpoint: an original context of
    // 8 stretched 8 times, beta_fast 4 / beta_slow 1 so the ramp falls inside the rotary pairs,
    // mscale 3 and mscale_all_dim 1 so both the cos/sin factor (1.34) and the softmax
    // temperature (1.46) differ from 1. Logits, losses and every gradient against the reference;
    // the same weights with plain RoPE must disagree, so the test cannot pass by ignoring
    // rope_scaling.
    void yarnRopeFromForeignCheckpoint() {
        QTemporaryDir dir;
        const QString ckpt = dir.filePath("ckpt");
        ModelConfig cfg = tiny_full_config();
        cfg.hidden_size = 32;
        cfg.max_position_embeddings = 64;
        cfg.rope_scaling.yarn = true;
        cfg.rope_scaling.factor = 8.0;
        cfg.rope_scaling.original_max_position_embeddings = 8;
        cfg.rope_scaling.beta_fast = 4.0;
        cfg.rope_scaling.beta_slow = 1.0;
        cfg.qk_rope_head_dim = 8;  // more rotary pairs, so the ramp has an inside
        cfg.rope_scaling.mscale = 3.0;
        cfg.rope_scaling.mscale_all_dim = 1.0;
        cfg.validate();
        const QString err = make_reference_case(dir, cfg, 11, 2, 14, 6);
        QVERIFY2(err.isEmpty(), qPrintable(err));

        const ModelConfig loaded = load_checkpoint_config(ckpt.toStdString());
        QVERIFY(loaded.rope_scaling == cfg.rope_scaling);
        Model model(loaded, be_);
        load_model_weights(ckpt.toStdString(), model);
        compare(model, dir.filePath("batch.txt"), dir.filePath("ref.safetensors"));

        ModelConfig plain = loaded;
        plain.rope_scaling = RopeScaling{};
        const double plain_err =
            logits_error(plain, ckpt, dir.filePath("batch.txt"), dir.filePath("ref.safetensors"));
        qInfo("plain RoPE vs the YaRN reference: %.2e (must be large)", plain_err);
        QVERIFY(plain_err > 100 * kLogitTolerance);
    }

    // The V2-style variant (with the batch-wise balance loss), from a checkpoint the engine wrote.
    void softmaxNoQLoraNoMtpFromEngineCheckpoint() {
        QTemporaryDir dir;
        const QString ckpt = dir.filePath("ckpt");
        ModelConfig cfg = tiny_softmax_config();
        cfg.aux_loss_alpha = 0.003;
        cfg.seq_aux = false;  // the batch-wise balance loss, checked here too
        Model model(cfg, be_);
        model.init_weights(42);
        spread_router(model, 5);
        save_model_checkpoint(ckpt.toStdString(), model);
        QString err;
        QVERIFY2(run_reference({"make-batch", "--vocab", "32", "--batch", "2", "--seq", "16",
                                "--seed", "4", "--out", dir.filePath("batch.txt")},
                               &err),
                 qPrintable(err));
        QVERIFY2(
            run_reference({"forward", "--checkpoint", ckpt, "--batch", dir.filePath("batch.txt"),
                           "--out", dir.filePath("ref.safetensors")},
                          &err),
            qPrintable(err));
        compare(model, dir.filePath("batch.txt"), dir.filePath("ref.safetensors"));
    }

    // `moe-train --logits` on a foreign checkpoint against the reference's logits.
    void logitsCommand() {
        QTemporaryDir dir;
        const QString cfg_path = dir.filePath("config.json"), ckpt = dir.filePath("ckpt");
        tiny_full_config().save(cfg_path.toStdString());
        QString err;
        QVERIFY2(run_reference(
                     {"make-checkpoint", "--config", cfg_path, "--seed", "9", "--out", ckpt}, &err),
                 qPrintable(err));
        QVERIFY2(run_reference({"make-batch", "--vocab", "32", "--batch", "5", "--seq", "9",
                                "--seed", "1", "--out", dir.filePath("tokens.txt")},
                               &err),
                 qPrintable(err));
        QVERIFY2(
            run_reference({"logits", "--checkpoint", ckpt, "--tokens", dir.filePath("tokens.txt"),
                           "--out", dir.filePath("ref.safetensors")},
                          &err),
            qPrintable(err));
        QProcess p;
        p.start(QStringLiteral(MOE_TRAIN_EXE),
                {"--logits", ckpt, "--tokens", dir.filePath("tokens.txt"), "--out",
                 dir.filePath("engine.safetensors"), "--batch-rows", "2"});
        QVERIFY(p.waitForFinished(120000));
        QVERIFY2(p.exitCode() == 0, p.readAllStandardError().constData());
        const Tensor a =
            SafetensorsReader(dir.filePath("engine.safetensors").toStdString()).read_f32("logits");
        const Tensor b =
            SafetensorsReader(dir.filePath("ref.safetensors").toStdString()).read_f32("logits");
        QCOMPARE(a.shape(), b.shape());
        QCOMPARE(a.shape(), (Shape{5, 10, 32}));
        const double e = scaled_max_error(a.data(), b.data(), a.numel());
        qInfo("moe-train --logits vs reference: %.2e", e);
        QVERIFY(e < kLogitTolerance);
    }
};

QTEST_APPLESS_MAIN(TestReference)
#include "tst_reference.moc"
