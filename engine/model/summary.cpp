#include "model/summary.h"

#include <cmath>
#include <cstdio>

namespace moe {

namespace {

// Shapes of one layer's tensors (spec section 7), split into matmul weights and the small
// vectors (norm weights, bias buffers) that are not matmuls.
struct LayerShapes {
    int64_t attention_matmul = 0;  // q_a/q_b or q_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj
    int64_t attention_norms = 0;   // q_a_layernorm, kv_a_layernorm
    int64_t block_norms = 0;       // input_layernorm, post_attention_layernorm
    int64_t dense_ffn = 0;         // gate/up/down of a dense layer
    int64_t expert = 0;            // one routed expert
    int64_t shared = 0;            // the shared-expert MLP (width n_shared * moe_inter)
    int64_t gate = 0;              // router weight [N_r, D]
    int64_t gate_bias = 0;         // e_score_correction_bias [N_r] (noaux_tc only)
};

LayerShapes layer_shapes(const ModelConfig& c) {
    const int64_t D = c.hidden_size, H = c.num_attention_heads;
    LayerShapes s;
    if (c.q_lora_rank > 0)
        s.attention_matmul += c.q_lora_rank * D + H * c.qk_head_dim() * c.q_lora_rank;
    else
        s.attention_matmul += H * c.qk_head_dim() * D;
    s.attention_matmul += (c.kv_lora_rank + c.qk_rope_head_dim) * D;              // kv_a
    s.attention_matmul += H * (c.qk_nope_head_dim + c.v_head_dim) * c.kv_lora_rank;  // kv_b
    s.attention_matmul += D * H * c.v_head_dim;                                   // o_proj
    if (c.index_topk > 0) {  // the sparse attention indexer: wq_b (or wq), wk, weights_proj
        const int64_t HI = c.index_n_heads, dI = c.index_head_dim;
        s.attention_matmul += HI * dI * (c.q_lora_rank > 0 ? c.q_lora_rank : D) + dI * D + HI * D;
    }
    s.attention_norms = (c.q_lora_rank > 0 ? c.q_lora_rank : 0) + c.kv_lora_rank;
    s.block_norms = 2 * D;
    s.dense_ffn = 3 * D * c.intermediate_size;
    s.expert = 3 * D * c.moe_intermediate_size;
    s.shared = 3 * D * c.moe_intermediate_size * c.n_shared_experts;
    s.gate = c.n_routed_experts * D;
    s.gate_bias = c.has_selection_bias() ? c.n_routed_experts : 0;
    return s;
}

// Causal attention score (q.k) and value (P.v) FLOPs of one layer for one token.
double attention_core_flops(const ModelConfig& c, int64_t seq_len, int64_t window) {
    return 2.0 * c.num_attention_heads * (c.qk_head_dim() + c.v_head_dim) *
           average_attention_context(seq_len, window);
}

}  // namespace

double average_attention_context(int64_t seq_len, int64_t window) {
    if (seq_len <= 0) return 0.0;
    const double T = static_cast<double>(seq_len);
    if (window <= 0 || window >= seq_len) return (T + 1.0) / 2.0;
    // Positions 0..W-1 see i + 1 keys, the remaining T - W see W each.
    const double W = static_cast<double>(window);
    return (W * (W + 1.0) / 2.0 + (T - W) * W) / T;
}

ModelSummary summarize(const ModelConfig& c, int64_t seq_len) {
    const LayerShapes s = layer_shapes(c);
    const int64_t D = c.hidden_size, V = c.vocab_size;
    ModelSummary m;
    m.seq_len = seq_len;
    m.moe_layers = c.num_moe_layers();
    m.dense_layers = c.num_hidden_layers - m.moe_layers;
    const int64_t L = c.num_hidden_layers, Lm = m.moe_layers, Ld = m.dense_layers;
    const int64_t k = c.n_routed_experts > 0 ? c.num_experts_per_tok : 0;

    ParameterBreakdown& p = m.params;
    p.embedding = V * D;
    p.attention_per_layer = s.attention_matmul + s.attention_norms;
    p.attention = L * p.attention_per_layer;
    p.dense_ffn = Ld * s.dense_ffn;
    p.routed_experts = Lm * c.n_routed_experts * s.expert;
    p.shared_experts = Lm * s.shared;
    p.gates = Lm * s.gate;
    p.gate_bias = Lm * s.gate_bias;
    p.norms = L * s.block_norms + D;
    p.head = V * D;

    // MTP module: enorm, hnorm, eh_proj [D, 2D], one block (MoE when the model has experts: the
    // module sits after the last main layer), shared_head.norm. Embedding and head are shared.
    const bool mtp_moe = c.n_routed_experts > 0;
    const int64_t mtp_ffn = mtp_moe ? c.n_routed_experts * s.expert + s.shared + s.gate : s.dense_ffn;
    const int64_t mtp_bias = mtp_moe ? s.gate_bias : 0;
    const int64_t mtp_module = 2 * D + 2 * D * D + p.attention_per_layer + s.block_norms +
                               mtp_ffn + mtp_bias + D;
    p.mtp = c.num_nextn_predict_layers * mtp_module;

    m.total_params = p.embedding + p.attention + p.dense_ffn + p.routed_experts + p.shared_experts +
                     p.gates + p.gate_bias + p.norms + p.head;
    m.mtp_params = p.mtp;
    m.trainable_params = m.total_params - p.gate_bias + m.mtp_params -
                         c.num_nextn_predict_layers * mtp_bias;

    m.active_routed_experts = Lm * k * s.expert;
    m.active_params = m.total_params - p.routed_experts + m.active_routed_experts;
    m.active_matmul_params = L * s.attention_matmul + p.dense_ffn + m.active_routed_experts +
                             p.shared_experts + p.gates + p.head;
    const int64_t mtp_active_ffn = mtp_moe ? k * s.expert + s.shared + s.gate : s.dense_ffn;
    m.mtp_active_matmul_params =
        c.num_nextn_predict_layers * (2 * D * D + s.attention_matmul + mtp_active_ffn + V * D);

    // A window and top-k sparse attention both give query i min(i + 1, W) keys; the indexer
    // then scores every causal key (2 x index_n_heads x index_head_dim FLOPs each).
    const int64_t keys = c.sliding_window > 0 ? c.sliding_window : c.index_topk;
    const double indexer_layer =
        c.index_topk > 0 ? 2.0 * double(c.index_n_heads) * double(c.index_head_dim) *
                               average_attention_context(seq_len, 0)
                         : 0.0;
    const double attn_layer = attention_core_flops(c, seq_len, keys) + indexer_layer;
    m.attention_flops_per_token = L * attn_layer;
    m.sliding_window = c.sliding_window;
    m.index_topk = c.index_topk;
    m.indexer_flops_per_token = L * indexer_layer;
    m.attention_context = average_attention_context(seq_len, keys);
    m.attention_flops_full_per_token = L * attention_core_flops(c, seq_len, 0);
    if (m.attention_flops_full_per_token > 0)
        m.attention_flops_saved_fraction =
            1.0 - m.attention_flops_per_token / m.attention_flops_full_per_token;
    m.kv_cache_values_per_token = double(L) * double(c.kv_lora_rank + c.qk_rope_head_dim);
    m.mha_kv_values_per_token = double(L) * double(c.num_attention_heads) *
                                double(c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim);
    m.forward_flops_per_token = 2.0 * m.active_matmul_params + m.attention_flops_per_token;
    m.mtp_forward_flops_per_token = 2.0 * m.mtp_active_matmul_params +
                                    c.num_nextn_predict_layers * attn_layer;
    m.train_flops_per_token = 3.0 * (m.forward_flops_per_token + m.mtp_forward_flops_per_token);

    const double all_params = static_cast<double>(m.total_params + m.mtp_params);
    m.weights_fp32_bytes = 4.0 * all_params;
    m.weights_bf16_bytes = 2.0 * all_params;
    m.gradients_fp32_bytes = 4.0 * static_cast<double>(m.trainable_params);
    m.adamw_state_bytes = 8.0 * static_cast<double>(m.trainable_params);
    m.training_bytes = m.weights_fp32_bytes + m.gradients_fp32_bytes + m.adamw_state_bytes;
    return m;
}

namespace {

std::string printf_string(const char* format, double a, const char* unit) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, format, a, unit);
    return buffer;
}

