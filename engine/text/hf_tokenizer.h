#pragma once
// HfTokenizer: a Hugging Face byte-level BPE tokenizer (tokenizer.json), as DeepSeek-V3,
// DeepSeek-V2 and most models in the HF DeepSeek layout ship it: added tokens matched first and
// never split, the pre-tokenizer's splits (PCRE2), byte-level BPE, and the ByteLevel decoder.
// tokenizer_config.json, when present beside it, gives the BOS/EOS tokens and whether encode
// adds BOS/EOS. Loading checks the files and names the file and field of anything it refuses.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/added_tokens.h"
#include "text/bpe_model.h"
#include "text/pretokenizer.h"

namespace moe {

struct ChatMessage {
    std::string role;  // "system", "user" or "assistant"
    std::string content;
};

class HfTokenizer {
public:
    // path: a tokenizer.json, or a folder holding one (a checkpoint folder). FileError naming
    // the file (and field) for a missing, malformed or unsupported tokenizer.
    static HfTokenizer load(const std::string& path);
    HfTokenizer(HfTokenizer&&) noexcept;
    HfTokenizer& operator=(HfTokenizer&&) noexcept;
    ~HfTokenizer();

    // Token ids of UTF-8 text (Error naming the byte offset for invalid UTF-8). With
    // add_special_tokens, BOS / EOS as tokenizer_config.json asks (add_bos_token,
    // add_eos_token).
    std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
    // Text of ids: special tokens kept unless skip_special; byte sequences that are not valid
    // UTF-8 on their own (a token cut inside a character) become U+FFFD, as HF does. Error for
    // an id outside the vocabulary.
    std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;
    // The raw bytes of one token (may be part of a UTF-8 character): what generation streams.
    std::string token_bytes(int32_t id) const;

    int32_t vocab_size() const { return vocab_size_; }
    int32_t bos_id() const { return bos_id_; }  // -1 when none
    int32_t eos_id() const { return eos_id_; }
    bool is_special(int32_t id) const;
    const BpeModel& model() const { return model_; }
    const AddedTokens& added_tokens() const { return added_; }
    const std::string& path() const { return path_; }

    // The DeepSeek chat format of tokenizer_config.json's chat_template ([BOS] system text,
    // then <｜User｜>text, <｜Assistant｜>text<｜end▁of▁sentence｜>, and <｜Assistant｜> at the end
    // when add_generation_prompt). Only that template family is rendered (no Jinja engine):
    // Error when the template does not use those markers.
    std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                    bool add_generation_prompt) const;

private:
    HfTokenizer() = default;
    void encode_plain(std::string_view text, std::vector<int32_t>& out) const;

    std::string path_;
    BpeModel model_;
    AddedTokens added_;
    std::unique_ptr<PreTokenizer> pre_;
    int32_t vocab_size_ = 0;
    int32_t bos_id_ = -1, eos_id_ = -1;
    bool add_bos_ = false, add_eos_ = false;
    std::string chat_template_;
    std::string bos_text_, eos_text_;
};

}  // namespace moe
