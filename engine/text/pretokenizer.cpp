#include "text/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace moe {

namespace {

using json = nlohmann::json;

std::string str_field(const json& j, const char* key, const std::string& where) {
    if (!j.contains(key) || !j[key].is_string())
        throw ConfigError(where + "." + key, "missing or not a string");
    return j[key].get<std::string>();
}

bool bool_field(const json& j, const char* key, bool def, const std::string& where) {
    if (!j.contains(key) || j[key].is_null()) return def;
    if (!j[key].is_boolean()) throw ConfigError(where + "." + key, "expected true or false");
    return j[key].get<bool>();
}

// A compiled PCRE2 pattern (JIT where available), matched repeatedly over a text.
class Regex {
public:
    Regex(const std::string& pattern, bool literal, const std::string& where) {
        int err = 0;
        PCRE2_SIZE offset = 0;
        // (PCRE2_LITERAL takes no UCP: a literal has no classes to widen.)
        const uint32_t options = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
        code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options,
                              &err, &offset, nullptr);
        if (!code_) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            throw ConfigError(where, "the regular expression does not compile at offset " +
                                         std::to_string(offset) + ": " +
                                         reinterpret_cast<const char*>(msg));
        }
        jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
        data_ = pcre2_match_data_create_from_pattern(code_, nullptr);
    }
    ~Regex() {
        pcre2_match_data_free(data_);
        pcre2_code_free(code_);
    }
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;

    // Non-overlapping matches in [0, text.size()), left to right, as [begin, end) spans. An
    // empty match advances by one character (none of the real patterns has one).
    void matches(std::string_view text, std::vector<TextSpan>& out) const {
        size_t at = 0;
        const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
        while (at <= text.size()) {
            // PCRE2_NO_UTF_CHECK: the tokenizer validated the whole text once.
            const int rc = jit_ ? pcre2_jit_match(code_, subject, text.size(), at,
                                                  PCRE2_NO_UTF_CHECK, data_, nullptr)
                                : pcre2_match(code_, subject, text.size(), at, PCRE2_NO_UTF_CHECK,
                                              data_, nullptr);
            if (rc == PCRE2_ERROR_NOMATCH) return;
            if (rc < 0) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(rc, msg, sizeof msg);
                throw Error(std::string("tokenizer: regular expression match failed: ") +
                            reinterpret_cast<const char*>(msg));
            }
            const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data_);
            const size_t b = ov[0], e = ov[1];
            if (e == b) {  // empty: step over one UTF-8 character
                at = e + 1;
                while (at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80)
                    ++at;
                continue;
            }
            out.push_back({b, e});
            at = e;
        }
    }

private:
    pcre2_code* code_ = nullptr;
    pcre2_match_data* data_ = nullptr;
    bool jit_ = false;
};

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const std::string& s, const std::string& where) {
    if (s == "Removed") return Behavior::Removed;
    if (s == "Isolated") return Behavior::Isolated;
    if (s == "MergedWithPrevious") return Behavior::MergedWithPrevious;
    if (s == "MergedWithNext") return Behavior::MergedWithNext;
    if (s == "Contiguous") return Behavior::Contiguous;
    throw ConfigError(where,
                      "expected Removed, Isolated, MergedWithPrevious, MergedWithNext or "
                      "Contiguous, got \"" +
                          s + "\"");
}

// Splits each piece by a regex with HF's SplitDelimiterBehavior.
class RegexSplit final : public PreTokenizer {
public:
    RegexSplit(const std::string& pattern, bool literal, Behavior behavior, bool invert,
               const std::string& where)
        : re_(pattern, literal, where), behavior_(behavior), invert_(invert) {}

