#include "data/synthetic_tasks.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <string_view>

#include "core/error.h"
#include "core/json_fields.h"
#include "core/rng.h"

namespace moe {

namespace {

enum Task { kArithmetic, kCopy, kReverse, kBrackets, kSort, kLanguage, kTaskCount };

const std::vector<std::string> kTaskNames = {"arithmetic", "copy", "reverse",
                                             "brackets",   "sort", "language"};

// Draws for one document: value k of stream `index`, so documents are independent of each other.
struct Draws {
    uint64_t seed, stream, counter = 0;
    uint64_t bits() { return random_bits(seed, stream, counter++); }
    double uniform() { return static_cast<double>(bits() >> 11) * 0x1.0p-53; }
    int64_t range(int64_t lo, int64_t hi) {  // inclusive; modulo bias is < 2^-50 here
        return lo + static_cast<int64_t>(bits() % static_cast<uint64_t>(hi - lo + 1));
    }
    bool coin() { return (bits() >> 63) != 0; }
};

void append_letters(Draws& r, int64_t n, std::string& out) {
    for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<char>('a' + r.range(0, 25)));
}

void append_int(int64_t v, std::string& out) {
    char buffer[24];
    const auto res = std::to_chars(buffer, buffer + sizeof buffer, v);
    out.append(buffer, res.ptr);
}

int64_t random_operand(Draws& r, int64_t max_digits) {
    // Digit count first, then the value: otherwise almost every operand would have max digits.
    const int64_t digits = r.range(1, max_digits);
    int64_t v = digits == 1 ? r.range(0, 9) : r.range(1, 9);
    for (int64_t d = 1; d < digits; ++d) v = v * 10 + r.range(0, 9);
    return v;
}

char closer_of(char open) { return open == '(' ? ')' : open == '[' ? ']' : '}'; }

bool brackets_balanced(std::string_view s) {
    std::array<char, SyntheticOptions::kMaxLength> stack{};
    size_t depth = 0;
    for (char c : s) {
        if (c == '(' || c == '[' || c == '{') {
            if (depth == stack.size()) return false;
            stack[depth++] = closer_of(c);
        } else {
            if (depth == 0 || stack[depth - 1] != c) return false;
            --depth;
        }
    }
    return depth == 0;
}

// The toy language. Nouns take -a (singular) or -i (plural) and agree with the determiner
// (zo / ze); verbs take -t or -n to agree with their subject, also across a relative clause
// "vel NP V" that has its own subject. Adjectives are invariant.
const std::array<std::string_view, 8> kNouns = {"mip", "tel", "sorb", "dav", "lum", "fesk", "nor", "pil"};
const std::array<std::string_view, 6> kVerbs = {"ka", "ru", "vo", "sen", "bi", "gor"};
const std::array<std::string_view, 4> kAdjectives = {"glu", "ber", "osk", "wim"};

bool append_noun_phrase(Draws& r, std::string& out) {  // returns plural
    const bool plural = r.coin();
    out += plural ? "ze " : "zo ";
    if (r.uniform() < 0.3) {
        out += kAdjectives[r.range(0, kAdjectives.size() - 1)];
        out += ' ';
    }
    out += kNouns[r.range(0, kNouns.size() - 1)];
    out += plural ? 'i' : 'a';
    return plural;
}

void append_verb(Draws& r, bool plural_subject, std::string& out) {
    out += kVerbs[r.range(0, kVerbs.size() - 1)];
    out += plural_subject ? 'n' : 't';
}

void append_sentence(Draws& r, std::string& out) {
    const bool plural = append_noun_phrase(r, out);
    if (r.uniform() < 0.35) {
        out += " vel ";
        const bool inner = append_noun_phrase(r, out);
        out += ' ';
        append_verb(r, inner, out);
    }
    out += ' ';
    append_verb(r, plural, out);
    if (r.uniform() < 0.6) {
        out += ' ';
        append_noun_phrase(r, out);
    }
    out += '.';
}

// A recursive-descent check of the toy language, word by word.
struct LanguageParser {
    std::vector<std::string_view> words;
    size_t at = 0;

