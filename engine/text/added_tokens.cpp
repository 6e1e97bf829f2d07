#include "text/added_tokens.h"

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/utf8.h"

namespace moe {

namespace {

bool is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
// A word character for single_word: ASCII letters, digits, underscore, and any non-ASCII byte
// (letters of other scripts).
bool is_word(unsigned char c) {
    return std::isalnum(c) || c == '_' || c >= 0x80;
}

}  // namespace

AddedTokens AddedTokens::from_json(const nlohmann::json& j, const std::string& where) {
    AddedTokens a;
    if (j.is_null()) return a;
    if (!j.is_array()) throw ConfigError(where, "expected an array");
    for (size_t i = 0; i < j.size(); ++i) {
        const std::string field = where + "[" + std::to_string(i) + "]";
        const nlohmann::json& e = j[i];
        if (!e.is_object() || !e.contains("id") || !e["id"].is_number_integer() ||
            !e.contains("content") || !e["content"].is_string())
            throw ConfigError(field, "expected {\"id\": integer, \"content\": string, ...}");
        AddedToken t;
        t.id = e["id"].get<int32_t>();
        t.content = e["content"].get<std::string>();
        if (t.id < 0) throw ConfigError(field + ".id", "must be >= 0, got " + std::to_string(t.id));
        if (t.content.empty()) throw ConfigError(field + ".content", "must not be empty");
        if (utf8_first_invalid(t.content) != std::string::npos)
            throw ConfigError(field + ".content", "is not valid UTF-8");
        t.special = e.value("special", false);
        t.lstrip = e.value("lstrip", false);
        t.rstrip = e.value("rstrip", false);
        t.single_word = e.value("single_word", false);
        if (a.by_content_.count(t.content)) continue;  // listed twice: the first one counts
        a.by_id_[t.id] = a.tokens_.size();
        a.by_content_[t.content] = a.tokens_.size();
        a.tokens_.push_back(std::move(t));
    }
    for (size_t i = 0; i < a.tokens_.size(); ++i)
        a.by_first_[static_cast<unsigned char>(a.tokens_[i].content[0])].push_back(i);
    for (auto& list : a.by_first_)
        std::stable_sort(list.begin(), list.end(), [&](size_t x, size_t y) {
            return a.tokens_[x].content.size() > a.tokens_[y].content.size();
        });
    return a;
}

const AddedToken* AddedTokens::find(int32_t id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedTokens::find(const std::string& content) const {
    auto it = by_content_.find(content);
    return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

void AddedTokens::segment(std::string_view text, std::vector<TextSegment>& out) const {
    size_t plain = 0;  // start of the pending plain text
    size_t i = 0;
    const auto flush_plain = [&](size_t end) {
        if (end > plain) out.push_back({plain, end, -1});
    };
    while (i < text.size()) {
        const auto& cands = by_first_[static_cast<unsigned char>(text[i])];
        const AddedToken* hit = nullptr;
        for (size_t k : cands) {
            const AddedToken& t = tokens_[k];
            if (text.compare(i, t.content.size(), t.content) != 0) continue;
            if (t.single_word) {
                const size_t e = i + t.content.size();
                if ((i > 0 && is_word(static_cast<unsigned char>(text[i - 1]))) ||
                    (e < text.size() && is_word(static_cast<unsigned char>(text[e]))))
                    continue;
            }
            hit = &t;
            break;
        }
        if (!hit) {
            ++i;
            continue;
        }
        size_t b = i, e = i + hit->content.size();
        if (hit->lstrip)
            while (b > plain && is_space(static_cast<unsigned char>(text[b - 1]))) --b;
        if (hit->rstrip)
            while (e < text.size() && is_space(static_cast<unsigned char>(text[e]))) ++e;
        flush_plain(b);
        out.push_back({b, e, hit->id});
        plain = i = e;
    }
    flush_plain(text.size());
}

}  // namespace moe
