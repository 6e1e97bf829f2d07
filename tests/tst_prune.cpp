// Pruning (engine/prune): expert importance and expert pruning with groups kept equal, channel
// saliency against finite differences, channel pruning, and the checkpoints they write read back
// by the engine's loader.
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "prune/channel_pruning.h"
#include "prune/channel_saliency.h"
#include "prune/expert_importance.h"
#include "prune/expert_pruning.h"
#include "prune/pruning_report.h"
#include "store/model_checkpoint.h"
#include "store/project.h"
#include "store/safetensors.h"
#include "test_support.h"

using namespace moe;

namespace {

std::vector<Batch> batches(const ModelConfig& c, int n, uint64_t seed, int64_t B = 2,
                           int64_t T = 8) {
    std::vector<Batch> out;
    for (int i = 0; i < n; ++i) out.push_back(test::random_batch(c.vocab_size, B, T, seed + i));
    return out;
}

// Logits of the inference forward over a batch's inputs.
std::vector<float> logits_of(Model& m, const Batch& b) {
    std::vector<int32_t> in;
    for (int64_t s = 0; s < b.batch; ++s)
        for (int64_t t = 0; t < b.seq_len; ++t) in.push_back(b.tokens[s * (b.seq_len + 1) + t]);
    m.forward_logits(in.data(), b.batch, b.seq_len);
    return m.logits().to_host();
}

QString error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return QString::fromStdString(e.what());
    }
    return {};
}

// Sets channel c of an FFN to zero: gate_proj and up_proj row c, down_proj column c.
void zero_channel(Model& m, const std::string& prefix, int64_t c) {
    for (const char* n : {"gate_proj.weight", "up_proj.weight"}) {
        Parameter& p = m.parameters().at(prefix + n);
        std::vector<float> v = p.value.to_host();
        for (int64_t d = 0; d < p.value.dim(1); ++d) v[c * p.value.dim(1) + d] = 0.0f;
        p.value.copy_from_host(v.data());
    }
    Parameter& p = m.parameters().at(prefix + "down_proj.weight");
    std::vector<float> v = p.value.to_host();
    for (int64_t d = 0; d < p.value.dim(0); ++d) v[d * p.value.dim(1) + c] = 0.0f;
    p.value.copy_from_host(v.data());
}

struct Run {
    int code = -1;
    QString output;
};

Run moe_prune(const QStringList& args) {
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(MOE_PRUNE_EXE, args);
    p.waitForFinished(120000);
    return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1,
            QString::fromUtf8(p.readAll())};
}

}  // namespace

class TestPrune : public QObject {
    Q_OBJECT
private slots:
    // The pruned checkpoint loads with the engine's loader, and computes what the original
    // computes with the removed experts masked for selection (tokens re-routed to the next best).
    void prunedCheckpointEqualsMaskedModel() {
        CpuBackend be(2);
        const ModelConfig cfg = test::tiny_full_config();  // 8 experts in 2 groups, MTP layer too
        Model m(cfg, be);
        m.init_weights(11);
        test::spread_router(m, 3);
        const std::vector<Batch> val = batches(cfg, 3, 100);
        const ExpertImportance imp = measure_expert_importance(m, val, 0.3, true);
        QCOMPARE(imp.layers.size(), size_t(2));  // layer 1 and the MTP layer 2
        const ExpertPrunePlan plan =
            plan_expert_pruning(cfg, imp, ExpertCriterion::MaskedLoss, 0.25, false);
        QCOMPARE(plan.config.n_routed_experts, int64_t(6));
        QVERIFY(plan.notes.empty());
        std::unique_ptr<Model> pruned = prune_experts(m, plan, be);

        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("pruned").toStdString();
        save_model_checkpoint(dir, *pruned);
        const ModelConfig loaded_cfg = load_checkpoint_config(dir);
        QVERIFY(loaded_cfg == plan.config);
        Model loaded(loaded_cfg, be);
        load_model_weights(dir, loaded);

        std::vector<std::vector<float>> bias;
        for (size_t l = 0; l < plan.layers.size(); ++l)
            bias.push_back(mask_experts(m, plan.layers[l], plan.removed[l]));
        const Batch test_batch = test::random_batch(cfg.vocab_size, 2, 12, 777);
        const std::vector<float> want = logits_of(m, test_batch),
                                 got = logits_of(loaded, test_batch);
        QCOMPARE(got.size(), want.size());
        QVERIFY2(
            test::max_relative_error(got.data(), want.data(), int64_t(got.size()), 1e-3) < 1e-4,
            "pruned logits differ from the masked model's");
        // The MTP layer's experts were pruned consistently too: the training objective agrees.
        const double masked_obj = objective_loss(m, {test_batch}, 0.3);
        const double pruned_obj = objective_loss(loaded, {test_batch}, 0.3);
        QVERIFY(std::abs(masked_obj - pruned_obj) < 1e-5 * std::abs(masked_obj));
        // Masking really changes the model (the comparison above is not trivially true).
        for (size_t l = 0; l < plan.layers.size(); ++l) restore_bias(m, plan.layers[l], bias[l]);
        QVERIFY(std::abs(objective_loss(m, {test_batch}, 0.3) - pruned_obj) > 1e-4);
    }

