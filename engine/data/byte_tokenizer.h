#pragma once
// Byte-level tokenizer: a token is one byte of the UTF-8 text, so the vocabulary is 256 and every
// string round-trips exactly (multi-byte characters become several tokens). Token 0 (NUL) never
// occurs in text the data sources accept; the packer uses it to end each document.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moe {

class ByteTokenizer {
public:
    static constexpr int32_t kVocabSize = 256;
    static constexpr int32_t kSeparator = 0;  // ends every packed document

    static std::vector<int32_t> encode(std::string_view text);
    // Appends without a temporary (the loader packs straight into batch buffers).
    static void encode_append(std::string_view text, std::vector<int32_t>& out);
    // Throws Error naming the id for an id outside [0, 256).
    static std::string decode(const std::vector<int32_t>& ids);
    static std::string decode(const int32_t* ids, int64_t count);
    // A short printable label for GUIs: "a" for printable ASCII, "␠" for space, "\n" "\t" "\r"
    // escapes, "\x00"-style hex for other control bytes and for non-ASCII bytes ("\xC3").
    static std::string token_display(int32_t id);
};

}  // namespace moe
