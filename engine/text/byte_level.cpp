#include "text/byte_level.h"

#include <array>

#include "text/utf8.h"

namespace moe {

namespace {

struct Alphabet {
    std::array<std::string, 256> text;
    std::array<int, 512> byte_of{};  // code point -> byte (all byte-level characters are < 512)
    Alphabet() {
        byte_of.fill(-1);
        int extra = 0;
        for (int b = 0; b < 256; ++b) {
            const bool printable =
                (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            const char32_t c = printable ? char32_t(b) : char32_t(256 + extra++);
            utf8_append(c, text[b]);
            byte_of[c] = b;
        }
    }
};

const Alphabet& alphabet() {
    static const Alphabet a;
    return a;
}

}  // namespace

const std::string& byte_level_char(uint8_t b) {
    return alphabet().text[b];
}

void append_byte_level(std::string_view bytes, std::string& out) {
    const Alphabet& a = alphabet();
    for (unsigned char b : bytes) out += a.text[b];
}

int byte_level_byte(char32_t c) {
    return c < 512 ? alphabet().byte_of[c] : -1;
}

bool byte_level_decode(std::string_view text, std::string& out) {
    for (size_t i = 0; i < text.size();) {
        const size_t n = utf8_sequence_length(text, i);
        if (n == 0) return false;
        const int b = byte_level_byte(utf8_decode_at(text, i, n));
        if (b < 0) return false;
        out += static_cast<char>(b);
        i += n;
    }
    return true;
}

}  // namespace moe
