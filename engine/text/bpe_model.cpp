#include "text/bpe_model.h"

#include <queue>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/byte_level.h"

namespace moe {

namespace {

using json = nlohmann::json;
constexpr size_t kCacheEntries = 1 << 16;
constexpr size_t kCachedPieceBytes = 256;  // longer pieces are rare and not worth keeping

}  // namespace

BpeModel BpeModel::from_json(const json& j, const std::string& where) {
    if (!j.is_object()) throw ConfigError(where, "expected an object");
    if (j.value("type", std::string("BPE")) != "BPE")
        throw ConfigError(where + ".type", "only BPE models are supported, got \"" +
                                               j.value("type", std::string()) + "\"");
    for (const char* k : {"dropout", "continuing_subword_prefix", "end_of_word_suffix"})
        if (j.contains(k) && !j[k].is_null() &&
            !(j[k].is_string() && j[k].get<std::string>().empty()))
            throw ConfigError(where + "." + k, "is not supported (must be null)");
    if (!j.contains("vocab") || !j["vocab"].is_object())
        throw ConfigError(where + ".vocab", "missing or not an object");
    BpeModel m;
    const json& vocab = j["vocab"];
    constexpr int64_t kMaxVocab = int64_t(1) << 24;
    if (int64_t(vocab.size()) > kMaxVocab)
        throw ConfigError(where + ".vocab", "has " + std::to_string(vocab.size()) +
                                                " entries, more than " + std::to_string(kMaxVocab));
    int32_t max_id = -1;
    m.vocab_.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        if (!it.value().is_number_integer())
            throw ConfigError(where + ".vocab[\"" + it.key() + "\"]", "expected an integer id");
        const int64_t id = it.value().get<int64_t>();
        if (id < 0 || id >= kMaxVocab)
            throw ConfigError(where + ".vocab[\"" + it.key() + "\"]",
                              "id " + std::to_string(id) + " out of range");
        m.vocab_.emplace(it.key(), static_cast<int32_t>(id));
        max_id = std::max<int32_t>(max_id, static_cast<int32_t>(id));
    }
    m.id_to_token_.assign(size_t(max_id + 1), std::string());
    for (const auto& [tok, id] : m.vocab_) m.id_to_token_[size_t(id)] = tok;
    for (int b = 0; b < 256; ++b) {
        auto it = m.vocab_.find(byte_level_char(uint8_t(b)));
        m.byte_id_[b] = it == m.vocab_.end() ? -1 : it->second;
    }
    m.ignore_merges_ = j.value("ignore_merges", false);
    if (!j.contains("merges") || !j["merges"].is_array())
        throw ConfigError(where + ".merges", "missing or not an array");
    const json& merges = j["merges"];
    m.merges_.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
        const std::string field = where + ".merges[" + std::to_string(i) + "]";
        std::string a, b;
        const json& e = merges[i];
        if (e.is_string()) {  // "a b"
            const std::string s = e.get<std::string>();
            const size_t sp = s.find(' ');
            if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
                throw ConfigError(field, "expected \"left right\", got \"" + s + "\"");
            a = s.substr(0, sp);
            b = s.substr(sp + 1);
        } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
            a = e[0].get<std::string>();
            b = e[1].get<std::string>();
        } else {
            throw ConfigError(field, "expected \"left right\" or [\"left\", \"right\"]");
        }
        const int32_t ia = m.id(a), ib = m.id(b), ir = m.id(a + b);
        if (ia < 0 || ib < 0 || ir < 0)
            throw ConfigError(field, "\"" +
                                         (ia < 0   ? a
                                          : ib < 0 ? b
                                                   : a + b) +
                                         "\" is not in the vocabulary");
        // The first (best-ranked) occurrence of a pair wins, as in HF.
        m.merges_.emplace(pair_key(ia, ib), Merge{static_cast<int32_t>(i), ir});
    }
    return m;
}

const std::string& BpeModel::token(int32_t id) const {
    static const std::string none;
    return id >= 0 && size_t(id) < id_to_token_.size() ? id_to_token_[size_t(id)] : none;
}

int32_t BpeModel::id(const std::string& token) const {
    auto it = vocab_.find(token);
    return it == vocab_.end() ? -1 : it->second;
}

void BpeModel::encode_piece(std::string_view bytes, std::vector<int32_t>& out) const {
    if (bytes.empty()) return;
    const bool cacheable = bytes.size() <= kCachedPieceBytes;
    if (cacheable) {
        auto it = cache_.find(std::string(bytes));
        if (it != cache_.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    const size_t start = out.size();
    bpe(bytes, out);
    if (cacheable) {
        if (cache_.size() >= kCacheEntries) cache_.clear();
        cache_.emplace(std::string(bytes), std::vector<int32_t>(out.begin() + start, out.end()));
    }
}

void BpeModel::bpe(std::string_view bytes, std::vector<int32_t>& out) const {
    if (ignore_merges_) {  // a whole piece in the vocabulary is taken as it is
        std::string mapped;
        append_byte_level(bytes, mapped);
        if (int32_t whole = id(mapped); whole >= 0) {
            out.push_back(whole);
            return;
        }
    }
    const size_t n = bytes.size();
    std::vector<int32_t> sym(n);
    std::vector<int32_t> prev(n), next(n);  // linked list over symbol starts; -1 / n ends
    std::vector<uint32_t> version(n, 0);
    for (size_t i = 0; i < n; ++i) {
        const int32_t id = byte_id_[static_cast<unsigned char>(bytes[i])];
        if (id < 0)
            throw Error(
                "tokenizer: byte 0x" +
                std::string(1, "0123456789abcdef"[static_cast<unsigned char>(bytes[i]) >> 4]) +
                std::string(1, "0123456789abcdef"[static_cast<unsigned char>(bytes[i]) & 15]) +
                " has no symbol in the vocabulary (not a byte-level BPE vocabulary?)");
        sym[i] = id;
        prev[i] = static_cast<int32_t>(i) - 1;
        next[i] = static_cast<int32_t>(i + 1);
    }
    struct Cand {
        int32_t rank;
        int32_t left;     // position of the left symbol
        uint32_t vl, vr;  // versions of both symbols when queued
        int32_t right;
        bool operator>(const Cand& o) const {
            return rank != o.rank ? rank > o.rank : left > o.left;  // lowest rank, then leftmost
        }
    };
    std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> q;
    const auto push = [&](int32_t l) {
        const int32_t r = next[size_t(l)];
        if (r >= static_cast<int32_t>(n)) return;
        auto it = merges_.find(pair_key(sym[size_t(l)], sym[size_t(r)]));
        if (it != merges_.end())
            q.push({it->second.rank, l, version[size_t(l)], version[size_t(r)], r});
    };
    for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
    while (!q.empty()) {
        const Cand c = q.top();
        q.pop();
        const size_t l = size_t(c.left), r = size_t(c.right);
        // Stale: either symbol changed, or they are no longer neighbours.
        if (version[l] != c.vl || version[r] != c.vr || sym[l] < 0 || sym[r] < 0 ||
            next[l] != c.right)
            continue;
        sym[l] = merges_.find(pair_key(sym[l], sym[r]))->second.result;
        ++version[l];
        sym[r] = -1;  // removed
        ++version[r];
        next[l] = next[r];
        if (next[l] < static_cast<int32_t>(n)) prev[size_t(next[l])] = c.left;
        if (prev[l] >= 0) push(prev[l]);
        push(c.left);
    }
    for (int32_t i = 0; i < static_cast<int32_t>(n); i = next[size_t(i)])
        out.push_back(sym[size_t(i)]);
}

}  // namespace moe
