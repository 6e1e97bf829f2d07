#include "data/fortunes_corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "core/error.h"
#include "data/text_corpus.h"

namespace fs = std::filesystem;

namespace moe {

namespace {

// Top-level files that are not English.
const std::map<std::string, std::string> kTopLevelLanguage = {
    {"brasil", "pt"}, {"chinese", "zh"}, {"song100", "zh"}, {"tang300", "zh"}};

bool is_fortune_file(const fs::directory_entry& e) {
    std::error_code ec;
    if (e.is_symlink(ec) || !e.is_regular_file(ec)) return false;
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') return false;
    const std::string ext = e.path().extension().string();
    return ext != ".dat" && ext != ".u8";
}

// language -> its files, sorted.
std::map<std::string, std::vector<fs::path>> scan(const std::string& root) {
    std::map<std::string, std::vector<fs::path>> files;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root, ec)) {
        const std::string name = e.path().filename().string();
        if (is_fortune_file(e)) {
            const auto it = kTopLevelLanguage.find(name);
            files[it == kTopLevelLanguage.end() ? "en" : it->second].push_back(e.path());
        } else if (!e.is_symlink(ec) && e.is_directory(ec) && name != "off" && name[0] != '.') {
            for (const auto& f : fs::directory_iterator(e.path(), ec))
                if (is_fortune_file(f)) files[name].push_back(f.path());
        }
    }
    for (auto& [lang, list] : files) std::sort(list.begin(), list.end());
    return files;
}

std::string strip_ansi(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\x1b' && i + 1 < text.size() && text[i + 1] == '[') {
            size_t j = i + 2;
            while (j < text.size() && ((text[j] >= '0' && text[j] <= '9') || text[j] == ';')) ++j;
            i = j;  // skips the final letter too
            continue;
        }
        out += text[i];
    }
    return out;
}

}  // namespace

std::vector<std::string> fortune_languages(const std::string& root) {
    std::vector<std::string> out;
    for (const auto& [lang, list] : scan(root)) out.push_back(lang);
    return out;
}

std::string fortunes_package(const std::string& language) {
    if (language == "en") return "fortunes-min";
    if (language == "pt") return "fortunes-br";
    return "fortunes-" + language;
}

void split_fortunes(const std::string& text, int32_t label, std::vector<Document>& out) {
    const std::string clean = strip_ansi(text);
    std::string entry;
    const auto flush = [&] {
        const size_t first = entry.find_first_not_of("\n\r");
        const size_t last = entry.find_last_not_of(" \t\n\r");
        if (first != std::string::npos && last != std::string::npos && last >= first)
            out.push_back(Document{entry.substr(first, last - first + 1), label, -1});
        entry.clear();
    };
    size_t pos = 0;
    while (pos < clean.size()) {
        size_t end = clean.find('\n', pos);
        if (end == std::string::npos) end = clean.size();
        std::string_view line(clean.data() + pos, end - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line == "%") {
            flush();
        } else {
            entry += line;
            entry += '\n';
        }
        pos = end + 1;
    }
    flush();
}

Corpus load_fortunes_corpus(const FortunesOptions& options) {
    std::error_code ec;
    if (!fs::is_directory(options.root, ec))
        throw FileError(options.root, "fortunes folder not found; install fortunes-min (English) "
                                      "and fortunes-de, fortunes-ru, ... (scripts/install-deps.sh)");
    const auto files = scan(options.root);
    std::vector<std::string> languages = options.languages;
    if (languages.empty())
        for (const auto& [lang, list] : files) languages.push_back(lang);
    std::sort(languages.begin(), languages.end());
    languages.erase(std::unique(languages.begin(), languages.end()), languages.end());

    Corpus corpus;
    std::string text;
    for (const auto& lang : languages) {
        const auto it = files.find(lang);
        if (it == files.end()) {
            std::string found;
            for (const auto& [l, list] : files) found += (found.empty() ? "" : ", ") + l;
            throw FileError(options.root, "no fortunes for language \"" + lang +
                                              "\" (package " + fortunes_package(lang) +
                                              "); found: " + (found.empty() ? "none" : found));
        }
        const auto label = static_cast<int32_t>(corpus.label_names.size());
        corpus.label_names.push_back(lang);
        for (const auto& path : it->second) {
            std::ifstream in(path, std::ios::binary);
            if (!in) throw FileError(path.string(), "cannot open fortune file");
            text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
            if (text.find('\0') != std::string::npos) continue;  // not a text file
            split_fortunes(text, label, corpus.documents);
        }
    }
    if (corpus.documents.empty())
        throw FileError(options.root, "no fortune entries found");
    cap_per_label(corpus, options.max_per_label);
    return corpus;
}

}  // namespace moe
