#pragma once
// ModelSummary: parameter counts, FLOPs and memory of a ModelConfig, computed from the tensor
// shapes of docs/deepseek-v3-spec.md section 7 (no model is built).
//
// Conventions:
// - Parameters are every tensor of the HF checkpoint, the e_score_correction_bias buffers
//   included (listed separately as gate_bias; they are not trained by gradient).
// - total_params: the main model (embedding, layers, final norm, head); MTP excluded.
// - mtp_params: the MTP modules' own tensors (enorm, hnorm, eh_proj, the block,
//   shared_head.norm). Their embedding and output head are the main model's (shared), so they are
//   not counted again (HF checkpoints store copies of them; we count unique parameters).
// - active_params: per token, all non-expert parameters + the top-k routed experts + the shared
//   experts of every MoE layer; MTP excluded. It includes the embedding and the head, like the
//   published "37B active"; active_matmul_params drops what is not a matmul (the embedding row
//   lookup, norm weights, the bias buffers).
// - FLOPs per token: forward = 2 * active_matmul_params + causal attention over the average
//   number of keys a query sees: 2 * H * (qk_head_dim + v_head_dim) * avg_ctx per layer, with
//   avg_ctx = (seq_len + 1) / 2, or sum_i min(i + 1, W) / seq_len with a sliding window W.
//   Training step = 3 x forward (backward = 2 x forward), MTP modules included.
// - Memory: weights (all parameters, MTP included) in fp32 and bf16; fp32 gradients and two fp32
//   AdamW moments for the trainable parameters (buffers excluded). Activations are not counted.
#include <cstdint>
#include <string>

#include "model/config.h"

namespace moe {

struct ParameterBreakdown {
    int64_t embedding = 0;            // model.embed_tokens [V, D]
    int64_t attention_per_layer = 0;  // MLA projections + q_a/kv_a layernorms, one layer
    int64_t attention = 0;            // all main layers
    int64_t dense_ffn = 0;            // SwiGLU of the first_k_dense_replace layers
    int64_t routed_experts = 0;       // all routed experts of all MoE layers
    int64_t shared_experts = 0;
    int64_t gates = 0;                // router weights [N_r, D] per MoE layer
    int64_t gate_bias = 0;            // e_score_correction_bias buffers (noaux_tc)
    int64_t norms = 0;                // input/post_attention layernorms + final norm
    int64_t head = 0;                 // lm_head [V, D]
    int64_t mtp = 0;                  // MTP modules' own tensors (= ModelSummary::mtp_params)
};

struct ModelSummary {
    int64_t seq_len = 0;
    int64_t dense_layers = 0;
    int64_t moe_layers = 0;

    ParameterBreakdown params;
    int64_t total_params = 0;          // main model, MTP excluded
    int64_t mtp_params = 0;
    int64_t trainable_params = 0;      // main + MTP, bias buffers excluded
    int64_t active_params = 0;         // per token, MTP excluded
    int64_t active_routed_experts = 0; // the top-k share of routed_experts
    int64_t active_matmul_params = 0;  // active_params minus embedding, norms and bias buffers
    int64_t mtp_active_matmul_params = 0;

    double attention_flops_per_token = 0;  // score + value FLOPs, all main layers
    // Sliding window (config.sliding_window, 0 = none), the keys an average query sees, the
    // attention FLOPs the same model would cost with full causal attention, and the share of
    // them the window saves (0 without a window or when W >= seq_len).
    int64_t sliding_window = 0;
    double attention_context = 0;
    double attention_flops_full_per_token = 0;
    double attention_flops_saved_fraction = 0;
    // Dynamic top-k sparse attention (config.index_topk, 0 = none): a query attends to
    // min(i + 1, index_topk) keys (attention_context), and the indexer's scores of every causal
    // key are counted in attention_flops_per_token (indexer_flops_per_token, all main layers).
    int64_t index_topk = 0;
    double indexer_flops_per_token = 0;
    // Generation's cache per token, all main layers, in values: MLA keeps the compressed latent
    // and the shared rotary key (kv_lora_rank + qk_rope_head_dim per layer); plain multi-head
    // attention with the same heads would keep every head's key and value.
    double kv_cache_values_per_token = 0;
    double mha_kv_values_per_token = 0;
    double forward_flops_per_token = 0;    // main model
    double mtp_forward_flops_per_token = 0;
    double train_flops_per_token = 0;      // 3 x (forward + MTP forward)

    double weights_fp32_bytes = 0;         // main + MTP
    double weights_bf16_bytes = 0;
    double gradients_fp32_bytes = 0;
    double adamw_state_bytes = 0;          // two fp32 moments
    double training_bytes = 0;             // weights + gradients + AdamW (fp32), no activations
};

// seq_len sets the attention FLOPs (average causal context). The config should be valid.
ModelSummary summarize(const ModelConfig& config, int64_t seq_len);

// Keys an average query of a seq_len-token sequence attends to: sum_i min(i + 1, W) / seq_len
// over positions i < seq_len; window 0 = full causal ((seq_len + 1) / 2).
double average_attention_context(int64_t seq_len, int64_t window);

// A readable multi-line table with human units (K/M/B parameters, GFLOP, GiB).
std::string format_summary(const ModelSummary& summary);

// "sliding window 32: attention FLOPs -56.4% (28.1 instead of 64.5 keys per query)", or why
// nothing is saved (window >= seq_len); empty without a window. Shared by the CLI and the GUI.
std::string format_sliding_window(const ModelSummary& summary);

// "top-64 sparse attention: attention FLOPs -48.2% (61.0 instead of 128.5 keys per query; the
// indexer costs 3.1% of dense attention)"; empty without index_topk.
std::string format_sparse_attention(const ModelSummary& summary);
// The window's or the sparse attention's line (whichever the model has); empty for neither.
std::string format_attention_saving(const ModelSummary& summary);

// Human units, also used by the GUI: 1.23B, 456.7M, 12.0K; 83.5 GFLOP; 1.25 TiB / 3.4 GiB.
std::string format_count(double count);
std::string format_flops(double flops);
std::string format_bytes(double bytes);

}  // namespace moe
