// ModelSummary: parameter counts checked against an independent sum over the checkpoint's tensor
// list (spec section 7), hand-computed numbers for the tiny model, and the published 671B / 37B.
#include <QtTest>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/summary.h"
#include "store/project.h"
#include "test_support.h"

using namespace moe;

namespace {

struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    int64_t size() const {
        int64_t n = 1;
        for (int64_t d : shape) n *= d;
        return n;
    }
};

// The HF checkpoint's tensors of one transformer block (attention + FFN) at `prefix`.
void add_block(std::vector<Tensor>& t, const ModelConfig& c, const std::string& prefix, bool moe) {
    const int64_t D = c.hidden_size, H = c.num_attention_heads;
    const int64_t qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
    t.push_back({prefix + "input_layernorm.weight", {D}});
    t.push_back({prefix + "post_attention_layernorm.weight", {D}});
    const std::string a = prefix + "self_attn.";
    if (c.q_lora_rank > 0) {
        t.push_back({a + "q_a_proj.weight", {c.q_lora_rank, D}});
        t.push_back({a + "q_a_layernorm.weight", {c.q_lora_rank}});
        t.push_back({a + "q_b_proj.weight", {H * qk, c.q_lora_rank}});
    } else {
        t.push_back({a + "q_proj.weight", {H * qk, D}});
    }
    t.push_back({a + "kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, D}});
    t.push_back({a + "kv_a_layernorm.weight", {c.kv_lora_rank}});
    t.push_back({a + "kv_b_proj.weight", {H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}});
    t.push_back({a + "o_proj.weight", {D, H * c.v_head_dim}});
    if (c.index_topk > 0) {  // DeepSeek-V3.2's indexer (without its key LayerNorm)
        const int64_t HI = c.index_n_heads, dI = c.index_head_dim;
        if (c.q_lora_rank > 0)
            t.push_back({a + "indexer.wq_b.weight", {HI * dI, c.q_lora_rank}});
        else
            t.push_back({a + "indexer.wq.weight", {HI * dI, D}});
        t.push_back({a + "indexer.wk.weight", {dI, D}});
        t.push_back({a + "indexer.weights_proj.weight", {HI, D}});
    }
    const std::string m = prefix + "mlp.";
    auto swiglu = [&](const std::string& p, int64_t width) {
        t.push_back({p + "gate_proj.weight", {width, D}});
        t.push_back({p + "up_proj.weight", {width, D}});
        t.push_back({p + "down_proj.weight", {D, width}});
    };
    if (!moe) {
        swiglu(m, c.intermediate_size);
        return;
    }
    t.push_back({m + "gate.weight", {c.n_routed_experts, D}});
    if (c.topk_method == "noaux_tc")
        t.push_back({m + "gate.e_score_correction_bias", {c.n_routed_experts}});
    for (int64_t e = 0; e < c.n_routed_experts; ++e)
        swiglu(m + "experts." + std::to_string(e) + ".", c.moe_intermediate_size);
    if (c.n_shared_experts > 0)
        swiglu(m + "shared_experts.", c.n_shared_experts * c.moe_intermediate_size);
}

// Main model tensors.
std::vector<Tensor> main_tensors(const ModelConfig& c) {
    std::vector<Tensor> t;
    t.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}});
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
        add_block(t, c, "model.layers." + std::to_string(l) + ".",
                  c.n_routed_experts > 0 && l >= c.first_k_dense_replace);
    t.push_back({"model.norm.weight", {c.hidden_size}});
    t.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
    return t;
}

// MTP modules' own tensors (embed_tokens and shared_head.head are the main model's).
std::vector<Tensor> mtp_tensors(const ModelConfig& c) {
    std::vector<Tensor> t;
    const int64_t D = c.hidden_size;
    for (int64_t k = 0; k < c.num_nextn_predict_layers; ++k) {
        const std::string p = "model.layers." + std::to_string(c.num_hidden_layers + k) + ".";
        t.push_back({p + "enorm.weight", {D}});
        t.push_back({p + "hnorm.weight", {D}});
        t.push_back({p + "eh_proj.weight", {D, 2 * D}});
        add_block(t, c, p, c.n_routed_experts > 0);
        t.push_back({p + "shared_head.norm.weight", {D}});
    }
    return t;
}

int64_t total(const std::vector<Tensor>& tensors) {
    int64_t n = 0;
    for (const auto& t : tensors) n += t.size();
    return n;
}

// Active per token: every tensor except routed experts, plus top-k experts' worth of them.
int64_t active(const ModelConfig& c, const std::vector<Tensor>& tensors) {
    int64_t n = 0, one_expert = 0;
    for (const auto& t : tensors) {
        if (t.name.find(".experts.") == std::string::npos) n += t.size();
        else if (t.name.find(".experts.0.") != std::string::npos) one_expert += t.size();
    }
    return n + one_expert * c.num_experts_per_tok;
}

