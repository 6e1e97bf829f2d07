#include "inspect/checkpoint_inspector.h"

#include "backend/backend_registry.h"
#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "store/model_checkpoint.h"

namespace moe {

CheckpointInspector::CheckpointInspector(const std::string& dir, int threads,
                                         const std::string& device)
    : dir_(dir), cfg_(load_checkpoint_config(dir)),
      backend_(make_backend(device, threads)),
      model_(std::make_unique<Model>(cfg_, *backend_)) {
    load_model_weights(dir, *model_);
}

CheckpointInspector::~CheckpointInspector() = default;

Inspection CheckpointInspector::inspect_text(const std::string& text) {
    std::vector<int32_t> tokens = ByteTokenizer::encode(text);
    if (tokens.empty()) throw Error("inspect: the text is empty");
    std::string note;
    const int64_t limit = cfg_.max_position_embeddings;
    if (static_cast<int64_t>(tokens.size()) > limit) {
        note = "Text cut to the model's context of " + std::to_string(limit) + " tokens (it has " +
               std::to_string(tokens.size()) + ").";
        tokens.resize(static_cast<size_t>(limit));
    }
    for (size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] >= cfg_.vocab_size)
            throw Error("inspect: byte " + std::to_string(tokens[i]) + " at position " +
                        std::to_string(i) + " is outside the model's vocabulary of " +
                        std::to_string(cfg_.vocab_size) + " tokens");
    Inspection out = inspect(tokens);
    out.note = note;
    return out;
}

Inspection CheckpointInspector::inspect(const std::vector<int32_t>& tokens) {
    return inspect_tokens(*model_, tokens);
}

GenerationResult CheckpointInspector::generate_text(
    const std::string& prompt, const GenerationSettings& settings,
    const std::function<bool(const std::vector<int32_t>&)>& on_step) {
    std::vector<int32_t> tokens = ByteTokenizer::encode(prompt);
    if (tokens.empty()) throw Error("generate: the text is empty");
    const int64_t room = cfg_.max_position_embeddings - 1;
    if (int64_t(tokens.size()) > room)  // keep the end: that is what the model continues
        tokens.erase(tokens.begin(), tokens.end() - room);
    for (int32_t t : tokens)
        if (t >= cfg_.vocab_size)
            throw Error("generate: byte " + std::to_string(t) + " is outside the model's vocabulary of " +
                        std::to_string(cfg_.vocab_size) + " tokens");
    std::vector<int32_t> seq = tokens;
    return generate(*model_, tokens, settings, [&](int32_t t) {
        seq.push_back(t);
        return on_step ? on_step(seq) : true;
    });
}

}  // namespace moe