    template <size_t N>
    static bool stem_in(std::string_view stem, const std::array<std::string_view, N>& list) {
        return std::find(list.begin(), list.end(), stem) != list.end();
    }
    bool noun_phrase(bool& plural) {
        if (at >= words.size()) return false;
        if (words[at] == "zo") plural = false;
        else if (words[at] == "ze") plural = true;
        else return false;
        ++at;
        if (at < words.size() && stem_in(words[at], kAdjectives)) ++at;
        if (at >= words.size() || words[at].size() < 2) return false;
        const std::string_view w = words[at++];
        return stem_in(w.substr(0, w.size() - 1), kNouns) && w.back() == (plural ? 'i' : 'a');
    }
    bool verb(bool plural) {
        if (at >= words.size() || words[at].size() < 2) return false;
        const std::string_view w = words[at++];
        return stem_in(w.substr(0, w.size() - 1), kVerbs) && w.back() == (plural ? 'n' : 't');
    }
    bool sentence() {  // words of one sentence, the '.' already removed
        bool plural = false, inner = false, object = false;
        if (!noun_phrase(plural)) return false;
        if (at < words.size() && words[at] == "vel") {
            ++at;
            if (!noun_phrase(inner) || !verb(inner)) return false;
        }
        if (!verb(plural)) return false;
        if (at < words.size() && !noun_phrase(object)) return false;
        return at == words.size();
    }
};

bool language_valid(std::string_view text) {
    if (text.empty() || text.back() != '.') return false;
    size_t start = 0;
    while (start < text.size()) {
        const size_t dot = text.find('.', start);
        if (dot == std::string_view::npos) return false;
        LanguageParser p;
        std::string_view s = text.substr(start, dot - start);
        size_t pos = 0;
        while (pos <= s.size()) {
            const size_t space = std::min(s.find(' ', pos), s.size());
            if (space > pos) p.words.push_back(s.substr(pos, space - pos));
            pos = space + 1;
        }
        if (!p.sentence()) return false;
        start = dot + 1;
        if (start < text.size()) {
            if (text[start] != ' ') return false;
            ++start;
        }
    }
    return true;
}

bool parse_int(std::string_view s, int64_t& v) {
    if (s.empty()) return false;
    const auto res = std::from_chars(s.data(), s.data() + s.size(), v);
    return res.ec == std::errc() && res.ptr == s.data() + s.size();
}

}  // namespace

const std::vector<std::string>& SyntheticTasks::task_names() { return kTaskNames; }

SyntheticTasks::SyntheticTasks(uint64_t seed, SyntheticOptions options)
    : seed_(seed), options_(std::move(options)) {
    using json_fields::format_number;
    for (const auto& [name, weight] : options_.weights) {
        if (std::find(kTaskNames.begin(), kTaskNames.end(), name) == kTaskNames.end())
            json_fields::reject_unknown("training.data.tasks." + name, [] {
                std::vector<std::string> known;
                for (const auto& n : kTaskNames) known.push_back("training.data.tasks." + n);
                return known;
            }(), "the synthetic tasks");
        if (!(std::isfinite(weight) && weight >= 0))
            throw ConfigError("training.data.tasks." + name,
                              "weight must be >= 0, got " + format_number(weight));
    }
    if (options_.digits < 1 || options_.digits > SyntheticOptions::kMaxDigits)
        throw ConfigError("training.data.digits", "must be in [1, 18], got " +
                                                      std::to_string(options_.digits));
    if (options_.min_length < 1)
        throw ConfigError("training.data.min_length",
                          "must be >= 1, got " + std::to_string(options_.min_length));
    if (options_.max_length < options_.min_length ||
        options_.max_length > SyntheticOptions::kMaxLength)
        throw ConfigError("training.data.max_length",
                          "must be in [min_length (" + std::to_string(options_.min_length) +
                              "), 256], got " + std::to_string(options_.max_length));
    double total = 0;
    for (int t = 0; t < kTaskCount; ++t) {
        const auto it = options_.weights.find(kTaskNames[t]);
        const double w = options_.weights.empty() ? 1.0 : it == options_.weights.end() ? 0.0 : it->second;
        if (w <= 0) continue;
        labels_.push_back(kTaskNames[t]);
        task_of_label_.push_back(t);
        total += w;
        cumulative_.push_back(total);
    }
    if (labels_.empty())
        throw ConfigError("training.data.tasks", "needs at least one task with a weight > 0");
    for (double& c : cumulative_) c /= total;
    cumulative_.back() = 1.0;
}

Document SyntheticTasks::document(uint64_t index) const {
    Document d;
    document(index, d);
    return d;
}

