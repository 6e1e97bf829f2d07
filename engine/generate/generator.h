#pragma once
// Text generation with a model's KV cache (model/kv_cache.h): the prompt is prefilled in chunks
// (each chunk attends to the cache and causally to itself), then one token per step - or, with
// speculative decoding, the MTP module drafts the next token and the main model verifies it
// together with the current one, keeping the draft when it is what greedy decoding would pick,
// so the output is exactly plain greedy decoding's. Stops at a stop token, after
// max_new_tokens, or when the cache is full. The routed experts of every token in every MoE
// layer are recorded on request.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "generate/sampler.h"
#include "model/model.h"

namespace moe {

struct GenerationSettings {
    int64_t max_new_tokens = 64;
    int64_t max_length = 0;            // prompt + generated; 0: max_position_embeddings
    std::vector<int32_t> stop_tokens;  // e.g. the tokenizer's EOS
    SamplingSettings sampling;
    bool speculative = false;     // MTP drafts, the main model verifies (greedy only)
    int64_t prefill_chunk = 256;  // prompt tokens per prefill forward
    bool record_routing = false;
    void validate() const;  // ConfigError naming the field
};

// The routed experts of one token at one position, per MoE layer (main layers, in order).
struct TokenRouting {
    int64_t position = 0;
    int32_t token = 0;
    std::vector<int64_t> layers;                // HF layer index of each entry below
    std::vector<std::vector<int32_t>> experts;  // [layers][top_k], descending selection score
    std::vector<std::vector<float>> weights;    // [layers][top_k]
};

struct GenerationResult {
    std::vector<int32_t> tokens;  // generated (the prompt not included)
    std::string stop_reason;      // "stop token", "max_new_tokens", "max_length", "stopped"
    int64_t prompt_tokens = 0;
    double prefill_seconds = 0.0, decode_seconds = 0.0;
    int64_t main_forwards = 0;          // decode steps of the main model (prefill not counted)
    int64_t drafted = 0, accepted = 0;  // speculative decoding
    std::vector<TokenRouting> routing;  // every position (prompt and generated), if recorded
    double acceptance_rate() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
};

// Called with each generated token as soon as it is known; returning false stops generation
// ("stopped").
using TokenCallback = std::function<bool(int32_t token)>;

GenerationResult generate(Model& model, const std::vector<int32_t>& prompt,
                          const GenerationSettings& settings, const TokenCallback& on_token = {});

}  // namespace moe