std::string percent(double part, double whole) {
    if (whole <= 0) return "";
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%5.1f%%", 100.0 * part / whole);
    return buffer;
}

}  // namespace

std::string format_count(double n) {
    const double a = std::fabs(n);
    if (a >= 1e12) return printf_string("%.2f%s", n / 1e12, "T");
    if (a >= 1e9) return printf_string("%.2f%s", n / 1e9, "B");
    if (a >= 1e6) return printf_string("%.2f%s", n / 1e6, "M");
    if (a >= 1e3) return printf_string("%.1f%s", n / 1e3, "K");
    return printf_string("%.0f%s", n, "");
}

std::string format_flops(double f) {
    if (f >= 1e12) return printf_string("%.2f %s", f / 1e12, "TFLOP");
    if (f >= 1e9) return printf_string("%.2f %s", f / 1e9, "GFLOP");
    if (f >= 1e6) return printf_string("%.2f %s", f / 1e6, "MFLOP");
    if (f >= 1e3) return printf_string("%.2f %s", f / 1e3, "KFLOP");
    return printf_string("%.0f %s", f, "FLOP");
}

std::string format_bytes(double b) {
    const double KiB = 1024.0, MiB = KiB * 1024, GiB = MiB * 1024, TiB = GiB * 1024;
    if (b >= TiB) return printf_string("%.2f %s", b / TiB, "TiB");
    if (b >= GiB) return printf_string("%.2f %s", b / GiB, "GiB");
    if (b >= MiB) return printf_string("%.2f %s", b / MiB, "MiB");
    if (b >= KiB) return printf_string("%.2f %s", b / KiB, "KiB");
    return printf_string("%.0f %s", b, "B");
}

