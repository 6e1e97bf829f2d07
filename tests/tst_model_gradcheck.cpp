// Finite-difference checks of every layer type's backward pass and of the whole model.
// For each parameter tensor (and each layer's input) the analytic directional derivative
// g.v along a random direction v is compared with the central difference
// (L(theta + h v) - L(theta - h v)) / 2h. Routing is discrete: a perturbation that changes any
// top-k choice is retried with a smaller step, so the check never straddles a jump.
#include <QtTest>

#include <cmath>
#include <functional>
#include <memory>

#include "backend/cpu/cpu_backend.h"
#include "model/mla_attention.h"
#include "model/model.h"
#include "model/moe_layer.h"
#include "model/mtp_module.h"
#include "model/swiglu_ffn.h"
#include "model/transformer_block.h"
#include "model_fixtures.h"
#include "test_support.h"

using namespace moe;
using namespace moe::test;

namespace {

struct Target {
    std::string name;
    float* value;
    const float* grad;
    int64_t n;
};

struct CheckResult {
    double worst = 0.0;       // largest error / allowed error over the checked tensors (< 1 passes)
    double worst_rel = 0.0;   // largest |numeric - analytic| / max(|analytic|, |numeric|)
    std::string worst_name;
    int checked = 0;
    int insensitive = 0;      // tensors whose float noise would hide a 10% gradient error
};

// Relative error allowed on top of the measured float noise (truncation error of the central
// difference and what noise the estimate misses).
constexpr double kTolerance = 2e-2;

// The check measures the gradient's error, not float32 noise. The loss is a float32 forward
// pass, so L(theta + s v) carries rounding noise that differs between CPUs (OpenBLAS kernels).
// Its size is measured where the central difference evaluates the loss: the second
// differences of L at spacing h/64 around theta + h v and theta - h v cancel the function's
// slope, and its curvature is far below float noise at that spacing, so what remains is noise.
// The numeric derivative (L+ - L-) / 2h is then trusted to within kNoiseFactor * noise / h,
// and a tensor passes when |numeric - analytic| <= kTolerance * max(|a|, |n|) + that bound.
constexpr double kNoiseFactor = 4.0;

double loss_noise(const std::function<double()>& loss, const std::function<void(double)>& set,
                  double s, double spacing) {
    double l[5];
    for (int j = 0; j < 5; ++j) {
        set(s + (j - 2) * spacing);
        l[j] = loss();
    }
    double worst = 0.0;
    for (int j = 1; j < 4; ++j) worst = std::max(worst, std::fabs(l[j - 1] - 2 * l[j] + l[j + 1]));
    return worst / 2;  // a second difference of independent noise is ~2.4x its spread
}

// loss(): runs the forward pass and returns the scalar; routing(): a signature of the discrete
// choices (empty when there are none).
CheckResult directional_check(const std::function<double()>& loss,
                              const std::function<std::vector<int32_t>()>& routing,
                              const std::vector<Target>& targets, double tolerance,
                              uint64_t seed) {
    CheckResult r;
    const std::vector<int32_t> base_routing = routing();
    for (const Target& t : targets) {
        // A unit direction: the step h then moves the parameters by h in L2 norm, whatever
        // the tensor's size, which keeps the O(h^2) truncation error small. Half random, half
        // along the analytic gradient: the random half sees an error in any direction, the
        // gradient half makes the derivative large (|g| / sqrt 2 instead of ~|g| / sqrt n for a
        // random direction), so it stands far above the loss's float noise.
        std::vector<float> v = random_vector(t.n, seed++, 1.0f);
        double rnorm = 0.0, gnorm = 0.0;
        for (float x : v) rnorm += double(x) * x;
        for (int64_t i = 0; i < t.n; ++i) gnorm += double(t.grad[i]) * t.grad[i];
        rnorm = std::sqrt(rnorm);
        gnorm = std::sqrt(gnorm);
        double norm = 0.0;
        for (int64_t i = 0; i < t.n; ++i) {
            v[i] = static_cast<float>(v[i] / rnorm + (gnorm > 0 ? t.grad[i] / gnorm : 0.0));
            norm += double(v[i]) * v[i];
        }
        for (float& x : v) x = static_cast<float>(x / std::sqrt(norm));
        std::vector<float> saved(t.value, t.value + t.n);
        double analytic = 0.0;
        for (int64_t i = 0; i < t.n; ++i) analytic += double(t.grad[i]) * v[i];
        auto set = [&](double s) {
            for (int64_t i = 0; i < t.n; ++i) t.value[i] = saved[i] + float(s) * v[i];
        };

        double numeric = NAN, step = 0.0, noise = 0.0;
        for (double h = 1e-2; h >= 1e-4; h /= 4) {
            auto eval = [&](double s) {
                set(s);
                const double l = loss();
                return std::make_pair(l, routing() == base_routing);
            };
            auto [lp, same_p] = eval(+h);
            auto [lm, same_m] = eval(-h);
            if (same_p && same_m) {
                numeric = (lp - lm) / (2 * h);
                step = h;
                noise = std::max(loss_noise(loss, set, h, h / 64), loss_noise(loss, set, -h, h / 64));
                break;
            }
        }
        std::copy(saved.begin(), saved.end(), t.value);
        loss();  // restore forward state at the unperturbed point
        if (std::isnan(numeric)) {
            qInfo("  %-60s skipped: routing flips even at h = 1e-4", t.name.c_str());
            continue;
        }
        const double scale = std::max(std::fabs(analytic), std::fabs(numeric));
        const double noise_bound = kNoiseFactor * noise / step;
        const double allowed = tolerance * scale + noise_bound;
        const double err = std::fabs(numeric - analytic);
        ++r.checked;
        // A 10% error in this tensor's gradient would exceed what is allowed: the check sees it.
        // (An expert that received no token has an exactly zero gradient and loss slope.)
        const bool exact_zero = analytic == 0.0 && numeric == 0.0;
        if (!exact_zero && 0.1 * std::fabs(analytic) <= allowed) {
            ++r.insensitive;
            qInfo("  %-60s derivative %.3e is within float noise (bound %.1e): a 10%% error "
                  "would pass", t.name.c_str(), analytic, noise_bound);
        }
        const double score = allowed > 0 ? err / allowed : (err > 0 ? INFINITY : 0.0);
        r.worst_rel = std::max(r.worst_rel, scale > 0 ? err / scale : 0.0);
        if (score > r.worst) {
            r.worst = score;
            r.worst_name = t.name;
        }
        if (score > 1.0)
            qWarning("  %-60s analytic %.6e numeric %.6e rel err %.2e, noise bound %.1e",
                     t.name.c_str(), analytic, numeric, err / scale, noise_bound);
    }
    return r;
}

std::vector<Target> param_targets(ParameterStore& store) {
    std::vector<Target> out;
    for (Parameter* p : store.all())
        if (p->trainable) out.push_back({p->name, p->value.data(), p->grad.data(), p->value.numel()});
    return out;
}

std::vector<int32_t> signature(const RoutingRecord& r) { return r.topk_idx; }

// The sparse attention indexers' weights learn from their own loss (detached from the model):
// they are checked against the indexer loss, every other parameter against the model's loss.
bool is_indexer(const Target& t) { return t.name.find(".indexer.") != std::string::npos; }
std::vector<Target> only(std::vector<Target> all, bool indexer) {
    std::erase_if(all, [&](const Target& t) { return is_indexer(t) != indexer; });
    return all;
}

}  // namespace

