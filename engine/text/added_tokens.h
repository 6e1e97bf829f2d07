#pragma once
// Added tokens (tokenizer.json "added_tokens"): special tokens such as <｜begin▁of▁sentence｜>
// and any other token the model added after training its merges. They are found in the raw text
// first and never split: leftmost match, the longest token among those starting there (what HF
// tokenizers' Aho-Corasick matcher and transformers.js's alternation regex both give).
// lstrip / rstrip take the whitespace on that side into the token; single_word matches only
// between non-word characters.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace moe {

struct AddedToken {
    int32_t id = -1;
    std::string content;
    bool special = false;
    bool lstrip = false, rstrip = false, single_word = false;
};

// A stretch of the text: an added token (id >= 0) or plain text for the pre-tokenizer and BPE.
struct TextSegment {
    size_t begin = 0, end = 0;
    int32_t added_id = -1;
};

class AddedTokens {
public:
    static AddedTokens from_json(const nlohmann::json& j, const std::string& where);
    // Cuts text into plain and added-token segments, in order; adjacent plain text is one
    // segment.
    void segment(std::string_view text, std::vector<TextSegment>& out) const;
    const AddedToken* find(int32_t id) const;
    const AddedToken* find(const std::string& content) const;
    const std::vector<AddedToken>& all() const { return tokens_; }

private:
    std::vector<AddedToken> tokens_;
    std::unordered_map<int32_t, size_t> by_id_;
    std::unordered_map<std::string, size_t> by_content_;
    // Candidates by first byte, longest first.
    std::vector<size_t> by_first_[256];
};

}  // namespace moe
