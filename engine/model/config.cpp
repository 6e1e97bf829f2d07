#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/json_fields.h"
#include "core/json_file.h"
#include "core/json_text.h"
#include "model/size_check.h"

namespace moe {

namespace {

using json = nlohmann::json;
using json_fields::format_number;

// One row per HF field: its name and the member it fills. One table drives from_json, to_json
// and the "did you mean" list, so they cannot drift apart.
using Member = std::variant<int64_t ModelConfig::*, double ModelConfig::*, bool ModelConfig::*,
                            std::string ModelConfig::*>;
struct Field {
    const char* name;
    Member member;
};

const std::vector<Field>& fields() {
    static const std::vector<Field> table = {
        {"model_type", &ModelConfig::model_type},
        {"vocab_size", &ModelConfig::vocab_size},
        {"hidden_size", &ModelConfig::hidden_size},
        {"intermediate_size", &ModelConfig::intermediate_size},
        {"moe_intermediate_size", &ModelConfig::moe_intermediate_size},
        {"num_hidden_layers", &ModelConfig::num_hidden_layers},
        {"first_k_dense_replace", &ModelConfig::first_k_dense_replace},
        {"moe_layer_freq", &ModelConfig::moe_layer_freq},
        {"num_attention_heads", &ModelConfig::num_attention_heads},
        {"num_key_value_heads", &ModelConfig::num_key_value_heads},
        {"n_routed_experts", &ModelConfig::n_routed_experts},
        {"n_shared_experts", &ModelConfig::n_shared_experts},
        {"num_experts_per_tok", &ModelConfig::num_experts_per_tok},
        {"n_group", &ModelConfig::n_group},
        {"topk_group", &ModelConfig::topk_group},
        {"routed_scaling_factor", &ModelConfig::routed_scaling_factor},
        {"norm_topk_prob", &ModelConfig::norm_topk_prob},
        {"scoring_func", &ModelConfig::scoring_func},
        {"topk_method", &ModelConfig::topk_method},
        {"aux_loss_alpha", &ModelConfig::aux_loss_alpha},
        {"seq_aux", &ModelConfig::seq_aux},
        {"q_lora_rank", &ModelConfig::q_lora_rank},
        {"kv_lora_rank", &ModelConfig::kv_lora_rank},
        {"qk_nope_head_dim", &ModelConfig::qk_nope_head_dim},
        {"qk_rope_head_dim", &ModelConfig::qk_rope_head_dim},
        {"v_head_dim", &ModelConfig::v_head_dim},
        {"num_nextn_predict_layers", &ModelConfig::num_nextn_predict_layers},
        {"max_position_embeddings", &ModelConfig::max_position_embeddings},
        {"sliding_window", &ModelConfig::sliding_window},
        {"index_topk", &ModelConfig::index_topk},
        {"index_n_heads", &ModelConfig::index_n_heads},
        {"index_head_dim", &ModelConfig::index_head_dim},
        {"rope_theta", &ModelConfig::rope_theta},
        {"rms_norm_eps", &ModelConfig::rms_norm_eps},
        {"initializer_range", &ModelConfig::initializer_range},
        {"hidden_act", &ModelConfig::hidden_act},
        {"tie_word_embeddings", &ModelConfig::tie_word_embeddings},
    };
    return table;
}

// Fields HF or DeepSeek write that the engine does not use: kept verbatim for to_json.
// attention_dropout and attention_bias are also checked (see check_bookkeeping).
const std::vector<std::string>& bookkeeping_fields() {
    static const std::vector<std::string> names = {
        "architectures", "auto_map", "torch_dtype", "transformers_version", "use_cache",
        "pad_token_id", "bos_token_id", "eos_token_id", "pretraining_tp", "ep_size",
        "rope_interleave", "attention_dropout", "attention_bias", "quantization_config",
    };
    return names;
}

// Derived values that transformers' DeepseekV3Config serializes; accepted when consistent and
// not stored (to_json recomputes nothing from them, the source fields are authoritative).
const std::vector<std::string>& derived_fields() {
    static const std::vector<std::string> names = {"qk_head_dim", "head_dim"};
    return names;
}

std::vector<std::string> known_names() {
    std::vector<std::string> names;
    for (const auto& f : fields()) names.emplace_back(f.name);
    for (const auto& n : bookkeeping_fields()) names.push_back(n);
    names.emplace_back("rope_scaling");
    for (const auto& n : derived_fields()) names.push_back(n);
    return names;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

void check_bookkeeping(const std::string& name, const json& value) {
    if (name == "attention_dropout") {
        const double p = json_fields::get_double(value, name);
        if (p != 0.0)
            throw ConfigError(name, "must be 0 (the engine has no attention dropout), got " +
                                        format_number(p));
    } else if (name == "attention_bias") {
        if (json_fields::get_bool(value, name))
            throw ConfigError(name, "must be false (MLA projections have no bias), got true");
    }
}

// "rope_scaling": null, or YaRN. HF writes the kind as "type" (DeepSeek's configs) or
// "rope_type" (newer transformers); other kinds (linear, dynamic, llama3) are refused.
RopeScaling read_rope_scaling(const json& v) {
    RopeScaling r;
    if (v.is_null()) return r;
    json_fields::require_object(v, "rope_scaling");
    std::string kind;
    for (const char* k : {"type", "rope_type"})
        if (v.contains(k)) kind = json_fields::get_string(v[k], std::string("rope_scaling.") + k);
    if (kind != "yarn")
        throw ConfigError("rope_scaling.type",
                          "only \"yarn\" rope scaling is supported (or null for plain RoPE), got " +
                              (kind.empty() ? std::string("no type") : "\"" + kind + "\""));
    r.yarn = true;
    for (const auto& [key, val] : v.items()) {
        const std::string f = "rope_scaling." + key;
        if (key == "type" || key == "rope_type") continue;
        if (key == "factor") r.factor = json_fields::get_double(val, f);
        else if (key == "original_max_position_embeddings") r.original_max_position_embeddings = json_fields::get_int(val, f);
        else if (key == "beta_fast") r.beta_fast = json_fields::get_double(val, f);
        else if (key == "beta_slow") r.beta_slow = json_fields::get_double(val, f);
        else if (key == "mscale") r.mscale = json_fields::get_double(val, f);
        else if (key == "mscale_all_dim") r.mscale_all_dim = json_fields::get_double(val, f);
        else
            json_fields::reject_unknown(key, {"type", "rope_type", "factor",
                                              "original_max_position_embeddings", "beta_fast",
                                              "beta_slow", "mscale", "mscale_all_dim"},
                                        "rope_scaling");
    }
    if (!v.contains("factor")) throw ConfigError("rope_scaling.factor", "missing (YaRN needs it)");
    return r;
}

json write_rope_scaling(const RopeScaling& r) {
    if (!r.yarn) return nullptr;
    return {{"type", "yarn"},
            {"factor", r.factor},
            {"original_max_position_embeddings", r.original_max_position_embeddings},
            {"beta_fast", r.beta_fast},
            {"beta_slow", r.beta_slow},
            {"mscale", r.mscale},
            {"mscale_all_dim", r.mscale_all_dim}};
}

void read_field(ModelConfig& c, const Field& f, const json& value) {
    const std::string name = f.name;
    std::visit(
        [&](auto member) {
            using T = std::remove_reference_t<decltype(c.*member)>;
            if constexpr (std::is_same_v<T, int64_t>) {
                // HF writes q_lora_rank null for the plain q projection (V2-Lite), and
                // Mistral/Qwen2 write sliding_window null for full attention.
                if ((name == "q_lora_rank" || name == "sliding_window") && value.is_null())
                    c.*member = 0;
                else
                    c.*member = json_fields::get_int(value, name);
            } else if constexpr (std::is_same_v<T, double>) {
                c.*member = json_fields::get_double(value, name);
            } else if constexpr (std::is_same_v<T, bool>) {
                c.*member = json_fields::get_bool(value, name);
            } else {
                c.*member = json_fields::get_string(value, name);
            }
        },
        f.member);
}

// "must be > 0, got 0" style helpers: the field and its value are always in the message.
void require(bool ok, const char* field, const std::string& rule, const std::string& got) {
    if (!ok) throw ConfigError(field, rule + ", got " + got);
}
void require_int(bool ok, const char* field, const std::string& rule, int64_t value) {
    require(ok, field, rule, std::to_string(value));
}
void require_positive(const char* field, int64_t value) {
    require_int(value > 0, field, "must be > 0", value);
}
void require_positive(const char* field, double value) {
    require(std::isfinite(value) && value > 0, field, "must be a finite number > 0",
            format_number(value));
}

// Upper bounds of the size fields: far above any published model (DeepSeek-V3: hidden 7168,
// 256 experts, 61 layers, vocab 129280, 163840 positions), low enough that no product of two
// of them overflows int64. The parameter limit (size_check.h) bounds the model as a whole.
struct SizeLimit {
    const char* field;
    int64_t ModelConfig::*member;
    int64_t max;
};
const std::vector<SizeLimit>& size_limits() {
    static const std::vector<SizeLimit> limits = {
        {"vocab_size", &ModelConfig::vocab_size, int64_t(1) << 24},
        {"hidden_size", &ModelConfig::hidden_size, int64_t(1) << 20},
        {"intermediate_size", &ModelConfig::intermediate_size, int64_t(1) << 22},
        {"moe_intermediate_size", &ModelConfig::moe_intermediate_size, int64_t(1) << 22},
        {"num_hidden_layers", &ModelConfig::num_hidden_layers, 4096},
        {"first_k_dense_replace", &ModelConfig::first_k_dense_replace, 4096},
        {"num_attention_heads", &ModelConfig::num_attention_heads, 4096},
        {"num_key_value_heads", &ModelConfig::num_key_value_heads, 4096},
        {"n_routed_experts", &ModelConfig::n_routed_experts, 65536},
        {"n_shared_experts", &ModelConfig::n_shared_experts, 1024},
        {"num_experts_per_tok", &ModelConfig::num_experts_per_tok, 65536},
        {"n_group", &ModelConfig::n_group, 65536},
        {"topk_group", &ModelConfig::topk_group, 65536},
        {"q_lora_rank", &ModelConfig::q_lora_rank, int64_t(1) << 20},
        {"kv_lora_rank", &ModelConfig::kv_lora_rank, int64_t(1) << 20},
        {"qk_nope_head_dim", &ModelConfig::qk_nope_head_dim, 65536},
        {"qk_rope_head_dim", &ModelConfig::qk_rope_head_dim, 65536},
        {"v_head_dim", &ModelConfig::v_head_dim, 65536},
        {"num_nextn_predict_layers", &ModelConfig::num_nextn_predict_layers, 64},
        {"max_position_embeddings", &ModelConfig::max_position_embeddings, int64_t(1) << 24},
        {"sliding_window", &ModelConfig::sliding_window, int64_t(1) << 24},
        {"index_topk", &ModelConfig::index_topk, int64_t(1) << 24},
        {"index_n_heads", &ModelConfig::index_n_heads, 4096},
        {"index_head_dim", &ModelConfig::index_head_dim, 65536},
        {"moe_layer_freq", &ModelConfig::moe_layer_freq, 4096},
    };
    return limits;
}

}  // namespace

int64_t ModelConfig::size_limit(const std::string& field) {
    for (const SizeLimit& l : size_limits())
        if (field == l.field) return l.max;
    return 0;
}

int64_t ModelConfig::num_moe_layers() const {
    if (n_routed_experts <= 0) return 0;
    return std::max<int64_t>(0, num_hidden_layers - std::max<int64_t>(0, first_k_dense_replace));
}

double yarn_mscale(double scale, double mscale) {
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

double ModelConfig::attention_scale() const {
    double s = 1.0 / std::sqrt(static_cast<double>(qk_head_dim()));
    // YaRN: the softmax temperature of the long-context model (DeepSeek applies it only when
    // mscale_all_dim is set).
    if (rope_scaling.yarn && rope_scaling.mscale_all_dim != 0.0) {
        const double m = yarn_mscale(rope_scaling.factor, rope_scaling.mscale_all_dim);
        s *= m * m;
    }
    return s;
}

void ModelConfig::validate() const {
    require(model_type == "deepseek_v3", "model_type", "must be \"deepseek_v3\"",
            "\"" + model_type + "\"");
    for (const SizeLimit& l : size_limits())
        require_int(this->*l.member <= l.max, l.field,
                    "must be <= " + std::to_string(l.max) + " (the engine's size limit)",
                    this->*l.member);

    // Shapes.
    require_positive("vocab_size", vocab_size);
    require_positive("hidden_size", hidden_size);
    require_positive("num_hidden_layers", num_hidden_layers);
    require_positive("num_attention_heads", num_attention_heads);
    require_int(num_key_value_heads == num_attention_heads, "num_key_value_heads",
                "must equal num_attention_heads (" + std::to_string(num_attention_heads) +
                    "): MLA has no grouped-query attention",
                num_key_value_heads);
    require_int(q_lora_rank >= 0, "q_lora_rank", "must be >= 0 (0: plain q_proj)", q_lora_rank);
    require_positive("kv_lora_rank", kv_lora_rank);
    require_int(qk_nope_head_dim >= 0, "qk_nope_head_dim", "must be >= 0", qk_nope_head_dim);
    require_int(qk_rope_head_dim > 0 && qk_rope_head_dim % 2 == 0, "qk_rope_head_dim",
                "must be even and > 0 (RoPE rotates pairs)", qk_rope_head_dim);
    require_positive("v_head_dim", v_head_dim);
    require_positive("max_position_embeddings", max_position_embeddings);
    require_int(sliding_window >= 0, "sliding_window",
                "must be >= 0 (keys a query sees, itself included; 0: full causal attention)",
                sliding_window);
    require_int(index_topk >= 0, "index_topk",
                "must be >= 0 (keys each query attends to; 0: dense attention)", index_topk);
    if (index_topk > 0) {
        require_int(sliding_window == 0, "sliding_window",
                    "must be 0 with index_topk > 0 (the indexer chooses the keys; a window and "
                    "top-k selection do not combine)",
                    sliding_window);
        require_positive("index_n_heads", index_n_heads);
        require_int(index_head_dim >= qk_rope_head_dim, "index_head_dim",
                    "must be >= qk_rope_head_dim (" + std::to_string(qk_rope_head_dim) +
                        "): the indexer rotates its last qk_rope_head_dim dimensions",
                    index_head_dim);
    }

    // Layer layout.
    require_int(first_k_dense_replace >= 0 && first_k_dense_replace <= num_hidden_layers,
                "first_k_dense_replace",
                "must be in [0, num_hidden_layers = " + std::to_string(num_hidden_layers) + "]",
                first_k_dense_replace);
    require_int(moe_layer_freq == 1, "moe_layer_freq",
                "only 1 is supported (every layer from first_k_dense_replace on is MoE)",
                moe_layer_freq);
    require_int(n_routed_experts >= 0, "n_routed_experts", "must be >= 0 (0: dense model)",
                n_routed_experts);
    require_int(n_shared_experts >= 0, "n_shared_experts", "must be >= 0", n_shared_experts);
    const bool has_dense_layer = first_k_dense_replace > 0 || n_routed_experts == 0;
    if (has_dense_layer)
        require_int(intermediate_size > 0, "intermediate_size",
                    "must be > 0 (the model has dense FFN layers)", intermediate_size);
    const bool has_experts = n_routed_experts > 0;
    if (has_experts)
        require_int(moe_intermediate_size > 0, "moe_intermediate_size",
                    "must be > 0 (the model has experts)", moe_intermediate_size);
    require_int(num_nextn_predict_layers >= 0, "num_nextn_predict_layers",
                "must be >= 0 (MTP depth; 0 disables MTP)", num_nextn_predict_layers);

    // Routing.
    require(scoring_func == "sigmoid" || scoring_func == "softmax", "scoring_func",
            "must be \"sigmoid\" or \"softmax\"", "\"" + scoring_func + "\"");
    require(topk_method == "noaux_tc" || topk_method == "greedy" ||
                topk_method == "group_limited_greedy",
            "topk_method", "must be \"noaux_tc\", \"greedy\" or \"group_limited_greedy\"",
            "\"" + topk_method + "\"");
    require(!(topk_method == "noaux_tc" && scoring_func != "sigmoid"), "topk_method",
            "\"noaux_tc\" requires scoring_func \"sigmoid\" (the bias correction is defined for "
            "independent sigmoid scores, not softmax); scoring_func is \"" + scoring_func + "\"",
            "\"noaux_tc\"");
    require_int(n_group >= 1, "n_group", "must be >= 1", n_group);
    require_int(n_routed_experts % n_group == 0, "n_group",
                "must divide n_routed_experts (" + std::to_string(n_routed_experts) + ")", n_group);
    require_int(topk_group >= 1 && topk_group <= n_group, "topk_group",
                "must be in [1, n_group = " + std::to_string(n_group) + "]", topk_group);
    if (has_experts) {
        require_int(num_experts_per_tok >= 1 && num_experts_per_tok <= n_routed_experts,
                    "num_experts_per_tok",
                    "must be in [1, n_routed_experts = " + std::to_string(n_routed_experts) + "]",
                    num_experts_per_tok);
        const int64_t per_group = n_routed_experts / n_group;
        const int64_t reachable = topk_group * per_group;
        require_int(num_experts_per_tok <= reachable, "num_experts_per_tok",
                    "top-k larger than the experts allowed by topk_group (topk_group " +
                        std::to_string(topk_group) + " x " + std::to_string(per_group) +
                        " experts per group = " + std::to_string(reachable) + ")",
                    num_experts_per_tok);
        if (has_selection_bias() && n_group > 1)
            require_int(per_group >= 2, "n_group",
                        "leaves " + std::to_string(per_group) +
                            " expert(s) per group; noaux_tc scores a group by the sum of its "
                            "top-2 experts, so each group needs >= 2 (n_routed_experts " +
                            std::to_string(n_routed_experts) + ")",
                        n_group);
    }
    require_positive("routed_scaling_factor", routed_scaling_factor);
    require(std::isfinite(aux_loss_alpha) && aux_loss_alpha >= 0, "aux_loss_alpha",
            "must be >= 0 (0 disables the sequence-wise balance loss)",
            format_number(aux_loss_alpha));

    // Numerics and the rest.
    require_positive("rms_norm_eps", rms_norm_eps);
    require_positive("rope_theta", rope_theta);
    if (rope_scaling.yarn) {
        const RopeScaling& r = rope_scaling;
        require(std::isfinite(r.factor) && r.factor >= 1.0 && r.factor <= 1e4, "rope_scaling.factor",
                "must be in [1, 10000]", format_number(r.factor));
        require(r.original_max_position_embeddings >= 1 &&
                    r.original_max_position_embeddings <= max_position_embeddings,
                "rope_scaling.original_max_position_embeddings",
                "must be in [1, max_position_embeddings = " + std::to_string(max_position_embeddings) + "]",
                std::to_string(r.original_max_position_embeddings));
        require(std::isfinite(r.beta_fast) && r.beta_fast > 0, "rope_scaling.beta_fast",
                "must be > 0", format_number(r.beta_fast));
        require(std::isfinite(r.beta_slow) && r.beta_slow > 0 && r.beta_slow <= r.beta_fast,
                "rope_scaling.beta_slow", "must be > 0 and <= beta_fast", format_number(r.beta_slow));
        for (const auto& [name, v] : {std::pair{"rope_scaling.mscale", r.mscale},
                                      std::pair{"rope_scaling.mscale_all_dim", r.mscale_all_dim}})
            require(std::isfinite(v) && v >= 0 && v <= 100, name, "must be in [0, 100]",
                    format_number(v));
    }
    require_positive("initializer_range", initializer_range);
    require(hidden_act == "silu", "hidden_act", "must be \"silu\" (SwiGLU experts)",
            "\"" + hidden_act + "\"");
    require(!tie_word_embeddings, "tie_word_embeddings",
            "must be false (DeepSeek-V3 has an untied output head)", "true");

    // The model as a whole, after every field is known to be in range.
    const double params = estimate_parameters(*this);
    if (params > kMaxModelParameters) {
        const DominantField culprit = dominant_size_field(*this, estimate_parameters);
        char count[64];
        std::snprintf(count, sizeof count, "%.3g parameters, more than the %.0e the engine takes",
                      params, kMaxModelParameters);
        throw ConfigError(culprit.name.empty() ? std::string("hidden_size") : culprit.name,
                          "makes the model " + std::string(count) + ", got " +
                              std::to_string(culprit.value));
    }
}

ModelConfig ModelConfig::from_json(const json& j) {
    json_fields::require_object(j, "model config");
    ModelConfig c;
    for (const auto& [name, value] : j.items()) {
        const auto& table = fields();
        const auto it = std::find_if(table.begin(), table.end(),
                                     [&name = name](const Field& f) { return name == f.name; });
        if (it != table.end()) {
            read_field(c, *it, value);
        } else if (name == "rope_scaling") {
            c.rope_scaling = read_rope_scaling(value);
        } else if (contains(bookkeeping_fields(), name)) {
            check_bookkeeping(name, value);
            // Kept verbatim and written back inside a project: a deep value would make a project
            // that saves but no longer loads (core/json_text.h's depth limit).
            if (json_nesting_depth(value.dump(), 8) > 8)
                throw ConfigError(name, "nested deeper than 8 levels; a real " + name +
                                            " is 2 or 3 levels deep");
            c.passthrough[name] = value.dump();
        } else if (!contains(derived_fields(), name)) {
            json_fields::reject_unknown(name, known_names(), "the model config");
        }
    }
    // Derived fields must agree with the fields they are derived from.
    if (j.contains("qk_head_dim")) {
        const int64_t v = json_fields::get_int(j["qk_head_dim"], "qk_head_dim");
        if (v != c.qk_head_dim())
            throw ConfigError("qk_head_dim",
                              "must equal qk_nope_head_dim + qk_rope_head_dim (" +
                                  std::to_string(c.qk_head_dim()) + "), got " + std::to_string(v));
    }
    if (j.contains("head_dim")) {
        const int64_t v = json_fields::get_int(j["head_dim"], "head_dim");
        if (v != c.qk_rope_head_dim)
            throw ConfigError("head_dim", "must equal qk_rope_head_dim (" +
                                              std::to_string(c.qk_rope_head_dim) + "), got " +
                                              std::to_string(v));
    }
    return c;
}

json ModelConfig::to_json() const {
    json j = json::object();
    for (const auto& [name, text] : passthrough) j[name] = json::parse(text);
    for (const auto& f : fields()) {
        std::visit([&](auto member) { j[f.name] = this->*member; }, f.member);
    }
    j["rope_scaling"] = write_rope_scaling(rope_scaling);
    // HF's DeepseekV3Attention builds the plain q_proj when q_lora_rank is None, not 0.
    if (q_lora_rank == 0) j["q_lora_rank"] = nullptr;
    // Full attention is the absence of the field, so configs without a window stay unchanged.
    if (sliding_window == 0) j.erase("sliding_window");
    // Dense attention is the absence of the indexer fields.
    if (index_topk == 0)
        for (const char* f : {"index_topk", "index_n_heads", "index_head_dim"}) j.erase(f);
    return j;
}

ModelConfig ModelConfig::load(const std::string& path) {
    const json j = read_json_file(path);
    try {
        ModelConfig c = from_json(j);
        c.validate();
        return c;
    } catch (const ConfigError& e) {
        throw ConfigFileError(path, e);
    }
}

void ModelConfig::save(const std::string& path) const { write_json_file(path, to_json()); }

}  // namespace moe