// The CPU backend steering the model onto Backend::fused_attention_* (as a GPU backend does).
class FusedAttentionCpu final : public CpuBackend {
public:
    using CpuBackend::CpuBackend;
    bool prefers_fused_attention() const override { return true; }
};

class TestModelGradcheck : public QObject {
    Q_OBJECT

private:
    CpuBackend be_{2};
    FusedAttentionCpu fused_be_{2};
    const int64_t B_ = 2, T_ = 6;

    std::vector<int32_t> positions() const {
        std::vector<int32_t> p(static_cast<size_t>(B_ * T_));
        for (int64_t i = 0; i < B_ * T_; ++i) p[i] = static_cast<int32_t>(i % T_);
        return p;
    }

    void report(const char* what, const CheckResult& r) {
        qInfo("%s: %d tensors checked, worst relative error %.3e, worst error / allowed %.3f "
              "(%s); %d within float noise",
              what, r.checked, r.worst_rel, r.worst, r.worst_name.c_str(), r.insensitive);
        QVERIFY2(r.checked > 0, "nothing was checked");
        QVERIFY2(r.worst < 1.0, qPrintable(QString("error %1x the allowed in %2")
                                                .arg(r.worst)
                                                .arg(QString::fromStdString(r.worst_name))));
        // Most tensors must be checked above the noise, or the check proves little.
        QVERIFY2(r.insensitive * 10 <= r.checked,
                 qPrintable(QString("%1 of %2 tensors within float noise")
                                .arg(r.insensitive)
                                .arg(r.checked)));
    }

