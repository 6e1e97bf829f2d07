#include "model_fixtures.h"

#include "test_support.h"

namespace moe::test {

ModelConfig tiny_full_config() {
    ModelConfig c;
    c.vocab_size = 32;
    c.hidden_size = 16;
    c.intermediate_size = 24;
    c.moe_intermediate_size = 8;
    c.num_hidden_layers = 2;
    c.first_k_dense_replace = 1;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 2;
    c.n_routed_experts = 8;
    c.n_shared_experts = 1;
    c.num_experts_per_tok = 2;
    c.n_group = 2;
    c.topk_group = 1;
    c.routed_scaling_factor = 2.5;
    c.norm_topk_prob = true;
    c.scoring_func = "sigmoid";
    c.topk_method = "noaux_tc";
    c.aux_loss_alpha = 0.01;
    c.q_lora_rank = 8;
    c.kv_lora_rank = 8;
    c.qk_nope_head_dim = 4;
    c.qk_rope_head_dim = 4;
    c.v_head_dim = 4;
    c.num_nextn_predict_layers = 1;
    c.max_position_embeddings = 64;
    c.initializer_range = 0.2;
    return c;
}

ModelConfig tiny_softmax_config() {
    ModelConfig c = tiny_full_config();
    c.scoring_func = "softmax";
    c.topk_method = "greedy";
    c.n_group = 1;
    c.topk_group = 1;
    c.norm_topk_prob = false;
    c.routed_scaling_factor = 1.0;
    c.q_lora_rank = 0;
    c.num_nextn_predict_layers = 0;
    c.aux_loss_alpha = 0.0;
    return c;
}

Batch random_batch(int64_t vocab, int64_t B, int64_t T, uint64_t seed) {
    Batch b;
    b.batch = B;
    b.seq_len = T;
    std::vector<float> u = random_vector(B * (T + 1), seed, 1.0f);
    b.tokens.resize(u.size());
    for (size_t i = 0; i < u.size(); ++i)
        b.tokens[i] = static_cast<int32_t>((u[i] * 0.5f + 0.5f) * static_cast<float>(vocab - 1) + 0.5f);
    return b;
}

Project shrunk_tiny_tasks(int64_t steps) {
    Project p = Project::load(source_path("projects/tiny-tasks.json"));
    ModelConfig& m = p.model;
    m.hidden_size = 32;
    m.intermediate_size = 64;
    m.moe_intermediate_size = 16;
    m.num_hidden_layers = 2;
    m.n_routed_experts = 8;
    m.num_experts_per_tok = 2;
    m.n_group = 2;
    m.topk_group = 1;
    TrainingSettings& t = p.training;
    t.seq_len = 16;
    t.batch_size = 2;
    t.steps = steps;
    t.optimizer.schedule.total_steps = steps;
    t.optimizer.schedule.warmup_steps = 2;
    t.threads = 1;
    t.eval_batches = 2;
    t.probe_tokens = 32;
    t.checkpoint_every = 0;
    return p;
}

std::vector<int32_t> routing_signature(const Model& model) {
    std::vector<int32_t> sig;
    for (const RoutingRecord& r : model.routing())
        sig.insert(sig.end(), r.topk_idx.begin(), r.topk_idx.end());
    return sig;
}

void spread_router(Model& model, uint64_t seed) {
    std::vector<float> host;  // drawn on the host, copied to wherever the model lives
    for (Parameter* p : model.parameters().all()) {
        const std::string& n = p->name;
        host.resize(static_cast<size_t>(p->value.numel()));
        if (n.ends_with(".mlp.gate.weight")) {
            fill_uniform(host.data(), p->value.numel(), seed + 1, 1.0f);
            p->value.copy_from_host(host.data());
        }
        if (n.find("e_score_correction_bias") != std::string::npos) {
            fill_uniform(host.data(), p->value.numel(), seed + 2, 0.05f);
            p->value.copy_from_host(host.data());
        }
        ++seed;
    }
}

}  // namespace moe::test