    // An expert nobody selects has zero load, zero gate mass and a masked loss of exactly zero,
    // and every criterion removes it first.
    void unusedExpertRanksLowest() {
        CpuBackend be(2);
        ModelConfig cfg = test::tiny_full_config();
        cfg.num_nextn_predict_layers = 0;
        Model m(cfg, be);
        m.init_weights(5);
        test::spread_router(m, 9);
        mask_experts(m, 1, {6});  // expert 6 of layer 1 never chosen
        const std::vector<Batch> val = batches(cfg, 2, 40);
        const ExpertImportance imp = measure_expert_importance(m, val, 0.3, true);
        const LayerExpertImportance& l = imp.layers.at(0);
        QCOMPARE(l.load[6], 0.0);
        QCOMPARE(l.gate_mass[6], 0.0);
        QCOMPARE(l.masked_loss[6], 0.0);
        double load_sum = 0.0, mass_sum = 0.0;
        for (int e = 0; e < 8; ++e) {
            load_sum += l.load[e];
            mass_sum += l.gate_mass[e];
        }
        QVERIFY(std::abs(load_sum - 1.0) < 1e-12 && std::abs(mass_sum - 1.0) < 1e-12);
        // Some used expert matters: its removal changes the loss.
        double most = 0.0;
        for (double x : l.masked_loss) most = std::max(most, std::abs(x));
        QVERIFY(most > 1e-5);
        for (ExpertCriterion c : {ExpertCriterion::Load, ExpertCriterion::GateMass}) {
            const ExpertPrunePlan plan = plan_expert_pruning(cfg, imp, c, 0.25, false);
            QVERIFY(std::find(plan.removed[0].begin(), plan.removed[0].end(), 6) !=
                    plan.removed[0].end());
        }
    }