    // A layer-level check: out = layer(x); L = sum(out * R) (+ extra loss).
    template <class Forward, class Backward>
    void check_layer(const char* what, ParameterStore& store, int64_t in_dim, int64_t out_dim,
                     Forward forward, Backward backward,
                     std::function<std::vector<int32_t>()> routing = [] { return std::vector<int32_t>{}; }) {
        const int64_t n = B_ * T_;
        std::vector<float> x = random_vector(n * in_dim, 11, 1.0f);
        std::vector<float> R = random_vector(n * out_dim, 12, 1.0f);
        std::vector<float> out(static_cast<size_t>(n * out_dim));
        auto loss = [&]() {
            const double extra = forward(x.data(), out.data());
            double l = extra;
            for (int64_t i = 0; i < n * out_dim; ++i) l += double(out[i]) * R[i];
            return l;
        };
        loss();
        store.zero_grads();
        std::vector<float> dx(static_cast<size_t>(n * in_dim), 0.0f);
        backward(R.data(), dx.data());
        std::vector<Target> targets = param_targets(store);
        targets.push_back({"input", x.data(), dx.data(), n * in_dim});
        report(what, directional_check(loss, routing, targets, kTolerance, 100));
    }

private slots:
    void swigluFfn() {
        ParameterStore store;
        SwiGluFfn ffn(store, "mlp", 16, 24);
        for (Parameter* p : store.all()) fill_uniform(p->value.data(), p->value.numel(), 3, 0.3f);
        check_layer("SwiGLU FFN", store, 16, 16,
                    [&](const float* x, float* y) { ffn.forward(be_, x, B_ * T_, y); return 0.0; },
                    [&](const float* dy, float* dx) { ffn.backward(be_, dy, dx); });
    }

    void mlaWithQLora() { mla(tiny_full_config()); }
    void mlaWithoutQLora() { mla(tiny_softmax_config()); }
    // T = 6 with a window of 3: positions 3..5 lose keys, so the band mask is exercised.
    void mlaSlidingWindow() {
        ModelConfig cfg = tiny_full_config();
        cfg.sliding_window = 3;
        mla(cfg, "MLA (sliding window 3)");
    }

    // The fused (flash-style) attention path, with and without a window.
    void mlaFusedAttention() {
        ModelConfig cfg = tiny_full_config();
        mla(cfg, "MLA (fused attention)", &fused_be_);
        cfg.sliding_window = 3;
        mla(cfg, "MLA (fused attention, sliding window 3)", &fused_be_);
    }

