#pragma once
// GPT-2's byte-level alphabet, used by byte-level BPE tokenizers (HF `ByteLevel`): every byte is
// written as one printable Unicode character (printable Latin-1 bytes as themselves, the other
// 68 bytes as U+0100 onwards, in byte order), so any byte string becomes text a vocabulary of
// strings can hold, and back.
#include <cstdint>
#include <string>
#include <string_view>

namespace moe {

// The UTF-8 text of byte b's character.
const std::string& byte_level_char(uint8_t b);
// Appends the byte-level text of `bytes` to out.
void append_byte_level(std::string_view bytes, std::string& out);
// The byte of a byte-level character (a code point), or -1 when it is not one.
int byte_level_byte(char32_t c);
// Bytes of a byte-level string: false (out unspecified) when a character is not in the
// alphabet (or the string is not valid UTF-8).
bool byte_level_decode(std::string_view text, std::string& out);

}  // namespace moe