    // Each group loses the same number of experts; topk_group rises when the groups left cannot
    // reach top_k; --ungroup ranks a layer's experts together.
    void groupsStayConsistent() {
        CpuBackend be(1);
        ModelConfig cfg = test::tiny_full_config();
        cfg.num_experts_per_tok = 3;  // topk_group 1 x 4 experts per group
        Model m(cfg, be);
        m.init_weights(2);
        test::spread_router(m, 1);
        const ExpertImportance imp = measure_expert_importance(m, batches(cfg, 2, 9), 0.3, false);
        const ExpertPrunePlan half =
            plan_expert_pruning(cfg, imp, ExpertCriterion::GateMass, 0.5, false);
        for (const std::vector<int64_t>& removed : half.removed) {
            QCOMPARE(removed.size(), size_t(4));
            QCOMPARE(std::count_if(removed.begin(), removed.end(), [](int64_t e) { return e < 4; }),
                     2);
        }
        QCOMPARE(half.config.n_routed_experts, int64_t(4));
        QCOMPARE(half.config.n_group, int64_t(2));
        QCOMPARE(half.config.topk_group, int64_t(2));  // 1 group of 2 cannot give 3 experts
        QCOMPARE(half.notes.size(), size_t(1));
        half.config.validate();
        std::unique_ptr<Model> pruned = prune_experts(m, half, be);
        QVERIFY(std::isfinite(objective_loss(*pruned, batches(cfg, 1, 3), 0.3)));

        const ExpertPrunePlan flat =
            plan_expert_pruning(cfg, imp, ExpertCriterion::Load, 0.125, true);
        QCOMPARE(flat.config.n_group, int64_t(1));
        QCOMPARE(flat.config.topk_group, int64_t(1));
        QCOMPARE(flat.config.n_routed_experts, int64_t(7));
        // The lowest-load expert of the whole layer goes.
        const std::vector<double>& load = imp.layers[0].load;
        const int64_t lowest = std::min_element(load.begin(), load.end()) - load.begin();
        QCOMPARE(flat.removed[0].at(0), lowest);

        const nlohmann::json j = expert_pruning_json(imp, half);
        QCOMPARE(j["kind"].get<std::string>(), std::string("experts"));
        QCOMPARE(j["layers"].size(), size_t(2));
        QCOMPARE(j["layers"][0]["removed"].size(), size_t(4));
    }

    // Channel pruning by a fraction of 0 is the identity: same config, same outputs.
    void zeroChannelsIsIdentity() {
        CpuBackend be(2);
        const ModelConfig cfg = test::tiny_full_config();
        Model m(cfg, be);
        m.init_weights(4);
        test::spread_router(m, 4);
        const ChannelSaliency s = measure_channel_saliency(m, batches(cfg, 1, 5), 0.3);
        const ChannelPrunePlan plan = plan_channel_pruning(cfg, s, 0.0);
        QVERIFY(plan.config == cfg);
        std::unique_ptr<Model> p = prune_channels(m, plan, be);
        const Batch b = test::random_batch(cfg.vocab_size, 2, 8, 6);
        const std::vector<float> want = logits_of(m, b), got = logits_of(*p, b);
        QVERIFY(test::max_relative_error(got.data(), want.data(), int64_t(got.size()), 1e-3) <
                1e-6);
    }

    // Channels whose weights are zero have zero saliency, are the ones removed, and removing
    // them leaves the output unchanged; the checkpoint written reads back.
    void zeroWeightChannelsRemovedWithoutChange() {
        CpuBackend be(2);
        const ModelConfig cfg = test::tiny_full_config();  // F = 8, dense 24, 1 shared expert
        Model m(cfg, be);
        m.init_weights(8);
        test::spread_router(m, 8);
        ChannelSaliency s0 = empty_channel_saliency(m);
        // 8 routed x 2 MoE layers + 2 shared + 1 dense.
        QCOMPARE(s0.ffns.size(), size_t(19));
        for (const FfnSaliency& f : s0.ffns) {
            if (f.kind == FfnKind::Dense)
                for (int c : {0, 5, 9}) zero_channel(m, f.prefix, c);  // 0.125 x 24 = 3 channels
            else
                zero_channel(m, f.prefix, 0);
        }
        const ChannelSaliency s = measure_channel_saliency(m, batches(cfg, 2, 30), 0.3);
        const ChannelPrunePlan plan = plan_channel_pruning(cfg, s, 0.125);
        QCOMPARE(plan.config.moe_intermediate_size, int64_t(7));
        QCOMPARE(plan.config.intermediate_size, int64_t(21));
        for (size_t i = 0; i < s.ffns.size(); ++i) {
            const FfnSaliency& f = s.ffns[i];
            QCOMPARE(f.saliency[0], 0.0);
            if (f.kind == FfnKind::Dense)
                QCOMPARE(plan.removed[i], (std::vector<int64_t>{0, 5, 9}));
            else
                QCOMPARE(plan.removed[i], std::vector<int64_t>{0});
        }
        std::unique_ptr<Model> p = prune_channels(m, plan, be);
        QTemporaryDir tmp;
        const std::string dir = tmp.filePath("ch").toStdString();
        save_model_checkpoint(dir, *p);
        Model loaded(load_checkpoint_config(dir), be);
        load_model_weights(dir, loaded);
        const Batch b = test::random_batch(cfg.vocab_size, 2, 8, 16);
        const std::vector<float> want = logits_of(m, b), got = logits_of(loaded, b);
        // Float sums over 7 instead of 8 terms (x0 each): rounding only; a wrong channel is O(1).
        const double err =
            test::max_relative_error(got.data(), want.data(), int64_t(got.size()), 1e-3);
        QVERIFY2(err < 1e-4, qPrintable(QString("max relative error %1").arg(err)));
        const nlohmann::json j = channel_pruning_json(plan);
        QCOMPARE(j["ffns"].size(), size_t(19));
        QCOMPARE(j["expert_removed"].get<int64_t>(), int64_t(1));
    }

