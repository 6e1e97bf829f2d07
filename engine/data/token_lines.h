#pragma once
// Token sequences in a text file, one sequence per line as whitespace-separated integer ids
// (the format of `moe-train --logits --tokens FILE` and of the reference tests' batches).
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct TokenLines {
    int64_t rows = 0;
    int64_t length = 0;          // tokens per line (all lines must agree)
    std::vector<int32_t> ids;    // [rows, length]
};

// Blank lines are skipped. Errors (FileError) name the path, the line and the bad text: a
// non-integer, an id outside [0, vocab), a line longer than `max_length` (> 0: the model's
// max_position_embeddings; checked while reading, so a huge line is not read whole), lines of
// different lengths, an empty file.
TokenLines read_token_lines(const std::string& path, int64_t vocab, int64_t max_length = 0);
void write_token_lines(const std::string& path, const TokenLines& lines);

}  // namespace moe