void SyntheticTasks::document(uint64_t index, Document& out) const {
    Draws r{seed_, index};
    const double u = r.uniform();
    int32_t label = 0;
    while (label + 1 < static_cast<int32_t>(cumulative_.size()) && u >= cumulative_[label]) ++label;
    out.label = label;
    out.answer_begin = -1;
    std::string& s = out.text;
    s.clear();
    const auto mark_answer = [&] { out.answer_begin = static_cast<int32_t>(s.size()); };
    const int64_t length = r.range(options_.min_length, options_.max_length);
    // Room for the whole document up front: the answer is appended from the question's own
    // bytes, which must not move while they are read.
    s.reserve(static_cast<size_t>(2 * length + 64));
    switch (task_of_label_[label]) {
        case kArithmetic: {
            const int64_t a = random_operand(r, options_.digits);
            const int64_t b = random_operand(r, options_.digits);
            const bool add = r.coin();
            append_int(a, s);
            s += add ? '+' : '-';
            append_int(b, s);
            s += '=';
            mark_answer();
            append_int(add ? a + b : a - b, s);
            break;
        }
        case kCopy: {
            s += "copy:";
            const size_t begin = s.size();
            append_letters(r, length, s);
            s += '>';
            mark_answer();
            s.append(s, begin, static_cast<size_t>(length));
            break;
        }
        case kReverse: {
            s += "rev:";
            const size_t begin = s.size();
            append_letters(r, length, s);
            s += '>';
            mark_answer();
            s.append(s, begin, static_cast<size_t>(length));
            std::reverse(s.begin() + out.answer_begin, s.end());
            break;
        }
        case kSort: {
            s += "sort:";
            const size_t begin = s.size();
            append_letters(r, length, s);
            s += '>';
            mark_answer();
            s.append(s, begin, static_cast<size_t>(length));
            std::sort(s.begin() + out.answer_begin, s.end());
            break;
        }
        case kBrackets: {
            s += "brk:";
            const size_t begin = s.size();
            const int64_t n = std::max<int64_t>(2, length - length % 2);
            // A random balanced string: open while opens remain and a coin says so (or nothing
            // is open), else close the innermost open bracket.
            std::array<char, SyntheticOptions::kMaxLength> stack{};
            int64_t depth = 0, opens_left = n / 2;
            static constexpr char kOpen[3] = {'(', '[', '{'};
            for (int64_t i = 0; i < n; ++i) {
                if (opens_left > 0 && (depth == 0 || r.coin())) {
                    const char open = kOpen[r.range(0, 2)];
                    s += open;
                    stack[depth++] = closer_of(open);
                    --opens_left;
                } else {
                    s += stack[--depth];
                }
            }
            // Half the samples get one bracket replaced by another, which unbalances them; the
            // verdict always comes from the checker, never from the coin.
            if (r.coin()) {
                static constexpr char kAll[6] = {'(', ')', '[', ']', '{', '}'};
                char& c = s[begin + r.range(0, n - 1)];
                const char* pos = std::find(kAll, kAll + 6, c);
                c = kAll[(pos - kAll + r.range(1, 5)) % 6];
            }
            const bool ok = brackets_balanced(std::string_view(s).substr(begin));
            s += '>';
            mark_answer();
            s += ok ? "ok" : "bad";
            break;
        }
        case kLanguage: {
            const int64_t sentences = r.range(1, 2);
            for (int64_t i = 0; i < sentences; ++i) {
                if (i > 0) s += ' ';
                append_sentence(r, s);
            }
            break;
        }
        default: break;
    }
}

bool SyntheticTasks::is_valid(const std::string& task, const std::string& text) {
    const std::string_view t = text;
    const auto split = [&](std::string_view prefix, std::string_view& question,
                           std::string_view& answer) {
        if (t.substr(0, prefix.size()) != prefix) return false;
        const size_t gt = t.find('>', prefix.size());
        if (gt == std::string_view::npos) return false;
        question = t.substr(prefix.size(), gt - prefix.size());
        answer = t.substr(gt + 1);
        return true;
    };
    const auto letters = [](std::string_view s) {
        return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= 'a' && c <= 'z'; });
    };
    std::string_view q, a;
    if (task == "arithmetic") {
        const size_t eq = t.find('=');
        if (eq == std::string_view::npos) return false;
        const size_t op = t.find_first_of("+-", 1);
        if (op == std::string_view::npos || op > eq) return false;
        int64_t x = 0, y = 0, z = 0;
        if (!parse_int(t.substr(0, op), x) || !parse_int(t.substr(op + 1, eq - op - 1), y) ||
            !parse_int(t.substr(eq + 1), z))
            return false;
        return z == (t[op] == '+' ? x + y : x - y);
    }
    if (task == "copy") return split("copy:", q, a) && letters(q) && q == a;
    if (task == "reverse")
        return split("rev:", q, a) && letters(q) && std::equal(q.rbegin(), q.rend(), a.begin(), a.end());
    if (task == "sort") {
        if (!split("sort:", q, a) || !letters(q)) return false;
        std::string sorted(q);
        std::sort(sorted.begin(), sorted.end());
        return sorted == a;
    }
    if (task == "brackets") {
        if (!split("brk:", q, a) || q.empty() || q.size() > SyntheticOptions::kMaxLength) return false;
        if (q.find_first_not_of("()[]{}") != std::string_view::npos) return false;
        return a == (brackets_balanced(q) ? "ok" : "bad");
    }
    if (task == "language") return language_valid(t);
    return false;
}

}  // namespace moe
