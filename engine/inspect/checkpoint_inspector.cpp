#include "inspect/checkpoint_inspector.h"

#include <filesystem>

#include "backend/backend_registry.h"
#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "store/model_checkpoint.h"
#include "text/utf8.h"

namespace moe {

CheckpointInspector::CheckpointInspector(const std::string& dir, int threads,
                                         const std::string& device)
    : dir_(dir),
      cfg_(load_checkpoint_config(dir)),
      backend_(make_backend(device, threads)),
      model_(std::make_unique<Model>(cfg_, *backend_)) {
    load_model_weights(dir, *model_);
    std::error_code ec;
    if (std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json", ec)) {
        tokenizer_.emplace(HfTokenizer::load(dir));
        if (tokenizer_->vocab_size() > cfg_.vocab_size)
            throw Error(dir + "/tokenizer.json has " + std::to_string(tokenizer_->vocab_size()) +
                        " tokens, more than the model's vocab_size " +
                        std::to_string(cfg_.vocab_size));
    }
}

std::vector<int32_t> CheckpointInspector::encode(const std::string& text) const {
    return tokenizer_ ? tokenizer_->encode(text, false) : ByteTokenizer::encode(text);
}

std::string CheckpointInspector::decode(const std::vector<int32_t>& tokens) const {
    return tokenizer_ ? tokenizer_->decode(tokens) : ByteTokenizer::decode(tokens);
}

std::string CheckpointInspector::token_display(int32_t token) const {
    if (!tokenizer_) return ByteTokenizer::token_display(token);
    std::string out;
    for (char c : utf8_lossy(tokenizer_->token_bytes(token))) {
        if (c == ' ')
            out += "\u2420";
        else if (c == '\n')
            out += "\\n";
        else if (c == '\t')
            out += "\\t";
        else
            out += c;
    }
    return out;
}

CheckpointInspector::~CheckpointInspector() = default;

Inspection CheckpointInspector::inspect_text(const std::string& text) {
    std::vector<int32_t> tokens = encode(text);
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
            throw Error(std::string("inspect: ") + (tokenizer_ ? "token " : "byte ") +
                        std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                        " is outside the model's vocabulary of " + std::to_string(cfg_.vocab_size) +
                        " tokens");
    Inspection out = inspect(tokens);
    out.note = note;
    return out;
}

Inspection CheckpointInspector::inspect(const std::vector<int32_t>& tokens) {
    Inspection out = inspect_tokens(*model_, tokens);
    if (tokenizer_)
        for (size_t i = 0; i < tokens.size(); ++i) out.token_text[i] = token_display(tokens[i]);
    return out;
}

GenerationResult CheckpointInspector::generate_text(
    const std::string& prompt, const GenerationSettings& settings,
    const std::function<bool(const std::vector<int32_t>&)>& on_step) {
    std::vector<int32_t> tokens = encode(prompt);
    if (tokens.empty()) throw Error("generate: the text is empty");
    const int64_t room = cfg_.max_position_embeddings - 1;
    if (int64_t(tokens.size()) > room)  // keep the end: that is what the model continues
        tokens.erase(tokens.begin(), tokens.end() - room);
    for (int32_t t : tokens)
        if (t >= cfg_.vocab_size)
            throw Error(std::string("generate: ") + (tokenizer_ ? "token " : "byte ") +
                        std::to_string(t) + " is outside the model's vocabulary of " +
                        std::to_string(cfg_.vocab_size) + " tokens");
    std::vector<int32_t> seq = tokens;
    GenerationSettings s = settings;  // a real model's reply ends at its EOS
    if (tokenizer_ && tokenizer_->eos_id() >= 0) s.stop_tokens.push_back(tokenizer_->eos_id());
    return generate(*model_, tokens, s, [&](int32_t t) {
        seq.push_back(t);
        return on_step ? on_step(seq) : true;
    });
}

}  // namespace moe
