#include "text/hf_tokenizer.h"

#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_file.h"
#include "text/byte_level.h"
#include "text/utf8.h"

namespace moe {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// tokenizer_config.json writes a token as a string or as {"content": ..., ...}.
std::string token_text(const json& cfg, const char* key, const std::string& file) {
    if (!cfg.contains(key) || cfg[key].is_null()) return {};
    const json& v = cfg[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string())
        return v["content"].get<std::string>();
    throw FileError(file, std::string(key) + ": expected a string or {\"content\": ...}");
}

}  // namespace

HfTokenizer::HfTokenizer(HfTokenizer&&) noexcept = default;
HfTokenizer& HfTokenizer::operator=(HfTokenizer&&) noexcept = default;
HfTokenizer::~HfTokenizer() = default;

HfTokenizer HfTokenizer::load(const std::string& path) {
    fs::path file = path;
    std::error_code ec;
    if (fs::is_directory(file, ec)) file /= "tokenizer.json";
    if (!fs::exists(file, ec))
        throw FileError(file.string(), "no such file (a tokenizer.json, or a folder holding one)");
    const json j = read_json_file(file.string());
    HfTokenizer t;
    t.path_ = file.string();
    try {
        if (!j.is_object()) throw ConfigError("(top level)", "expected an object");
        if (j.contains("normalizer") && !j["normalizer"].is_null()) {
            const json& n = j["normalizer"];
            // An empty Sequence is what DeepSeek ships; real normalization (NFC, lowercase...)
            // would change the text before the regexes and is not implemented.
            const bool empty = n.is_object() && n.value("type", "") == "Sequence" &&
                               n.contains("normalizers") && n["normalizers"].is_array() &&
                               n["normalizers"].empty();
            if (!empty)
                throw ConfigError(
                    "normalizer",
                    "only null or an empty Sequence is supported, got " + n.dump().substr(0, 120));
        }
        if (j.contains("decoder") && !j["decoder"].is_null() &&
            j["decoder"].value("type", "") != "ByteLevel")
            throw ConfigError("decoder.type", "only the ByteLevel decoder is supported, got \"" +
                                                  j["decoder"].value("type", "") + "\"");
        if (!j.contains("model")) throw ConfigError("model", "missing");
        t.model_ = BpeModel::from_json(j["model"], "model");
        t.added_ = AddedTokens::from_json(j.contains("added_tokens") ? j["added_tokens"] : json(),
                                          "added_tokens");
        t.pre_ = PreTokenizer::from_json(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(),
                                         "pre_tokenizer");
    } catch (const ConfigError& e) {
        throw FileError(t.path_, e.what());
    }
    t.vocab_size_ = t.model_.vocab_size();
    for (const AddedToken& a : t.added_.all()) t.vocab_size_ = std::max(t.vocab_size_, a.id + 1);

    const fs::path cfg_file = file.parent_path() / "tokenizer_config.json";
    if (fs::exists(cfg_file, ec)) {
        const std::string cf = cfg_file.string();
        const json cfg = read_json_file(cf);
        if (!cfg.is_object()) throw FileError(cf, "expected an object");
        const auto id_of = [&](const std::string& text, const char* key) -> int32_t {
            if (text.empty()) return -1;
            if (const AddedToken* a = t.added_.find(text)) return a->id;
            if (int32_t id = t.model_.id(text); id >= 0) return id;
            throw FileError(cf,
                            std::string(key) + ": \"" + text + "\" is not a token of " + t.path_);
        };
        t.bos_text_ = token_text(cfg, "bos_token", cf);
        t.eos_text_ = token_text(cfg, "eos_token", cf);
        t.bos_id_ = id_of(t.bos_text_, "bos_token");
        t.eos_id_ = id_of(t.eos_text_, "eos_token");
        const auto flag = [&](const char* key, bool def) {
            if (!cfg.contains(key) || cfg[key].is_null()) return def;
            if (!cfg[key].is_boolean())
                throw FileError(cf, std::string(key) + ": expected true or false");
            return cfg[key].get<bool>();
        };
        t.add_bos_ = flag("add_bos_token", false) && t.bos_id_ >= 0;
        t.add_eos_ = flag("add_eos_token", false) && t.eos_id_ >= 0;
        if (cfg.contains("chat_template") && cfg["chat_template"].is_string())
            t.chat_template_ = cfg["chat_template"].get<std::string>();
    }
    return t;
}