std::string format_sliding_window(const ModelSummary& m) {
    if (m.sliding_window <= 0) return "";
    char buffer[160];
    if (m.attention_flops_saved_fraction <= 0)
        std::snprintf(buffer, sizeof buffer,
                      "sliding window %lld >= sequence length %lld: no attention FLOPs saved",
                      static_cast<long long>(m.sliding_window), static_cast<long long>(m.seq_len));
    else
        std::snprintf(buffer, sizeof buffer,
                      "sliding window %lld: attention FLOPs -%.1f%% (%.1f instead of %.1f keys "
                      "per query)",
                      static_cast<long long>(m.sliding_window),
                      100.0 * m.attention_flops_saved_fraction, m.attention_context,
                      average_attention_context(m.seq_len, 0));
    return buffer;
}

std::string format_sparse_attention(const ModelSummary& m) {
    if (m.index_topk <= 0) return "";
    const double full = average_attention_context(m.seq_len, 0);
    const double indexer_share = m.attention_flops_full_per_token > 0
                                     ? m.indexer_flops_per_token / m.attention_flops_full_per_token
                                     : 0.0;
    char buffer[200];
    if (m.attention_context >= full)
        std::snprintf(buffer, sizeof buffer,
                      "top-%lld sparse attention >= sequence length %lld: every key is chosen, "
                      "the indexer adds %.1f%%",
                      static_cast<long long>(m.index_topk), static_cast<long long>(m.seq_len),
                      100.0 * indexer_share);
    else
        std::snprintf(buffer, sizeof buffer,
                      "top-%lld sparse attention: attention FLOPs %+.1f%% (%.1f instead of %.1f "
                      "keys per query; the indexer costs %.1f%% of dense attention)",
                      static_cast<long long>(m.index_topk),
                      -100.0 * m.attention_flops_saved_fraction, m.attention_context, full,
                      100.0 * indexer_share);
    return buffer;
}