    // Dynamic top-k sparse attention (index_topk 3 of up to 6 causal keys): the model's
    // parameters and input against the attention output, the indexer's weights against the
    // indexer's KL loss; the chosen keys are the discrete choice the check must not straddle.
    // Then the dense warm-up, where the indexer learns from every causal key.
    void mlaSparseAttention() {
        for (bool warmup : {false, true}) {
            ModelConfig cfg = tiny_full_config();
            cfg.index_topk = 3;
            cfg.index_n_heads = 2;
            cfg.index_head_dim = cfg.qk_rope_head_dim + 4;
            ParameterStore store;
            MlaAttention attn(store, "self_attn", cfg);
            attn.set_index_warmup(warmup);
            uint64_t seed = 5;
            for (Parameter* p : store.all())
                if (p->value.rank() == 1)
                    for (int64_t i = 0; i < p->value.numel(); ++i) p->value[i] = 1.0f + 0.1f * float(i % 3);
                else
                    fill_uniform(p->value.data(), p->value.numel(), seed++, 0.4f);
            const auto pos = positions();
            const int64_t n = B_ * T_, D = cfg.hidden_size;
            std::vector<float> x = random_vector(n * D, 11, 1.0f), R = random_vector(n * D, 12, 1.0f);
            std::vector<float> out(size_t(n * D)), dx(size_t(n * D), 0.0f);
            auto main_loss = [&] {
                attn.forward(be_, x.data(), B_, T_, pos.data(), out.data());
                double l = 0;
                for (int64_t i = 0; i < n * D; ++i) l += double(out[i]) * R[i];
                return l;
            };
            auto index_loss = [&] {
                attn.forward(be_, x.data(), B_, T_, pos.data(), out.data());
                return attn.indexer_loss();
            };
            auto chosen = [&] { return attn.selected_keys(); };
            main_loss();
            QCOMPARE(attn.selected_keys().empty(), warmup);
            QVERIFY(attn.indexer_loss() > 0.0);
            store.zero_grads();
            attn.backward(be_, R.data(), dx.data());
            std::vector<Target> model_targets = only(param_targets(store), false);
            model_targets.push_back({"input", x.data(), dx.data(), n * D});
            const std::vector<Target> index_targets = only(param_targets(store), true);
            QCOMPARE(int(index_targets.size()), 3);
            report(warmup ? "MLA, sparse attention's dense warm-up" : "MLA, top-3 sparse attention",
                   directional_check(main_loss, chosen, model_targets, kTolerance, 100));
            report(warmup ? "indexer (dense warm-up) vs its KL loss" : "indexer vs its KL loss",
                   directional_check(index_loss, chosen, index_targets, kTolerance, 200));
        }
    }

    // index_topk >= T chooses every causal key: the same output as dense MLA with the same
    // weights.
    void sparseAttentionWithAllKeysIsDense() {
        ModelConfig dense_cfg = tiny_full_config(), sparse_cfg = dense_cfg;
        sparse_cfg.index_topk = T_;
        ParameterStore ds, ss;
        MlaAttention dense(ds, "self_attn", dense_cfg), sparse(ss, "self_attn", sparse_cfg);
        uint64_t seed = 9;
        for (Parameter* p : ss.all()) fill_uniform(p->value.data(), p->value.numel(), seed++, 0.4f);
        for (Parameter* p : ds.all()) p->value.copy_from(ss.at(p->name).value);
        const auto pos = positions();
        const int64_t n = B_ * T_, D = dense_cfg.hidden_size;
        const std::vector<float> x = random_vector(n * D, 21, 1.0f);
        std::vector<float> a(size_t(n * D)), b(size_t(n * D));
        dense.forward(be_, x.data(), B_, T_, pos.data(), a.data());
        sparse.forward(be_, x.data(), B_, T_, pos.data(), b.data());
        const double err = max_relative_error(b.data(), a.data(), n * D, 1e-3);
        qInfo("top-%lld of %lld keys vs dense MLA: worst relative difference %.2e", (long long)T_,
              (long long)T_, err);
        QVERIFY(err < 1e-4);
    }

    void mla(const ModelConfig& cfg, const char* name = nullptr, Backend* be = nullptr) {
        if (!be) be = &be_;
        ParameterStore store;
        MlaAttention attn(store, "self_attn", cfg);
        uint64_t s = 5;
        for (Parameter* p : store.all())
            if (p->value.rank() == 1)
                for (int64_t i = 0; i < p->value.numel(); ++i) p->value[i] = 1.0f + 0.1f * float(i % 3);
            else
                fill_uniform(p->value.data(), p->value.numel(), s++, 0.4f);
        const auto pos = positions();
        if (!name) name = cfg.q_lora_rank ? "MLA (q low-rank)" : "MLA (plain q_proj)";
        check_layer(name, store,
                    cfg.hidden_size, cfg.hidden_size,
                    [&](const float* x, float* y) {
                        attn.forward(*be, x, B_, T_, pos.data(), y);
                        return 0.0;
                    },
                    [&](const float* dy, float* dx) { attn.backward(*be, dy, dx); });
    }

