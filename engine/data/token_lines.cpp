#include "data/token_lines.h"

#include <charconv>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace moe {

TokenLines read_token_lines(const std::string& path, int64_t vocab, int64_t max_length) {
    std::ifstream in(path);
    if (!in) throw FileError(path, "cannot open token file");
    TokenLines out;
    std::string line;
    int64_t line_no = 0;
    while (std::getline(in, line)) {
        ++line_no;
        std::istringstream words(line);
        std::string word;
        int64_t count = 0;
        while (words >> word) {
            int64_t id = 0;
            const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), id);
            if (ec != std::errc() || end != word.data() + word.size())
                throw FileError(path, "line " + std::to_string(line_no) + ": '" + word +
                                          "' is not a token id");
            if (id < 0 || id >= vocab)
                throw FileError(path, "line " + std::to_string(line_no) + ": token id " +
                                          std::to_string(id) + " is outside the vocabulary [0, " +
                                          std::to_string(vocab) + ")");
            if (max_length > 0 && count >= max_length)
                throw FileError(path, "line " + std::to_string(line_no) + " has more than " +
                                          std::to_string(max_length) +
                                          " tokens, the model's max_position_embeddings");
            out.ids.push_back(static_cast<int32_t>(id));
            ++count;
        }
        if (count == 0) continue;
        if (out.rows == 0)
            out.length = count;
        else if (count != out.length)
            throw FileError(path, "line " + std::to_string(line_no) + " has " +
                                      std::to_string(count) + " tokens, earlier lines have " +
                                      std::to_string(out.length));
        ++out.rows;
    }
    if (out.rows == 0) throw FileError(path, "no token sequences in the file");
    return out;
}

void write_token_lines(const std::string& path, const TokenLines& lines) {
    std::ofstream out(path);
    if (!out) throw FileError(path, "cannot write token file");
    for (int64_t r = 0; r < lines.rows; ++r) {
        for (int64_t i = 0; i < lines.length; ++i)
            out << (i ? " " : "") << lines.ids[static_cast<size_t>(r * lines.length + i)];
        out << '\n';
    }
    if (!out) throw FileError(path, "write failed");
}

}  // namespace moe
