#include "data/byte_tokenizer.h"

#include <cstdio>

#include "core/error.h"

namespace moe {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) {
    std::vector<int32_t> ids;
    encode_append(text, ids);
    return ids;
}

void ByteTokenizer::encode_append(std::string_view text, std::vector<int32_t>& out) {
    out.reserve(out.size() + text.size());
    // Through unsigned char: bytes >= 0x80 must become 128..255, not negative ids.
    for (unsigned char c : text) out.push_back(static_cast<int32_t>(c));
}

std::string ByteTokenizer::decode(const int32_t* ids, int64_t count) {
    std::string text;
    text.reserve(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) {
        const int32_t id = ids[i];
        if (id < 0 || id >= kVocabSize)
            throw Error("byte tokenizer: token id " + std::to_string(id) + " at position " +
                        std::to_string(i) + " is outside the vocabulary [0, 256)");
        text.push_back(static_cast<char>(static_cast<unsigned char>(id)));
    }
    return text;
}

std::string ByteTokenizer::decode(const std::vector<int32_t>& ids) {
    return decode(ids.data(), static_cast<int64_t>(ids.size()));
}

std::string ByteTokenizer::token_display(int32_t id) {
    if (id < 0 || id >= kVocabSize) return "<" + std::to_string(id) + ">";
    switch (id) {
        case ' ': return "\u2420";  // SYMBOL FOR SPACE: a visible cell in token grids
        case '\n': return "\\n";
        case '\t': return "\\t";
        case '\r': return "\\r";
        default: break;
    }
    if (id > 0x20 && id < 0x7F) return std::string(1, static_cast<char>(id));
    char buffer[8];
    std::snprintf(buffer, sizeof buffer, "\\x%02X", static_cast<unsigned>(id));
    return buffer;
}

}  // namespace moe