    void moeSigmoidGroupLimited() { moe_layer(tiny_full_config()); }
    void moeSoftmax() { moe_layer(tiny_softmax_config()); }
    // seq_aux = false: the balance loss over the whole batch as one sequence. A large alpha
    // makes the loss's gradient a visible part of the gate weight's: a backward using the
    // per-sequence shape against the batch-wise forward measures 2e-1 here, not < 2e-2.
    void moeBatchWiseAux() {
        ModelConfig cfg = tiny_full_config();
        cfg.seq_aux = false;
        cfg.aux_loss_alpha = 20.0;
        moe_layer(cfg);
    }

    void moe_layer(const ModelConfig& cfg) {
        ParameterStore store;
        MoeLayer layer(store, "mlp", 1, cfg);
        uint64_t s = 7;
        for (Parameter* p : store.all()) fill_uniform(p->value.data(), p->value.numel(), s++, 0.5f);
        if (cfg.has_selection_bias()) fill_uniform(layer.bias().value.data(), cfg.n_routed_experts, 99, 0.05f);
        RoutingRecord rec;
        const char* what = cfg.scoring_func != "sigmoid" ? "MoE (softmax)"
                           : cfg.seq_aux ? "MoE (sigmoid, groups, bias, aux loss)"
                                         : "MoE (sigmoid, groups, bias, batch-wise aux loss)";
        check_layer(what,
                    store, cfg.hidden_size, cfg.hidden_size,
                    [&](const float* x, float* y) { return layer.forward(be_, x, B_, T_, &rec, y); },
                    [&](const float* dy, float* dx) { layer.backward(be_, dy, dx); },
                    [&] { return signature(rec); });
    }

    void transformerBlockDense() { block(0); }
    void transformerBlockMoe() { block(1); }

    void block(int64_t layer_index) {
        const ModelConfig cfg = tiny_full_config();
        ParameterStore store;
        TransformerBlock blk(store, "model.layers." + std::to_string(layer_index), layer_index, cfg);
        uint64_t s = 21;
        for (Parameter* p : store.all())
            if (!p->trainable) fill_uniform(p->value.data(), p->value.numel(), 98, 0.05f);
            else if (p->value.rank() == 1) p->value.fill(1.1f);
            else fill_uniform(p->value.data(), p->value.numel(), s++, 0.4f);
        const auto pos = positions();
        RoutingRecord rec;
        check_layer(layer_index ? "Block (MLA + MoE)" : "Block (MLA + dense)", store,
                    cfg.hidden_size, cfg.hidden_size,
                    [&](const float* x, float* y) {
                        const double aux = blk.forward(be_, x, B_, T_, pos.data(), &rec);
                        std::copy(blk.output().data(), blk.output().data() + blk.output().numel(), y);
                        return aux;
                    },
                    [&](const float* dy, float* dx) { blk.backward(be_, dy, dx); },
                    [&] { return signature(rec); });
    }

    void mtpModule() {
        const ModelConfig cfg = tiny_full_config();
        ParameterStore store;
        MtpModule m(store, cfg.num_hidden_layers, cfg);
        uint64_t s = 31;
        for (Parameter* p : store.all())
            if (!p->trainable) fill_uniform(p->value.data(), p->value.numel(), 97, 0.05f);
            else if (p->value.rank() == 1) p->value.fill(0.9f);
            else fill_uniform(p->value.data(), p->value.numel(), s++, 0.4f);
        const int64_t n = B_ * T_, D = cfg.hidden_size;
        const auto pos = positions();
        std::vector<float> emb = random_vector(n * D, 41, 1.0f);
        std::vector<float> R2 = random_vector(n * D, 42, 1.0f);
        RoutingRecord rec;
        // Input x is h_prev; the embedding is checked as a second input. Loss uses both the
        // normalized head input (R) and the block output (R2, as the next module would).
        std::vector<float> d_emb(static_cast<size_t>(n * D), 0.0f);
        check_layer("MTP module", store, D, D,
                    [&](const float* x, float* y) {
                        const double aux = m.forward(be_, emb.data(), x, B_, T_, pos.data(), &rec);
                        std::copy(m.normed().data(), m.normed().data() + n * D, y);
                        double extra = aux;
                        for (int64_t i = 0; i < n * D; ++i) extra += double(m.output()[i]) * R2[i];
                        return extra;
                    },
                    [&](const float* dy, float* dx) { m.backward(be_, dy, R2.data(), d_emb.data(), dx); },
                    [&] { return signature(rec); });
    }

