#pragma once
// The few UTF-8 helpers the tokenizer needs (validation, stepping, lossy repair).
#include <cstddef>
#include <string>
#include <string_view>

namespace moe {

// Length of the valid UTF-8 sequence starting at s[i] (1..4), or 0 when it is not valid
// (truncated, overlong, surrogate, past U+10FFFF, a stray continuation byte).
size_t utf8_sequence_length(std::string_view s, size_t i);
// Decodes the valid sequence at s[i] (utf8_sequence_length(s, i) > 0).
char32_t utf8_decode_at(std::string_view s, size_t i, size_t len);
void utf8_append(char32_t c, std::string& out);
// Offset of the first invalid byte, or npos when s is valid UTF-8.
size_t utf8_first_invalid(std::string_view s);
// s with each maximal invalid subsequence replaced by U+FFFD (as Rust's from_utf8_lossy, which
// is what HF tokenizers' decode returns).
std::string utf8_lossy(std::string_view s);

}  // namespace moe