ModelConfig tiny_config() {
    // shared/bench/tiny.json, which is also the ModelConfig default, plus one MTP module.
    ModelConfig c;
    c.num_nextn_predict_layers = 1;
    return c;
}

}  // namespace

class TestSummary : public QObject {
    Q_OBJECT

private slots:
    void tiny_exact_counts_by_hand() {
        // Tiny: D 128, H 4, nope 16, rope 16, v 16, q rank 64, kv rank 32, V 256, dense FFN 256,
        // expert 64, 4 layers (1 dense), 16 routed experts top-4, 1 shared.
        //  attention/layer: q_a 64*128=8192 + q_a_norm 64 + q_b 4*32*64=8192 + kv_a 48*128=6144
        //                   + kv_a_norm 32 + kv_b 4*32*32=4096 + o 128*64=8192        = 34,912
        //  block norms 2*128 = 256; dense FFN 3*128*256 = 98,304; one expert 3*128*64 = 24,576
        //  dense layer = 34,912 + 256 + 98,304                                        = 133,472
        //  MoE layer = 34,912 + 256 + 16*24,576 + 24,576 (shared) + 2048 (gate) + 16 (bias)
        //                                                                            = 455,024
        //  total = 133,472 + 3*455,024 + 2*256*128 (embedding, head) + 128 (norm)   = 1,564,208
        //  active MoE layer = 34,912 + 256 + 4*24,576 + 24,576 + 2048 + 16           = 160,112
        //  active = 133,472 + 3*160,112 + 65,536 + 128                                 = 679,472
        //  MTP = 2*128 + 128*256 (eh_proj) + 455,024 + 128                             = 488,176
        //  matmul active = 679,472 - 32,768 (embedding) - 1,152 (norms) - 4*96 (q_a/kv_a
        //                  norms) - 48 (bias)                                          = 645,120
        //  attention FLOPs at seq 128: 4 layers * 2*4*(32+16)*64.5                    = 99,072
        const ModelSummary s = summarize(tiny_config(), 128);
        QCOMPARE(s.params.attention_per_layer, int64_t(34912));
        QCOMPARE(s.total_params, int64_t(1564208));
        QCOMPARE(s.active_params, int64_t(679472));
        QCOMPARE(s.mtp_params, int64_t(488176));
        QCOMPARE(s.active_matmul_params, int64_t(645120));
        QCOMPARE(s.attention_flops_per_token, 99072.0);
        QCOMPARE(s.forward_flops_per_token, 2.0 * 645120 + 99072);
        QCOMPARE(s.params.gate_bias, int64_t(48));
        QCOMPARE(s.trainable_params, int64_t(1564208 - 48 + 488176 - 16));
        QCOMPARE(s.weights_fp32_bytes, 4.0 * (1564208 + 488176));
        QCOMPARE(s.training_bytes, 4.0 * (1564208 + 488176) + 12.0 * s.trainable_params);
        // MTP forward: eh_proj + attention matmuls + gate + top-4 + shared + head, + attention.
        const double mtp_matmul = 32768 + 34816 + 2048 + 4 * 24576 + 24576 + 32768;
        QCOMPARE(s.mtp_forward_flops_per_token, 2 * mtp_matmul + 24768.0);
        QCOMPARE(s.train_flops_per_token, 3.0 * (s.forward_flops_per_token + s.mtp_forward_flops_per_token));
    }