    void wholeModel_data() {
        QTest::addColumn<int>("variant");
        QTest::newRow("every feature (sigmoid, groups, bias, q-lora, MTP, aux)") << 0;
        QTest::newRow("softmax, no q-lora, no MTP") << 1;
        QTest::newRow("every feature + sliding window 2") << 2;
        QTest::newRow("every feature + top-3 sparse attention") << 3;
    }

    void wholeModel() {
        QFETCH(int, variant);
        ModelConfig cfg = variant == 1 ? tiny_softmax_config() : tiny_full_config();
        if (variant == 2) cfg.sliding_window = 2;
        if (variant == 3) {
            cfg.index_topk = 3;
            cfg.index_n_heads = 2;
            cfg.index_head_dim = cfg.qk_rope_head_dim + 4;
        }
        Model model(cfg, be_);
        model.init_weights(1234);
        spread_router(model, 77);
        const Batch batch = random_batch(cfg.vocab_size, B_, T_, 5);
        ForwardOptions opt;
        opt.mtp_lambda = 0.3;
        opt.probe_routing = true;
        auto loss = [&] { return model.forward(batch, opt).total; };
        auto routing = [&] {
            std::vector<int32_t> sig = routing_signature(model);
            if (cfg.index_topk > 0)
                for (int64_t l = 0; l < cfg.num_hidden_layers + cfg.num_nextn_predict_layers; ++l) {
                    const std::vector<int32_t> keys = model.selected_keys(l);
                    sig.insert(sig.end(), keys.begin(), keys.end());
                }
            return sig;
        };
        const LossReport rep = model.forward(batch, opt);
        qInfo("loss %.6f mtp %.6f aux %.6f total %.6f", rep.loss, rep.mtp_loss, rep.aux_loss, rep.total);
        QVERIFY(std::isfinite(rep.total));
        QVERIFY(rep.loss > 0.0);
        if (cfg.num_nextn_predict_layers > 0) QVERIFY(rep.mtp_loss > 0.0);
        if (cfg.aux_loss_alpha > 0) QVERIFY(rep.aux_loss > 0.0);
        model.parameters().zero_grads();
        model.backward();
        report("whole model", directional_check(loss, routing, only(param_targets(model.parameters()), false),
                                                kTolerance, 500));
        if (cfg.index_topk > 0) {
            QVERIFY(rep.indexer_loss > 0.0);
            auto index_loss = [&] { return model.forward(batch, opt).indexer_loss; };
            report("whole model's indexers vs their KL losses",
                   directional_check(index_loss, routing, only(param_targets(model.parameters()), true),
                                     kTolerance, 600));
        }
        if (cfg.sliding_window > 0) {
            // Not vacuous: the same weights without the window give another loss.
            ModelConfig full = cfg;
            full.sliding_window = 0;
            Model other(full, be_);
            other.init_weights(1234);
            spread_router(other, 77);
            const double full_loss = other.forward(batch, opt).loss;
            qInfo("loss with window %lld: %.6f, full causal: %.6f", (long long)cfg.sliding_window,
                  rep.loss, full_loss);
            QVERIFY(std::fabs(full_loss - rep.loss) > 1e-4);
        }
    }