    // The saliency of a channel is sum |w dL/dw| over its weights, dL/dw measured here by
    // central differences of the training loss (dense FFN, a shared and a routed expert).
    void saliencyMatchesFiniteDifferences() {
        CpuBackend be(1);
        const ModelConfig cfg = test::tiny_full_config();
        Model m(cfg, be);
        m.init_weights(21);
        test::spread_router(m, 21);
        const std::vector<Batch> one = batches(cfg, 1, 50);
        const ChannelSaliency s = measure_channel_saliency(m, one, 0.3);
        ForwardOptions opt;
        opt.mtp_lambda = 0.3;
        auto total = [&] { return m.forward(one[0], opt).total; };
        int checked = 0;
        for (const FfnSaliency& f : s.ffns) {
            const bool pick = f.kind != FfnKind::Routed ||
                              (f.layer == 1 && f.expert >= 0 && checked < 3 && f.saliency[2] > 0.0);
            if (!pick) continue;
            const int64_t c = 2;
            double fd_sum = 0.0;
            for (const char* n : {"gate_proj.weight", "up_proj.weight", "down_proj.weight"}) {
                Parameter& p = m.parameters().at(f.prefix + n);
                const bool down = std::string(n) == "down_proj.weight";
                const int64_t cols = p.value.dim(1), count = down ? p.value.dim(0) : cols;
                for (int64_t k = 0; k < count; ++k) {
                    const int64_t i = down ? k * cols + c : c * cols + k;
                    const float w = p.value[i];
                    const float h = 1e-2f * std::max(std::abs(w), 0.05f);
                    p.value[i] = w + h;
                    const double up = total();
                    p.value[i] = w - h;
                    const double dn = total();
                    p.value[i] = w;
                    fd_sum += std::abs(double(w) * (up - dn) / (2.0 * double(h)));
                }
            }
            const double got = f.saliency[c];
            QVERIFY2(std::abs(got - fd_sum) < 0.03 * fd_sum + 1e-6,
                     qPrintable(QString("%1 channel %2: saliency %3, finite differences %4")
                                    .arg(QString::fromStdString(f.prefix))
                                    .arg(c)
                                    .arg(got)
                                    .arg(fd_sum)));
            if (f.kind == FfnKind::Routed) ++checked;
        }
        QCOMPARE(checked, 3);
    }

