#include "model/kv_cache.h"

#include <cstdio>
#include <string>

#include "core/error.h"
#include "core/system_memory.h"

namespace moe {

namespace {

int64_t cached_layers(const ModelConfig& c) {
    return c.num_hidden_layers + c.num_nextn_predict_layers;
}

std::string mib(double bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1024.0 * 1024.0));
    return buf;
}

}  // namespace

int64_t KvCache::bytes_per_token(const ModelConfig& c) {
    const int64_t index_key = c.index_topk > 0 ? c.index_head_dim : 0;
    return cached_layers(c) * (c.kv_lora_rank + c.qk_rope_head_dim + index_key) *
           int64_t(sizeof(float));
}

int64_t KvCache::mha_bytes_per_token(const ModelConfig& c) {
    return cached_layers(c) * c.num_attention_heads * (c.qk_head_dim() + c.v_head_dim) *
           int64_t(sizeof(float));
}

KvCache::KvCache(const ModelConfig& c, Allocator& allocator, int64_t capacity)
    : capacity_(capacity) {
    if (capacity < 1 || capacity > c.max_position_embeddings)
        throw ConfigError("max_length", "the prompt and the generated tokens must fit in 1.." +
                                            std::to_string(c.max_position_embeddings) +
                                            " positions (max_position_embeddings), got " +
                                            std::to_string(capacity));
    const double need = double(bytes_per_token(c)) * double(capacity);
    size_t free_b = 0, total_b = 0;
    if (allocator.device().is_host()) {
        free_b = host_memory_available();
    } else {
        allocator.memory_info(free_b, total_b);
    }
    if (free_b > 0 && need > double(free_b))
        throw Error("the KV cache for " + std::to_string(capacity) + " positions needs " +
                    mib(need) + ", more than the " + mib(double(free_b)) + " free on " +
                    allocator.device().str() + "; generate fewer tokens (max_length)");
    for (int64_t l = 0; l < cached_layers(c); ++l) {
        latent_.emplace_back(Shape{capacity, c.kv_lora_rank}, allocator);
        rope_key_.emplace_back(Shape{capacity, c.qk_rope_head_dim}, allocator);
        if (c.index_topk > 0) index_key_.emplace_back(Shape{capacity, c.index_head_dim}, allocator);
    }
}

}  // namespace moe
