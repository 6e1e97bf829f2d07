#pragma once
// KvCache: what generation keeps per token, in DeepSeek's absorbed MLA form. For every decoder
// layer (main layers, then the MTP layers) and every position: the normalized compressed latent
// c (kv_lora_rank values) and the rotated shared key k_pe (qk_rope_head_dim values) - not the
// per-head keys and values, which the absorbed attention never forms. For DeepSeek-V3 that is
// (512 + 64) values per token and layer against 2 x 128 x 128 (+ 128 x 64) for the same
// attention as plain multi-head attention.
#include <cstdint>
#include <vector>

#include "core/allocator.h"
#include "core/tensor.h"
#include "model/config.h"

namespace moe {

class KvCache {
public:
    // `capacity` positions for the config's main and MTP layers, in `allocator`'s memory.
    // Error before allocating when capacity exceeds max_position_embeddings or the memory it
    // needs is more than the device has free.
    KvCache(const ModelConfig& config, Allocator& allocator, int64_t capacity);

    int64_t capacity() const { return capacity_; }
    int64_t layers() const { return static_cast<int64_t>(latent_.size()); }
    Tensor& latent(int64_t layer) {
        return latent_.at(static_cast<size_t>(layer));
    }  // [capacity, L]
    Tensor& rope_key(int64_t layer) {
        return rope_key_.at(static_cast<size_t>(layer));
    }  // [capacity, R]
    // The sparse attention indexer's keys [capacity, index_head_dim]; null without index_topk.
    Tensor* index_key(int64_t layer) {
        return index_key_.empty() ? nullptr : &index_key_.at(static_cast<size_t>(layer));
    }

    // Bytes per token over all layers (fp32), and what plain multi-head attention with the same
    // heads would keep (keys of qk_head_dim and values of v_head_dim per head).
    static int64_t bytes_per_token(const ModelConfig& config);
    static int64_t mha_bytes_per_token(const ModelConfig& config);

private:
    int64_t capacity_ = 0;
    std::vector<Tensor> latent_, rope_key_, index_key_;
};

}  // namespace moe