    // Bad arguments say what is wrong and what would do.
    void badArgumentsGiveClearErrors() {
        CpuBackend be(1);
        const ModelConfig cfg = test::tiny_full_config();
        Model m(cfg, be);
        m.init_weights(1);
        const std::vector<Batch> val = batches(cfg, 1, 2);
        const ExpertImportance imp = measure_expert_importance(m, val, 0.3, false);
        QVERIFY(error_of([&] {
                    plan_expert_pruning(cfg, imp, ExpertCriterion::Load, 1.0, false);
                }).contains("not in [0, 1)"));
        const QString uneven =
            error_of([&] { plan_expert_pruning(cfg, imp, ExpertCriterion::Load, 0.3, false); });
        QVERIFY2(uneven.contains("multiple of 1/4") && uneven.contains("0.25") &&
                     uneven.contains("--ungroup"),
                 qPrintable(uneven));
        QVERIFY(error_of([&] {
                    plan_expert_pruning(cfg, imp, ExpertCriterion::MaskedLoss, 0.25, false);
                }).contains("masked-loss"));
        // Two groups of 4 down to groups of 1: the bias-corrected group score needs two.
        QVERIFY(error_of([&] {
                    plan_expert_pruning(cfg, imp, ExpertCriterion::Load, 0.75, false);
                }).contains("one expert per group"));
        QVERIFY(error_of([] { parse_expert_criterion("loads"); }).contains("'loads'"));
        const ModelConfig soft = test::tiny_softmax_config();
        Model ms(soft, be);
        ms.init_weights(1);
        QVERIFY(
            error_of([&] { measure_expert_importance(ms, val, 0.3, true); }).contains("noaux_tc"));
        const ChannelSaliency s = empty_channel_saliency(m);
        QVERIFY(error_of([&] { plan_channel_pruning(cfg, s, -0.1); }).contains("fraction -0.1"));
        ModelConfig wider = cfg;
        wider.moe_intermediate_size = 16;
        QVERIFY(error_of([&] { plan_channel_pruning(wider, s, 0.5); }).contains("saliency values"));
    }
    // The pruned checkpoints in the HF layout read by an independent implementation: the PyTorch
    // reference (tests/reference/deepseek_v3_ref.py, float64) gives the engine's logits.
    void prunedCheckpointsLoadInTheReference() {
        CpuBackend be(2);
        const ModelConfig cfg = test::tiny_full_config();
        Model m(cfg, be);
        m.init_weights(31);
        test::spread_router(m, 31);
        const std::vector<Batch> val = batches(cfg, 1, 60);
        const ExpertPrunePlan ep =
            plan_expert_pruning(cfg, measure_expert_importance(m, val, 0.3, true),
                                ExpertCriterion::MaskedLoss, 0.25, false);
        const ChannelPrunePlan cp =
            plan_channel_pruning(cfg, measure_channel_saliency(m, val, 0.3), 0.25);
        QTemporaryDir tmp;
        const Batch b = test::random_batch(cfg.vocab_size, 2, 10, 61);
        QFile tokens(tmp.filePath("tokens.txt"));
        QVERIFY(tokens.open(QIODevice::WriteOnly));
        for (int64_t r = 0; r < b.batch; ++r) {
            QStringList line;
            for (int64_t t = 0; t < b.seq_len; ++t)
                line << QString::number(b.tokens[r * (b.seq_len + 1) + t]);
            tokens.write((line.join(' ') + "\n").toUtf8());
        }
        tokens.close();
        const std::pair<const char*, std::unique_ptr<Model>> cases[] = {
            {"experts", prune_experts(m, ep, be)}, {"channels", prune_channels(m, cp, be)}};
        for (const auto& [name, pruned] : cases) {
            const QString dir = tmp.filePath(name),
                          out = tmp.filePath(QString(name) + "-ref.safetensors");
            save_model_checkpoint(dir.toStdString(), *pruned);
            QProcess p;
            p.start(
                MOE_REFERENCE_PYTHON,
                {QString::fromStdString(test::source_path("tests/reference/deepseek_v3_ref.py")),
                 "logits", "--checkpoint", dir, "--tokens", tokens.fileName(), "--out", out});
            QVERIFY(p.waitForFinished(300000));
            QVERIFY2(p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0,
                     qPrintable(QString::fromUtf8(p.readAllStandardError())));
            const Tensor ref = SafetensorsReader(out.toStdString()).read_f32("logits");
            const std::vector<float> got = logits_of(*pruned, b);
            QCOMPARE(ref.numel(), int64_t(got.size()));
            // max |a - b| / max |b|, tst_reference's measure and tolerance (fp32 against float64).
            double diff = 0.0, top = 0.0;
            for (int64_t i = 0; i < ref.numel(); ++i) {
                diff = std::max(diff, std::abs(double(got[size_t(i)]) - double(ref[i])));
                top = std::max(top, std::abs(double(ref[i])));
            }
            QVERIFY2(
                diff < 1e-5 * top,
                qPrintable(
                    QString("%1: max |diff| %2, max |logit| %3").arg(name).arg(diff).arg(top)));
        }
    }

