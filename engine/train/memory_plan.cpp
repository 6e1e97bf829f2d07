#include "train/memory_plan.h"

#include <cstdio>

#include "core/allocator.h"
#include "core/error.h"
#include "core/system_memory.h"
#include "model/size_check.h"

namespace moe {

namespace {

// Floats per token the forward pass keeps for the backward pass (lower bound, see the header).
double activation_floats_per_token(const ModelConfig& c, double T, bool fused_attention) {
    const double D = double(c.hidden_size), H = double(c.num_attention_heads);
    const double qk = double(c.qk_nope_head_dim) + double(c.qk_rope_head_dim);
    const double v = double(c.v_head_dim);
    // Saved probabilities: a window's band, or the top-k keys (sparse attention, which also keeps
    // the indexer's [T, T] scores and their gradient, its queries and keys, and the chosen keys).
    const double keys = double(c.sliding_window > 0 ? c.sliding_window : c.index_topk);
    const double context = keys > 0 && keys < T ? keys : T;
    const double indexer = c.index_topk > 0
                               ? 2 * T + double(c.index_n_heads) * (2 * double(c.index_head_dim) + 2) +
                                     2 * double(c.index_head_dim) + context
                               : 0.0;
    const double attention = 8 * D + H * (2 * qk + 2 * v) + double(c.kv_lora_rank) +
                             double(c.qk_rope_head_dim) + double(c.q_lora_rank) +
                             H * (fused_attention ? 1.0 : context) +  // lse, or probabilities
                             indexer;
    const double Nr = double(c.n_routed_experts);
    const double F = double(c.moe_intermediate_size);
    const double moe_ffn = (Nr > 0 ? double(c.num_experts_per_tok) : 0) * 3 * F +
                           double(c.n_shared_experts) * 3 * F + Nr;
    const double dense_ffn = 3 * double(c.intermediate_size);
    const double L = double(c.num_hidden_layers);
    const double moe_layers = double(c.num_moe_layers());
    const double head = 2 * double(c.vocab_size);
    const double main = L * attention + moe_layers * moe_ffn + (L - moe_layers) * dense_ffn + head;
    const double mtp = double(c.num_nextn_predict_layers) *
                       (attention + (Nr > 0 ? moe_ffn : dense_ffn) + 3 * D + head);
    return main + mtp;
}

double available_on(Allocator& allocator, std::string& where) {
    if (allocator.device().is_host()) {
        where = "this machine";
        return double(host_memory_available());
    }
    size_t free_b = 0, total_b = 0;
    allocator.memory_info(free_b, total_b);
    where = allocator.device().str() + " (" + format_memory(double(total_b)) + " in all)";
    return total_b == 0 ? -1.0 : double(free_b);
}

}  // namespace

TrainingMemory estimate_training_memory(const ModelConfig& model, int64_t batch_size,
                                        int64_t seq_len, bool fused_attention) {
    TrainingMemory m;
    const double params = estimate_parameters(model);
    m.weights = 4 * params;
    m.gradients = 4 * params;
    m.optimizer = 8 * params;
    const double T = double(seq_len);
    m.activations = 4 * double(batch_size) * T * activation_floats_per_token(model, T, fused_attention);
    return m;
}

TrainingMemory estimate_training_memory(const Project& project, bool fused_attention) {
    return estimate_training_memory(project.model, project.training.batch_size,
                                    project.training.seq_len, fused_attention);
}

void check_training_fits(const Project& project, Allocator& allocator, bool fused_attention) {
    std::string where;
    const double available = available_on(allocator, where);
    const TrainingMemory need = estimate_training_memory(project, fused_attention);
    if (available < 0 || need.total() <= available) return;

    // The field to blame: the one whose reset to its default saves the most.
    const TrainingSettings defaults;
    const int64_t B = project.training.batch_size, T = project.training.seq_len;
    auto total = [&](const ModelConfig& c, int64_t b, int64_t t) {
        return estimate_training_memory(c, b, t, fused_attention).total();
    };
    std::string field = "training.batch_size";
    std::string shown = field + " " + std::to_string(B);
    double best =
        B > defaults.batch_size ? need.total() - total(project.model, defaults.batch_size, T) : 0.0;
    if (T > defaults.seq_len) {
        const double drop = need.total() - total(project.model, B, defaults.seq_len);
        if (drop > best) {
            best = drop;
            field = "training.seq_len";
            shown = field + " " + std::to_string(T);
        }
    }
    auto model_cost = [&](const ModelConfig& c) { return total(c, B, T); };
    const DominantField model_field = dominant_size_field(project.model, model_cost);
    if (model_field.saving > best) {
        field = model_field.name;
        shown = model_field.shown();
        best = model_field.saving;
    }
    throw ConfigError(field, "the run needs about " + format_memory(need.total()) + " (weights " +
                                 format_memory(need.weights) + ", gradients and AdamW moments " +
                                 format_memory(need.gradients + need.optimizer) +
                                 ", activations of one micro-batch at least " +
                                 format_memory(need.activations) + "), more than the " +
                                 format_memory(available) + " available on " + where +
                                 (best > 0 ? "; " + shown + " is what makes it large"
                                           : std::string("; choose a smaller model or batch")));
}

}  // namespace moe