    void split(std::string_view text, std::vector<TextSpan>& pieces) const override {
        std::vector<TextSpan> out;
        std::vector<TextSpan> found;
        std::vector<std::pair<TextSpan, bool>> parts;  // (span, is a delimiter)
        for (const TextSpan& p : pieces) {
            found.clear();
            re_.matches(text.substr(p.begin, p.end - p.begin), found);
            parts.clear();
            size_t at = 0;
            const size_t len = p.end - p.begin;
            for (const TextSpan& m : found) {
                if (m.begin > at) parts.push_back({{at, m.begin}, invert_});
                parts.push_back({{m.begin, m.end}, !invert_});
                at = m.end;
            }
            if (at < len) parts.push_back({{at, len}, invert_});
            apply(parts, p.begin, out);
        }
        pieces.swap(out);
    }

private:
    void apply(const std::vector<std::pair<TextSpan, bool>>& parts, size_t base,
               std::vector<TextSpan>& out) const {
        const auto emit = [&](size_t b, size_t e) {
            if (e > b) out.push_back({base + b, base + e});
        };
        switch (behavior_) {
            case Behavior::Removed:
                for (const auto& [s, delim] : parts)
                    if (!delim) emit(s.begin, s.end);
                break;
            case Behavior::Isolated:
                for (const auto& [s, delim] : parts) emit(s.begin, s.end);
                break;
            case Behavior::MergedWithPrevious: {
                // A delimiter joins the piece before it.
                size_t start = 0;
                bool open = false;
                for (const auto& [s, delim] : parts) {
                    if (!open) start = s.begin;
                    open = true;
                    if (delim) {
                        emit(start, s.end);
                        open = false;
                    }
                }
                if (open) emit(start, parts.back().first.end);
                break;
            }
            case Behavior::MergedWithNext: {
                // A delimiter starts the next piece.
                size_t start = 0;
                bool open = false;
                for (const auto& [s, delim] : parts) {
                    if (delim && open) emit(start, s.begin);
                    if (delim || !open) {
                        start = s.begin;
                        open = true;
                    }
                }
                if (open) emit(start, parts.back().first.end);
                break;
            }
            case Behavior::Contiguous: {
                // Neighbouring delimiters become one piece.
                size_t start = 0;
                bool in_delims = false, open = false;
                for (const auto& [s, delim] : parts) {
                    if (delim && in_delims) continue;  // extends the current delimiter run
                    if (open) emit(start, s.begin);
                    start = s.begin;
                    open = true;
                    in_delims = delim;
                }
                if (open) emit(start, parts.back().first.end);
                break;
            }
        }
    }

    Regex re_;
    Behavior behavior_;
    bool invert_;
};

// GPT-2's pattern, ByteLevel's own split when use_regex is set.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPre final : public PreTokenizer {
public:
    ByteLevelPre(bool add_prefix_space, bool use_regex, const std::string& where)
        : prefix_(add_prefix_space) {
        if (use_regex)
            split_ =
                std::make_unique<RegexSplit>(kGpt2Pattern, false, Behavior::Isolated, false, where);
    }
    void split(std::string_view text, std::vector<TextSpan>& pieces) const override {
        if (split_) split_->split(text, pieces);
    }
    bool prefix_space() const override { return prefix_; }

private:
    bool prefix_;
    std::unique_ptr<RegexSplit> split_;
};

class Sequence final : public PreTokenizer {
public:
    explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps)
        : steps_(std::move(steps)) {}
    void split(std::string_view text, std::vector<TextSpan>& pieces) const override {
        for (const auto& s : steps_) s->split(text, pieces);
    }
    bool prefix_space() const override {
        for (const auto& s : steps_)
            if (s->prefix_space()) return true;
        return false;
    }

private:
    std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

class NoSplit final : public PreTokenizer {
public:
    void split(std::string_view, std::vector<TextSpan>&) const override {}
};

}  // namespace

std::unique_ptr<PreTokenizer> PreTokenizer::from_json(const json& j, const std::string& where) {
    if (j.is_null()) return std::make_unique<NoSplit>();
    if (!j.is_object()) throw ConfigError(where, "expected an object or null");
    const std::string type = str_field(j, "type", where);
    if (type == "Sequence") {
        if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array())
            throw ConfigError(where + ".pretokenizers", "missing or not an array");
        std::vector<std::unique_ptr<PreTokenizer>> steps;
        for (size_t i = 0; i < j["pretokenizers"].size(); ++i)
            steps.push_back(from_json(j["pretokenizers"][i],
                                      where + ".pretokenizers[" + std::to_string(i) + "]"));
        return std::make_unique<Sequence>(std::move(steps));
    }
    if (type == "Split") {
        if (!j.contains("pattern") || !j["pattern"].is_object())
            throw ConfigError(where + ".pattern", "missing or not an object");
        const json& pat = j["pattern"];
        bool literal;
        std::string pattern;
        if (pat.contains("Regex") && pat["Regex"].is_string()) {
            literal = false;
            pattern = pat["Regex"].get<std::string>();
        } else if (pat.contains("String") && pat["String"].is_string()) {
            literal = true;
            pattern = pat["String"].get<std::string>();
        } else {
            throw ConfigError(where + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
        }
        return std::make_unique<RegexSplit>(
            pattern, literal, parse_behavior(str_field(j, "behavior", where), where + ".behavior"),
            bool_field(j, "invert", false, where), where + ".pattern");
    }
    if (type == "ByteLevel")
        return std::make_unique<ByteLevelPre>(bool_field(j, "add_prefix_space", true, where),
                                              bool_field(j, "use_regex", true, where), where);
    if (type == "Digits") {
        const bool each = bool_field(j, "individual_digits", false, where);
        return std::make_unique<RegexSplit>(each ? R"(\p{N})" : R"(\p{N}+)", false,
                                            Behavior::Isolated, false, where);
    }
    throw ConfigError(where + ".type", "pre-tokenizer \"" + type +
                                           "\" is not supported (supported: Sequence, Split, "
                                           "ByteLevel, Digits)");
}

}  // namespace moe
