#pragma once
// Byte-level BPE (tokenizer.json "model": {"type": "BPE", ...}): a vocabulary of byte-level
// strings and a ranked list of merges. A piece's bytes start as one symbol per byte; the
// adjacent pair with the best (lowest) merge rank is merged, leftmost first among equals, until
// no pair has a merge - the order HF tokenizers uses (a priority queue over pairs). O(n log n)
// per piece, so a long run of CJK or whitespace stays cheap; pieces seen before come from a
// bounded cache.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace moe {

class BpeModel {
public:
    // `where` names the field in messages ("model"). ConfigError for a model that is not BPE,
    // options this implementation does not have (dropout, continuing_subword_prefix,
    // end_of_word_suffix), a merge whose parts or result are not in the vocabulary, or a
    // vocabulary id out of range.
    static BpeModel from_json(const nlohmann::json& j, const std::string& where);

    // Appends the ids of one piece of raw bytes (not yet byte-level mapped).
    void encode_piece(std::string_view bytes, std::vector<int32_t>& out) const;

    int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }
    // The byte-level string of an id ("" for an id with no vocabulary entry).
    const std::string& token(int32_t id) const;
    // The id of a vocabulary string, or -1.
    int32_t id(const std::string& token) const;
    size_t merges() const { return merges_.size(); }

private:
    struct Merge {
        int32_t rank;
        int32_t result;
    };
    static uint64_t pair_key(int32_t a, int32_t b) {
        return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
    }
    void bpe(std::string_view bytes, std::vector<int32_t>& out) const;

    std::unordered_map<std::string, int32_t> vocab_;
    std::vector<std::string> id_to_token_;
    std::unordered_map<uint64_t, Merge> merges_;
    int32_t byte_id_[256];  // the id of each byte's one-character symbol (-1: not in the vocab)
    bool ignore_merges_ = false;
    // Pieces already encoded (the common words of a text), bounded.
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace moe