    void sliding_window_flops() {
        // Window W over T positions: position i sees min(i + 1, W) keys.
        //  T 128, W 32: (1 + ... + 32) + 96 * 32 = 528 + 3072 = 3600 keys, 28.125 per query
        //  (full causal: 64.5); tiny attention per layer = 2*4*(32+16) * 28.125 = 10,800 FLOPs.
        ModelConfig c = tiny_config();
        c.sliding_window = 32;
        c.validate();
        const ModelSummary s = summarize(c, 128);
        QCOMPARE(s.sliding_window, int64_t(32));
        QCOMPARE(s.attention_context, 28.125);
        QCOMPARE(s.attention_flops_per_token, 4 * 10800.0);
        QCOMPARE(s.attention_flops_full_per_token, 99072.0);
        QCOMPARE(s.forward_flops_per_token, 2.0 * 645120 + 43200);
        const double mtp_matmul = 32768 + 34816 + 2048 + 4 * 24576 + 24576 + 32768;
        QCOMPARE(s.mtp_forward_flops_per_token, 2 * mtp_matmul + 10800.0);  // MTP blocks use it too
        QVERIFY(std::fabs(s.attention_flops_saved_fraction - 36.375 / 64.5) < 1e-12);  // 56.4%
        const std::string text = format_sliding_window(s);
        QVERIFY2(text.find("sliding window 32") != std::string::npos && text.find("-56.4%") != std::string::npos,
                 text.c_str());
        QVERIFY(format_summary(s).find("-56.4%") != std::string::npos);
        qInfo("T 128, W 32: %s", text.c_str());

        // Windows that do not divide T, W = 1, W >= T, and no window.
        QCOMPARE(average_attention_context(10, 4), 3.4);  // (1 + 2 + 3 + 4 * 7) / 10
        QCOMPARE(average_attention_context(7, 3), 18.0 / 7);
        QCOMPARE(average_attention_context(128, 1), 1.0);
        QCOMPARE(average_attention_context(128, 128), 64.5);
        QCOMPARE(average_attention_context(128, 500), 64.5);
        QCOMPARE(average_attention_context(128, 0), 64.5);
        c.sliding_window = 500;
        const ModelSummary wide = summarize(c, 128);
        QCOMPARE(wide.attention_flops_per_token, 99072.0);
        QCOMPARE(wide.attention_flops_saved_fraction, 0.0);
        QVERIFY(format_sliding_window(wide).find("no attention FLOPs saved") != std::string::npos);
        QCOMPARE(format_sliding_window(summarize(tiny_config(), 128)), std::string());
        QCOMPARE(summarize(tiny_config(), 128).attention_flops_saved_fraction, 0.0);

        // The tiny preset (seq 128) with a window of 64 saves a quarter of its attention FLOPs.
        Project p = Project::load(moe::test::source_path("projects/tiny-tasks.json"));
        p.model.sliding_window = 64;
        const ModelSummary tiny = summarize(p.model, p.training.seq_len);
        qInfo("tiny preset, T %lld, W 64: %s", static_cast<long long>(p.training.seq_len),
              format_sliding_window(tiny).c_str());
        QVERIFY(std::fabs(tiny.attention_flops_saved_fraction - (1.0 - 48.25 / 64.5)) < 1e-12);
    }

    // Top-k sparse attention: query i attends to min(i + 1, K) keys, as with a window of K, and
    // the indexer scores every causal key.
    //  T 128, K 32: 28.125 keys per query; attention per layer 2*4*(32+16) * 28.125 = 10,800;
    //  indexer (1 head of 16) 2*1*16 * 64.5 = 2,064; 4 layers: 51,456 of the full 99,072.
    void sparse_attention_flops() {
        ModelConfig c = tiny_config();
        c.index_topk = 32;
        c.index_n_heads = 1;
        c.index_head_dim = 16;
        c.validate();
        const ModelSummary s = summarize(c, 128);
        QCOMPARE(s.index_topk, int64_t(32));
        QCOMPARE(s.attention_context, 28.125);
        QCOMPARE(s.indexer_flops_per_token, 4 * 2064.0);
        QCOMPARE(s.attention_flops_per_token, 4 * (10800.0 + 2064.0));
        QCOMPARE(s.attention_flops_full_per_token, 99072.0);
        QVERIFY(std::fabs(s.attention_flops_saved_fraction - (1.0 - 51456.0 / 99072.0)) < 1e-12);
        const std::string text = format_attention_saving(s);
        qInfo("T 128, top-32: %s", text.c_str());
        QVERIFY2(text.find("top-32 sparse attention") != std::string::npos &&
                     text.find("-48.1%") != std::string::npos && text.find("costs 8.3%") != std::string::npos,
                 text.c_str());
        QVERIFY(format_summary(s).find("top-32 sparse attention") != std::string::npos);
        // An indexer as wide as the heads costs more than the keys it saves: said, not hidden.
        c.index_n_heads = 4;
        c.index_head_dim = 32;
        const ModelSummary costly = summarize(c, 128);
        QVERIFY(costly.attention_flops_saved_fraction < 0);
        QVERIFY2(format_attention_saving(costly).find("FLOPs +") != std::string::npos,
                 format_attention_saving(costly).c_str());
        // K >= T chooses every key.
        c.index_topk = 128;
        QVERIFY(format_attention_saving(summarize(c, 128)).find("every key is chosen") != std::string::npos);
    }

