#pragma once
// ModelConfig: the model's shape, with the field names of HuggingFace's DeepseekV3Config so a
// `config.json` from HF tooling or DeepSeek's release reads and writes unchanged.
// See docs/model-config.md for every field, its meaning and its valid range.
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/error.h"

namespace moe {

// A ConfigError found in a file: what() starts with the file's path, field() stays the bare
// field name so callers (the GUI's editor) can still point at the field.
class ConfigFileError : public ConfigError {
public:
    ConfigFileError(std::string path, const ConfigError& error)
        : ConfigError(error), path_(std::move(path)), message_(path_ + ": " + error.what()) {}
    const char* what() const noexcept override { return message_.c_str(); }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    std::string message_;
};

// YaRN rope scaling as DeepSeek defines it (config.json "rope_scaling", e.g. DeepSeek-V3:
// {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
// "beta_slow": 1, "mscale": 1, "mscale_all_dim": 1}); null is plain RoPE. The rotary
// frequencies blend base^(-2i/d) and base^(-2i/d) / factor over a ramp between the pair indices
// where beta_fast and beta_slow rotations fit original_max_position_embeddings; cos and sin are
// multiplied by m(factor, mscale) / m(factor, mscale_all_dim) and the softmax scale by
// m(factor, mscale_all_dim)^2, with m(s, k) = 0.1 k ln(s) + 1 (1 when s <= 1).
struct RopeScaling {
    bool yarn = false;
    double factor = 1.0;
    int64_t original_max_position_embeddings = 4096;
    double beta_fast = 32.0;
    double beta_slow = 1.0;
    double mscale = 1.0;
    double mscale_all_dim = 0.0;
    bool operator==(const RopeScaling&) const = default;
};
// YaRN's m(s, k) above.
double yarn_mscale(double scale, double mscale);

struct ModelConfig {
    std::string model_type = "deepseek_v3";
    int64_t vocab_size = 256;
    int64_t hidden_size = 128;
    int64_t intermediate_size = 256;      // dense FFN width (first_k_dense_replace layers)
    int64_t moe_intermediate_size = 64;   // width of one routed or shared expert
    int64_t num_hidden_layers = 4;
    int64_t first_k_dense_replace = 1;    // layers [0, k) use a dense FFN, the rest MoE
    int64_t moe_layer_freq = 1;           // only 1 is supported (every layer after k is MoE)
    int64_t num_attention_heads = 4;
    int64_t num_key_value_heads = 4;      // MLA has no GQA; must equal num_attention_heads
    int64_t n_routed_experts = 16;
    int64_t n_shared_experts = 1;
    int64_t num_experts_per_tok = 4;      // top-k
    int64_t n_group = 4;                  // expert groups for group-limited routing
    int64_t topk_group = 2;               // groups kept per token
    double routed_scaling_factor = 2.5;
    bool norm_topk_prob = true;           // renormalize the chosen weights to sum 1
    std::string scoring_func = "sigmoid"; // "sigmoid" (V3) or "softmax" (V2)
    std::string topk_method = "noaux_tc"; // "noaux_tc" (bias-corrected, V3), "greedy",
                                          // "group_limited_greedy" (no bias)
    double aux_loss_alpha = 0.0;          // complementary sequence-wise balance loss weight
    bool seq_aux = true;                  // aux loss per sequence (true) or per batch (false)
    int64_t q_lora_rank = 64;             // 0: plain q_proj
    int64_t kv_lora_rank = 32;
    int64_t qk_nope_head_dim = 16;
    int64_t qk_rope_head_dim = 16;
    int64_t v_head_dim = 16;
    int64_t num_nextn_predict_layers = 0; // MTP depth D
    int64_t max_position_embeddings = 1024;
    int64_t sliding_window = 0;           // query i sees keys (i - W, i]; 0 (or null) = full causal
    // Dynamic top-k sparse attention (DeepSeek-V3.2's names): a lightweight indexer of
    // index_n_heads heads of index_head_dim scores the causal keys of each query and attention
    // runs over the index_topk best only; 0 = dense attention (model/mla_attention.h).
    int64_t index_topk = 0;
    int64_t index_n_heads = 4;
    int64_t index_head_dim = 32;
    double rope_theta = 10000.0;
    RopeScaling rope_scaling;             // "rope_scaling": null or YaRN
    double rms_norm_eps = 1e-6;
    double initializer_range = 0.02;
    std::string hidden_act = "silu";
    bool tie_word_embeddings = false;

    // HF/DeepSeek bookkeeping fields that the engine accepts but does not use (architectures,
    // torch_dtype, quantization_config, ...): name -> their JSON text, written back by to_json so
    // a checkpoint's config.json round-trips with its fields.
    std::map<std::string, std::string> passthrough;

    bool operator==(const ModelConfig&) const = default;

    // Derived quantities used throughout the engine.
    int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
    bool is_moe_layer(int64_t layer) const {
        return n_routed_experts > 0 && layer >= first_k_dense_replace;
    }
    int64_t num_moe_layers() const;        // main layers only, MTP layers excluded
    bool has_selection_bias() const { return topk_method == "noaux_tc"; }
    double attention_scale() const;        // 1/sqrt(qk_head_dim), times YaRN's mscale^2

    // Throws ConfigError naming the first invalid field and its value. Size fields have upper
    // bounds (size_limit) and the whole model at most kMaxModelParameters (model/size_check.h),
    // so size arithmetic on a validated config cannot overflow int64.
    void validate() const;
    // The upper bound validate() puts on a size field (HF name); 0 for other fields.
    static int64_t size_limit(const std::string& field);

    // JSON with HF field names. from_json rejects unknown fields (naming them) but accepts the
    // HF/DeepSeek bookkeeping fields (architectures, torch_dtype, quantization_config, ...).
    // from_json checks types, not ranges: call validate() (load does both).
    static ModelConfig from_json(const nlohmann::json& j);
    nlohmann::json to_json() const;

    // config.json files; errors name the path. load parses and validates (FileError for an
    // unreadable file or invalid JSON, ConfigFileError for bad fields); save writes pretty JSON
    // atomically (temporary file + rename) and does not validate, so drafts can be kept.
    static ModelConfig load(const std::string& path);
    void save(const std::string& path) const;
};

}  // namespace moe