    // The whole model on a backend that prefers fused attention (as CUDA does) against the same
    // model on the plain CPU: losses and every gradient agree to float rounding, and a probed
    // forward still keeps the attention weights the routing inspector shows.
    void wholeModelFusedAttention() {
        ModelConfig cfg = tiny_full_config();
        cfg.sliding_window = 3;
        Model plain(cfg, be_), fused(cfg, fused_be_);
        plain.init_weights(99);
        fused.init_weights(99);
        const Batch batch = random_batch(cfg.vocab_size, B_, T_, 8);
        ForwardOptions opt;
        const LossReport a = plain.forward(batch, opt), b = fused.forward(batch, opt);
        QVERIFY2(std::fabs(a.total - b.total) <= 1e-5 * std::fabs(a.total),
                 qPrintable(QString("%1 vs %2").arg(a.total).arg(b.total)));
        plain.parameters().zero_grads();
        fused.parameters().zero_grads();
        plain.backward();
        fused.backward();
        const auto& pa = plain.parameters().all();
        const auto& pb = fused.parameters().all();
        for (size_t i = 0; i < pa.size(); ++i) {
            if (!pa[i]->trainable) continue;
            double num = 0, den = 0;
            for (int64_t j = 0; j < pa[i]->grad.numel(); ++j) {
                const double d = double(pa[i]->grad[j]) - pb[i]->grad[j];
                num += d * d;
                den += double(pa[i]->grad[j]) * pa[i]->grad[j];
            }
            QVERIFY2(std::sqrt(num) <= 1e-4 * std::sqrt(den) + 1e-12,
                     qPrintable(QString::fromStdString(pa[i]->name)));
        }
        QCOMPARE(fused.attention_probs(0).numel(), int64_t(0));  // training kept no T x T
        opt.probe_routing = true;
        fused.forward(batch, opt);
        QCOMPARE(fused.attention_probs(0).to_host(), plain.attention_probs(0).to_host());
    }

    // The check itself must be able to fail: a deliberately wrong gradient is caught.
    void checkerCatchesAWrongGradient() {
        const ModelConfig cfg = tiny_full_config();
        Model model(cfg, be_);
        model.init_weights(1);
        const Batch batch = random_batch(cfg.vocab_size, B_, T_, 6);
        ForwardOptions opt;
        opt.probe_routing = true;
        auto loss = [&] { return model.forward(batch, opt).total; };
        // A step that flips a top-k choice straddles a jump; the check must see it.
        auto routing = [&] { return routing_signature(model); };
        loss();
        model.parameters().zero_grads();
        model.backward();
        // Every tensor with a gradient: the right one passes, and two kinds of 10% bug fail,
        // the gradient scaled by 1.1 and half of its rows scaled by 1.1. (An error that is
        // random noise is nearly orthogonal to any one direction in many dimensions: a
        // directional check cannot see it, the per-op element checks of tst_backend_ops do.)
        int caught_scale = 0, caught_half = 0, tensors = 0;
        uint64_t seed = 9;
        for (const Target& t : param_targets(model.parameters())) {
            double gnorm = 0.0;
            for (int64_t i = 0; i < t.n; ++i) gnorm += double(t.grad[i]) * t.grad[i];
            if (gnorm == 0.0) continue;  // an expert that got no token
            gnorm = std::sqrt(gnorm);
            ++tensors;
            float* g = const_cast<float*>(t.grad);
            const std::vector<float> right(g, g + t.n);
            const CheckResult ok = directional_check(loss, routing, {t}, kTolerance, seed);
            QVERIFY2(ok.worst < 1.0, t.name.c_str());
            for (int64_t i = 0; i < t.n; ++i) g[i] = right[i] * 1.1f;
            caught_scale += directional_check(loss, routing, {t}, kTolerance, seed).worst > 1.0;
            // The half (first or second) that holds more of the gradient: a bug in the other
            // half of a tensor whose gradient lives elsewhere changes next to nothing.
            double first = 0.0;
            for (int64_t i = 0; i < t.n / 2; ++i) first += double(right[i]) * right[i];
            const bool low = first >= 0.5 * gnorm * gnorm;
            for (int64_t i = 0; i < t.n; ++i)
                g[i] = (i < t.n / 2) == low ? right[i] * 1.1f : right[i];
            caught_half += directional_check(loss, routing, {t}, kTolerance, seed).worst > 1.0;
            std::copy(right.begin(), right.end(), g);
            ++seed;
        }
        qInfo("10%% gradient errors caught in %d of %d tensors (scaled), %d of %d (half scaled)",
              caught_scale, tensors, caught_half, tensors);
        QVERIFY(tensors > 40);
        QCOMPARE(caught_scale, tensors);
        QCOMPARE(caught_half, tensors);
    }
};

QTEST_APPLESS_MAIN(TestModelGradcheck)
#include "tst_model_gradcheck.moc"