    void counts_match_the_tensor_list() {
        std::vector<ModelConfig> configs;
        configs.push_back(tiny_config());
        ModelConfig plain_q = tiny_config();  // q_proj, softmax/greedy (no bias), 2 shared
        plain_q.q_lora_rank = 0;
        plain_q.scoring_func = "softmax";
        plain_q.topk_method = "greedy";
        plain_q.n_shared_experts = 2;
        plain_q.num_nextn_predict_layers = 2;
        configs.push_back(plain_q);
        ModelConfig dense = tiny_config();  // no experts at all
        dense.n_routed_experts = 0;
        configs.push_back(dense);
        ModelConfig no_dense = tiny_config();
        no_dense.first_k_dense_replace = 0;
        no_dense.n_shared_experts = 0;
        configs.push_back(no_dense);
        ModelConfig sparse = tiny_config();  // the sparse attention indexer's tensors, both q forms
        sparse.index_topk = 16;
        configs.push_back(sparse);
        sparse.q_lora_rank = 0;
        configs.push_back(sparse);
        const Project d512 = Project::load(moe::test::source_path("projects/d512.json"));
        configs.push_back(d512.model);

        for (const ModelConfig& c : configs) {
            c.validate();
            const auto main = main_tensors(c);
            const auto mtp = mtp_tensors(c);
            const ModelSummary s = summarize(c, 64);
            QCOMPARE(s.total_params, total(main));
            QCOMPARE(s.mtp_params, total(mtp));
            QCOMPARE(s.active_params, c.n_routed_experts > 0 ? active(c, main) : total(main));
            const auto& p = s.params;
            QCOMPARE(p.embedding + p.attention + p.dense_ffn + p.routed_experts + p.shared_experts +
                         p.gates + p.gate_bias + p.norms + p.head,
                     s.total_params);
        }
        // bench/README.md: d512 is "about 97M parameters".
        const ModelSummary s = summarize(d512.model, 256);
        QVERIFY2(s.total_params > 90e6 && s.total_params < 100e6,
                 qPrintable(QString::number(s.total_params)));
    }

    void deepseek_v3_671b() {
        const Project p = Project::load(moe::test::source_path("projects/deepseek-v3-671b.json"));
        const ModelSummary s = summarize(p.model, p.training.seq_len);
        qInfo().noquote() << QString::fromStdString("\nDeepSeek-V3 671B summary:\n" + format_summary(s));
        QVERIFY2(s.total_params >= 660e9 && s.total_params <= 680e9,
                 qPrintable(QString::number(s.total_params)));
        QVERIFY2(s.active_params >= 35e9 && s.active_params <= 39e9,
                 qPrintable(QString::number(s.active_params)));
        // The published total with MTP is 685B (671B main + 14B MTP incl. its copies of the
        // embedding and head, which we count once).
        const double with_mtp_copies = s.total_params + s.mtp_params + 2.0 * s.params.embedding;
        QVERIFY2(with_mtp_copies >= 680e9 && with_mtp_copies <= 690e9,
                 qPrintable(QString::number(with_mtp_copies)));
        QCOMPARE(s.dense_layers, int64_t(3));
        QCOMPARE(s.moe_layers, int64_t(58));
    }

    void deepseek_v2_lite_16b() {
        const Project p = Project::load(moe::test::source_path("projects/deepseek-v2-lite-16b.json"));
        const ModelSummary s = summarize(p.model, p.training.seq_len);
        qInfo().noquote() << QString::fromStdString("\nDeepSeek-V2-Lite-like 16B summary:\n" +
                                                    format_summary(s));
        // Published: 15.7B total, 2.4B active. Our active count includes the embedding (2.66B);
        // without it, 2.45B.
        QVERIFY2(s.total_params >= 15.5e9 && s.total_params <= 16e9,
                 qPrintable(QString::number(s.total_params)));
        const double active_without_embedding = double(s.active_params - s.params.embedding);
        QVERIFY2(active_without_embedding >= 2.35e9 && active_without_embedding <= 2.5e9,
                 qPrintable(QString::number(s.active_params)));
    }

    void tiny_preset_summary() {
        const Project p = Project::load(moe::test::source_path("projects/tiny-tasks.json"));
        const ModelSummary s = summarize(p.model, p.training.seq_len);
        qInfo().noquote() << QString::fromStdString("\nTiny preset summary:\n" + format_summary(s));
        QCOMPARE(s.total_params, int64_t(1564208));
    }

    void human_units() {
        QCOMPARE(format_count(671026419200.0), std::string("671.03B"));
        QCOMPARE(format_count(1564208), std::string("1.56M"));
        QCOMPARE(format_count(34912), std::string("34.9K"));
        QCOMPARE(format_count(48), std::string("48"));
        QCOMPARE(format_flops(83.5e9), std::string("83.50 GFLOP"));
        QCOMPARE(format_bytes(3.0 * 1024 * 1024 * 1024), std::string("3.00 GiB"));
    }
};

QTEST_APPLESS_MAIN(TestSummary)
#include "tst_summary.moc"