std::string format_attention_saving(const ModelSummary& m) {
    return m.index_topk > 0 ? format_sparse_attention(m) : format_sliding_window(m);
}

std::string format_summary(const ModelSummary& m) {
    std::string out;
    char line[320];  // the attention row's note can be long (sparse attention)
    auto row = [&](const char* label, const std::string& value, const std::string& note) {
        std::snprintf(line, sizeof line, "  %-34s %12s  %s\n", label, value.c_str(), note.c_str());
        out += line;
    };
    const ParameterBreakdown& p = m.params;
    const double total = static_cast<double>(m.total_params);

    std::snprintf(line, sizeof line, "Layers: %lld (%lld dense, %lld MoE), sequence length %lld\n",
                  static_cast<long long>(m.dense_layers + m.moe_layers),
                  static_cast<long long>(m.dense_layers), static_cast<long long>(m.moe_layers),
                  static_cast<long long>(m.seq_len));
    out += line;
    out += "Parameters (main model; % of total)\n";
    row("embedding", format_count(p.embedding), percent(p.embedding, total));
    row("attention (MLA), per layer", format_count(p.attention_per_layer), "");
    row("attention (MLA), all layers", format_count(p.attention), percent(p.attention, total));
    row("dense FFN", format_count(p.dense_ffn), percent(p.dense_ffn, total));
    row("routed experts", format_count(p.routed_experts), percent(p.routed_experts, total));
    row("shared experts", format_count(p.shared_experts), percent(p.shared_experts, total));
    row("gates (router weights)", format_count(p.gates), percent(p.gates, total));
    row("gate bias buffers", format_count(p.gate_bias), "not trained by gradient");
    row("norms", format_count(p.norms), percent(p.norms, total));
    row("output head", format_count(p.head), percent(p.head, total));
    row("TOTAL (MTP excluded)", format_count(total), std::to_string(m.total_params));
    row("MTP modules (embedding/head shared)", format_count(m.mtp_params),
        std::to_string(m.mtp_params));
    out += "Active per token (non-expert + top-k routed + shared; MTP excluded)\n";
    row("routed experts, top-k", format_count(m.active_routed_experts), "");
    row("ACTIVE", format_count(m.active_params), std::to_string(m.active_params));
    row("  of which matmul weights", format_count(m.active_matmul_params),
        "no embedding lookup, norms, buffers");
    out += "FLOPs per token\n";
    row("attention scores + values", format_flops(m.attention_flops_per_token),
        m.sliding_window > 0 || m.index_topk > 0 ? format_attention_saving(m)
                                                 : "average causal context (seq_len+1)/2");
    row("forward (main model)", format_flops(m.forward_flops_per_token),
        "2 x active matmul + attention");
    row("forward (MTP modules)", format_flops(m.mtp_forward_flops_per_token), "");
    row("training step", format_flops(m.train_flops_per_token), "3 x forward, MTP included");
    out += "Memory (all parameters, MTP included; activations not counted)\n";
    row("weights fp32", format_bytes(m.weights_fp32_bytes), "");
    row("weights bf16", format_bytes(m.weights_bf16_bytes), "");
    row("gradients fp32", format_bytes(m.gradients_fp32_bytes), "");
    row("AdamW state (2 x fp32)", format_bytes(m.adamw_state_bytes), "");
    row("training total", format_bytes(m.training_bytes), "weights + gradients + AdamW");
    return out;
}

}  // namespace moe