bool HfTokenizer::is_special(int32_t id) const {
    const AddedToken* a = added_.find(id);
    return a && a->special;
}

void HfTokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
    std::vector<TextSpan> pieces{{0, text.size()}};
    pre_->split(text, pieces);
    const bool prefix = pre_->prefix_space();
    std::string buf;
    for (const TextSpan& p : pieces) {
        std::string_view piece = text.substr(p.begin, p.end - p.begin);
        if (prefix && (piece.empty() || piece.front() != ' ')) {
            buf.assign(1, ' ');
            buf.append(piece);
            model_.encode_piece(buf, out);
        } else {
            model_.encode_piece(piece, out);
        }
    }
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special_tokens) const {
    if (const size_t bad = utf8_first_invalid(text); bad != std::string_view::npos)
        throw Error("tokenizer: the text is not valid UTF-8 at byte " + std::to_string(bad));
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 2);
    if (add_special_tokens && add_bos_) ids.push_back(bos_id_);
    std::vector<TextSegment> segs;
    added_.segment(text, segs);
    for (const TextSegment& s : segs) {
        if (s.added_id >= 0)
            ids.push_back(s.added_id);
        else
            encode_plain(text.substr(s.begin, s.end - s.begin), ids);
    }
    if (add_special_tokens && add_eos_) ids.push_back(eos_id_);
    return ids;
}

std::string HfTokenizer::token_bytes(int32_t id) const {
    if (id < 0 || id >= vocab_size_)
        throw Error("tokenizer: token id " + std::to_string(id) +
                    " is outside the vocabulary (0.." + std::to_string(vocab_size_ - 1) + ")");
    // As HF's ByteLevel decoder: a token whose characters are all byte-level symbols gives
    // those bytes; any other token (an added token such as <｜User｜>) gives its own text.
    const AddedToken* a = added_.find(id);
    const std::string& text = a ? a->content : model_.token(id);
    std::string bytes;
    if (byte_level_decode(text, bytes)) return bytes;
    return text;
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
    std::string bytes;
    for (int32_t id : ids) {
        if (skip_special && is_special(id)) continue;
        bytes += token_bytes(id);
    }
    return utf8_lossy(bytes);
}

std::string HfTokenizer::apply_chat_template(const std::vector<ChatMessage>& messages,
                                             bool add_generation_prompt) const {
    static const std::string kUser = "<｜User｜>", kAssistant = "<｜Assistant｜>";
    if (chat_template_.find(kUser) == std::string::npos ||
        chat_template_.find(kAssistant) == std::string::npos)
        throw Error(
            "tokenizer: " + path_ +
            ": the chat template is not DeepSeek's (no <｜User｜>/<｜Assistant｜> markers); "
            "give the prompt as plain text");
    std::string system, out = bos_text_;
    for (const ChatMessage& m : messages)
        if (m.role == "system") system += (system.empty() ? "" : "\n\n") + m.content;
    out += system;
    for (const ChatMessage& m : messages) {
        if (m.role == "user")
            out += kUser + m.content;
        else if (m.role == "assistant")
            out += kAssistant + m.content + eos_text_;
        else if (m.role != "system")
            throw Error("tokenizer: chat message role \"" + m.role +
                        "\" is not one of system, user, assistant");
    }
    if (add_generation_prompt) out += kAssistant;
    return out;
}

}  // namespace moe