    // moe-prune end to end: a pruned checkpoint with its report and a fine-tune; an existing
    // --out is refused without --force; a bare checkpoint needs --project; bad fractions named.
    void commandLine() {
        QTemporaryDir tmp;
        const Project project = test::shrunk_tiny_tasks(2);
        CpuBackend be(1);
        Model m(project.model, be);
        m.init_weights(1);
        test::spread_router(m, 1);
        const QString ckpt = tmp.filePath("ckpt"), proj = tmp.filePath("p.json"),
                      out = tmp.filePath("out");
        save_model_checkpoint(ckpt.toStdString(), m);
        project.save(proj.toStdString());
        const QStringList common = {"--batches", "1", "--eval-batches", "1", "--threads", "1"};

        Run r = moe_prune(QStringList{ckpt, "--experts", "0.25", "--project", proj, "--out", out,
                                      "--finetune", "2"} +
                          common);
        QVERIFY2(r.code == 0, qPrintable(r.output));
        const ModelConfig pruned = load_checkpoint_config(out.toStdString());
        QCOMPARE(pruned.n_routed_experts, int64_t(6));
        std::ifstream f((out + "/pruning.json").toStdString());
        const nlohmann::json j = nlohmann::json::parse(f);
        QCOMPARE(j["kind"].get<std::string>(), std::string("experts"));
        QCOMPARE(j["criterion"].get<std::string>(), std::string("masked_loss"));
        QVERIFY(std::isfinite(j["summary"]["val_loss_finetuned"].get<double>()));
        QVERIFY(j["summary"]["after"]["total_params"].get<int64_t>() <
                j["summary"]["before"]["total_params"].get<int64_t>());
        QVERIFY(QFileInfo::exists(out + "/finetune.h5"));
        Model tuned(load_checkpoint_config((out + "/finetuned").toStdString()), be);
        load_model_weights((out + "/finetuned").toStdString(), tuned);

        r = moe_prune(QStringList{ckpt, "--channels", "0.5", "--project", proj, "--out", out} +
                      common);
        QCOMPARE(r.code, 1);
        QVERIFY2(r.output.contains("already exists") && r.output.contains("--force"),
                 qPrintable(r.output));
        QCOMPARE(load_checkpoint_config(out.toStdString()).n_routed_experts,
                 int64_t(6));  // untouched
        r = moe_prune(
            QStringList{ckpt, "--channels", "0.5", "--project", proj, "--out", out, "--force"} +
            common);
        QVERIFY2(r.code == 0, qPrintable(r.output));
        QCOMPARE(load_checkpoint_config(out.toStdString()).moe_intermediate_size,
                 project.model.moe_intermediate_size / 2);

        r = moe_prune(QStringList{ckpt, "--experts", "0.25", "--out", tmp.filePath("x")} + common);
        QCOMPARE(r.code, 1);
        QVERIFY2(r.output.contains("trainer_state.json") && r.output.contains("--project"),
                 qPrintable(r.output));
        r = moe_prune(QStringList{ckpt, "--experts", "0.3", "--project", proj, "--report"} +
                      common);
        QVERIFY2(r.code == 1 && r.output.contains("multiple of 1/4"), qPrintable(r.output));
        r = moe_prune(QStringList{ckpt, "--experts", "0.25", "--channels", "0.5", "--report"} +
                      common);
        QVERIFY2(r.code == 1 && r.output.contains("one of --experts"), qPrintable(r.output));
        QVERIFY(!QFileInfo::exists(tmp.filePath("x")) && !QFileInfo::exists(tmp.filePath("x.tmp")));
    }
};

QTEST_APPLESS_MAIN(TestPrune)
#include "tst_prune.moc"
