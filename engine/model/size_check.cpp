#include "model/size_check.h"

#include <cstdio>
#include <vector>

#include "core/allocator.h"
#include "core/error.h"
#include "core/system_memory.h"

namespace moe {

namespace {

struct SizeField {
    const char* name;
    int64_t ModelConfig::*member;
};

// The fields that multiply into the model's size, in the order messages prefer them.
const std::vector<SizeField>& size_fields() {
    static const std::vector<SizeField> fields = {
        {"hidden_size", &ModelConfig::hidden_size},
        {"n_routed_experts", &ModelConfig::n_routed_experts},
        {"moe_intermediate_size", &ModelConfig::moe_intermediate_size},
        {"intermediate_size", &ModelConfig::intermediate_size},
        {"num_hidden_layers", &ModelConfig::num_hidden_layers},
        {"vocab_size", &ModelConfig::vocab_size},
        {"num_attention_heads", &ModelConfig::num_attention_heads},
        {"n_shared_experts", &ModelConfig::n_shared_experts},
        {"num_experts_per_tok", &ModelConfig::num_experts_per_tok},
        {"q_lora_rank", &ModelConfig::q_lora_rank},
        {"kv_lora_rank", &ModelConfig::kv_lora_rank},
        {"qk_nope_head_dim", &ModelConfig::qk_nope_head_dim},
        {"qk_rope_head_dim", &ModelConfig::qk_rope_head_dim},
        {"v_head_dim", &ModelConfig::v_head_dim},
        {"num_nextn_predict_layers", &ModelConfig::num_nextn_predict_layers},
        {"max_position_embeddings", &ModelConfig::max_position_embeddings},
    };
    return fields;
}

}  // namespace

double estimate_parameters(const ModelConfig& c) {
    const double D = double(c.hidden_size), V = double(c.vocab_size);
    const double H = double(c.num_attention_heads), L = double(c.num_hidden_layers);
    const double qk = double(c.qk_nope_head_dim) + double(c.qk_rope_head_dim);
    const double q_lora = double(c.q_lora_rank), kv_lora = double(c.kv_lora_rank);
    double attention = q_lora > 0 ? q_lora * D + H * qk * q_lora : H * qk * D;
    attention += (kv_lora + double(c.qk_rope_head_dim)) * D;
    attention += H * (double(c.qk_nope_head_dim) + double(c.v_head_dim)) * kv_lora;
    attention += D * H * double(c.v_head_dim);
    attention += (q_lora > 0 ? q_lora : 0) + kv_lora;  // q_a / kv_a layernorms
    const double block_norms = 2 * D;
    const double Nr = double(c.n_routed_experts);
    const double expert = 3 * D * double(c.moe_intermediate_size);
    const double moe_ffn = Nr * expert + expert * double(c.n_shared_experts) + Nr * D +
                           (c.has_selection_bias() ? Nr : 0);
    const double dense_ffn = 3 * D * double(c.intermediate_size);
    const double first_dense = double(c.first_k_dense_replace < 0 ? 0 : c.first_k_dense_replace);
    const double moe_layers = Nr > 0 ? (L > first_dense ? L - first_dense : 0) : 0;
    const double dense_layers = L - moe_layers;
    const double main = 2 * V * D + L * (attention + block_norms) + dense_layers * dense_ffn +
                        moe_layers * moe_ffn + D;
    const double mtp_module =
        2 * D + 2 * D * D + attention + block_norms + (Nr > 0 ? moe_ffn : dense_ffn) + D;
    return main + double(c.num_nextn_predict_layers) * mtp_module;
}

DominantField dominant_size_field(const ModelConfig& config,
                                  const std::function<double(const ModelConfig&)>& cost) {
    const ModelConfig defaults;
    const double base = cost(config);
    DominantField best;
    for (const SizeField& f : size_fields()) {
        if (config.*f.member <= defaults.*f.member) continue;  // only fields above the default
        ModelConfig smaller = config;
        smaller.*f.member = defaults.*f.member;
        const double saving = base - cost(smaller);
        if (saving > best.saving) best = {f.name, config.*f.member, saving};
    }
    return best;
}

std::string format_memory(double bytes) {
    const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 6) {
        bytes /= 1024.0;
        ++u;
    }
    char buf[48];
    if (u == 0)
        std::snprintf(buf, sizeof buf, "%.0f bytes", bytes);
    else if (bytes >= 1e4)
        std::snprintf(buf, sizeof buf, "%.3g %s", bytes, units[u]);
    else
        std::snprintf(buf, sizeof buf, "%.2f %s", bytes, units[u]);
    return buf;
}

void check_model_fits(const ModelConfig& config, Allocator& allocator, bool with_gradients) {
    const double per_param = with_gradients ? 8.0 : 4.0;  // fp32 weights (+ fp32 gradients)
    auto bytes_of = [per_param](const ModelConfig& c) {
        return per_param * estimate_parameters(c);
    };
    const double need = bytes_of(config);
    double available = 0, total = 0;
    const bool host = allocator.device().is_host();
    if (host) {
        available = double(host_memory_available());
    } else {
        size_t free_b = 0, total_b = 0;
        allocator.memory_info(free_b, total_b);
        if (total_b == 0) return;  // not known
        available = double(free_b);
        total = double(total_b);
    }
    if (need <= available) return;
    char count[32];
    std::snprintf(count, sizeof count, "%.3g", estimate_parameters(config));
    const std::string what = std::string("the model's ") + count + " parameters (fp32 weights" +
                             (with_gradients ? " and gradients" : "") + ")";
    const std::string where =
        host ? std::string("this machine")
             : allocator.device().str() + " (" + format_memory(total) + " in all)";
    // Blame a field only when putting it back to its default would make the model fit, or
    // when it accounts for nine tenths of the size: a small model on a small device is not
    // made large by any one field.
    const DominantField culprit = dominant_size_field(config, bytes_of);
    if (!culprit.name.empty() &&
        (need - culprit.saving <= available || culprit.saving >= 0.9 * need))
        throw ConfigError(culprit.name, "the model needs " + format_memory(need) + " for " + what +
                                            ", more than the " + format_memory(available) +
                                            " available on " + where + "; " + culprit.shown() +
                                            " is what makes it large");
    throw Error((host ? std::string("not enough host memory")
                      : "not enough memory on " + allocator.device().str()) +
                " for " + what + ": " + format_memory(need) + " needed, " +
                format_memory(available) +
                (host ? " available" : " free of " + format_memory(total)) +
                "; choose a smaller model (hidden_size, n_routed_experts, num_hidden_layers)" +
                (host ? "" : " or train on the CPU"));
}

}  // namespace moe
