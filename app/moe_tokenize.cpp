// moe-tokenize: a Hugging Face tokenizer.json (DeepSeek-V3's, or any byte-level BPE in that
// format) from the command line - encode text to ids, decode ids to text, and time encoding.
//   moe-tokenize TOKENIZER --text "Hello"            ids, one line
//   moe-tokenize TOKENIZER --decode 1,2,3            text
//   moe-tokenize TOKENIZER --jsonl IN [--out OUT]    each line of IN a JSON string -> a JSON
//                                                    array of ids per line (the parity test)
//   moe-tokenize TOKENIZER --file F --bench          encoding speed (tokens/s, MB/s)
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "text/hf_tokenizer.h"

namespace {

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw moe::FileError(path, "cannot open");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string ids_json(const std::vector<int32_t>& ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) s += ',';
        s += std::to_string(ids[i]);
    }
    return s + "]";
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"moe-tokenize: encode and decode with a Hugging Face tokenizer.json"};
    std::string tokenizer, text, file, jsonl, out_path, decode_ids;
    bool add_special = false, bench = false, skip_special = false;
    int repeat = 3;
    app.add_option("tokenizer", tokenizer, "tokenizer.json, or a checkpoint folder holding one")
        ->required();
    auto* o_text = app.add_option("--text", text, "text to encode");
    auto* o_file = app.add_option("--file", file, "encode this file's whole text");
    auto* o_jsonl =
        app.add_option("--jsonl", jsonl, "encode each line (a JSON string) of this file");
    auto* o_dec = app.add_option("--decode", decode_ids, "decode comma-separated ids");
    o_text->excludes(o_file)->excludes(o_jsonl)->excludes(o_dec);
    o_file->excludes(o_jsonl)->excludes(o_dec);
    o_jsonl->excludes(o_dec);
    app.add_option("--out", out_path, "with --jsonl: write here (refuses an existing file)");
    app.add_flag("--add-special", add_special, "add BOS/EOS as tokenizer_config.json asks");
    app.add_flag("--skip-special", skip_special, "with --decode: leave special tokens out");
    app.add_flag("--bench", bench, "with --file: time encoding (best of --repeat runs)");
    app.add_option("--repeat", repeat, "runs for --bench")->check(CLI::Range(1, 1000));
    CLI11_PARSE(app, argc, argv);
    try {
        const auto t0 = std::chrono::steady_clock::now();
        const moe::HfTokenizer tok = moe::HfTokenizer::load(tokenizer);
        const double load_s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (!decode_ids.empty()) {
            std::vector<int32_t> ids;
            std::stringstream ss(decode_ids);
            std::string item;
            while (std::getline(ss, item, ',')) {
                try {
                    size_t used = 0;
                    ids.push_back(std::stoi(item, &used));
                    if (used != item.size()) throw std::invalid_argument(item);
                } catch (const std::exception&) {
                    throw moe::ConfigError("--decode", "\"" + item + "\" is not an integer id");
                }
            }
            std::cout << tok.decode(ids, skip_special) << "\n";
            return 0;
        }
        if (!jsonl.empty()) {
            std::ifstream in(jsonl, std::ios::binary);
            if (!in) throw moe::FileError(jsonl, "cannot open");
            std::ofstream out_file;
            if (!out_path.empty()) {
                if (std::ifstream(out_path).good())
                    throw moe::FileError(out_path, "exists already (not overwritten)");
                out_file.open(out_path, std::ios::binary);
                if (!out_file) throw moe::FileError(out_path, "cannot create");
            }
            std::ostream& out = out_path.empty() ? std::cout : out_file;
            std::string line;
            for (int64_t n = 1; std::getline(in, line); ++n) {
                nlohmann::json j;
                try {
                    j = nlohmann::json::parse(line);
                } catch (const std::exception& e) {
                    throw moe::FileError(jsonl,
                                         "line " + std::to_string(n) + ": not JSON: " + e.what());
                }
                if (!j.is_string())
                    throw moe::FileError(jsonl,
                                         "line " + std::to_string(n) + ": expected a JSON string");
                out << ids_json(tok.encode(j.get<std::string>(), add_special)) << "\n";
            }
            if (!out)
                throw moe::FileError(out_path.empty() ? "(stdout)" : out_path, "write failed");
            return 0;
        }
        if (!file.empty()) text = read_file(file);
        if (!bench) {
            std::cout << ids_json(tok.encode(text, add_special)) << "\n";
            return 0;
        }
        double best = 1e300;
        size_t tokens = 0;
        for (int r = 0; r < repeat; ++r) {
            const auto a = std::chrono::steady_clock::now();
            tokens = tok.encode(text).size();
            best = std::min(
                best, std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
        }
        std::printf(
            "moe-tokenize: %zu bytes -> %zu tokens in %.4f s (best of %d; load %.2f s): "
            "%.0f tokens/s, %.2f MB/s\n",
            text.size(), tokens, best, repeat, load_s, tokens / best, text.size() / best / 1e6);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "moe-tokenize: %s\n", e.what());
        return 1;
    }
}
