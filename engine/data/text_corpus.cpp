#include "data/text_corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "core/error.h"

namespace fs = std::filesystem;

namespace moe {

namespace {

bool read_text_file(const fs::path& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path.string(), "cannot open text file");
    out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) throw FileError(path.string(), "cannot read text file");
    return out.find('\0') == std::string::npos;  // NUL: binary, and NUL is our separator
}

bool is_text_candidate(const fs::path& p) {
    const std::string name = p.filename().string();
    if (name.empty() || name[0] == '.') return false;
    const std::string ext = p.extension().string();
    return ext.empty() || ext == ".txt";
}

bool is_blank(std::string_view line) {
    return line.find_first_not_of(" \t\f\v") == std::string_view::npos;
}

}  // namespace

void split_paragraphs(const std::string& text, int32_t label, std::vector<Document>& out) {
    std::string paragraph;
    const auto flush = [&] {
        while (!paragraph.empty() && (paragraph.back() == '\n' || paragraph.back() == ' ' ||
                                      paragraph.back() == '\t'))
            paragraph.pop_back();
        if (!paragraph.empty()) out.push_back(Document{paragraph, label, -1});
        paragraph.clear();
    };
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        std::string_view line(text.data() + pos, end - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (is_blank(line)) {
            flush();
        } else {
            if (!paragraph.empty()) paragraph += '\n';
            paragraph += line;
        }
        pos = end + 1;
    }
    flush();
}

void cap_per_label(Corpus& corpus, int64_t max_per_label) {
    if (max_per_label <= 0) return;
    std::vector<int64_t> count(corpus.label_names.size(), 0);
    for (const auto& d : corpus.documents) ++count[d.label];
    std::vector<int64_t> seen(count.size(), 0), kept(count.size(), 0);
    std::vector<Document> out;
    for (auto& d : corpus.documents) {
        const int64_t n = count[d.label], i = seen[d.label]++;
        if (n <= max_per_label) {
            out.push_back(std::move(d));
            continue;
        }
        // Keep document i when it is the first one at or past the next even step k * n / max.
        const int64_t k = kept[d.label];
        if (k < max_per_label && i == (k * n) / max_per_label) {
            ++kept[d.label];
            out.push_back(std::move(d));
        }
    }
    corpus.documents = std::move(out);
}

Corpus load_text_corpus(const std::string& path, int64_t max_per_label) {
    std::error_code ec;
    const fs::path root(path);
    if (path.empty() || !fs::exists(root, ec))
        throw FileError(path, "text corpus not found (expected a text file or a folder)");
    // (file, label name) pairs in a sorted order so label ids and documents are stable.
    std::vector<std::pair<fs::path, std::string>> files;
    if (fs::is_regular_file(root, ec)) {
        files.emplace_back(root, root.stem().string());
    } else if (fs::is_directory(root, ec)) {
        for (auto it = fs::recursive_directory_iterator(
                 root, fs::directory_options::skip_permission_denied, ec);
             it != fs::recursive_directory_iterator(); it.increment(ec)) {
            if (ec) throw FileError(path, "cannot list folder: " + ec.message());
            const fs::path& p = it->path();
            if (p.filename().string().starts_with(".")) {
                if (it->is_directory(ec)) it.disable_recursion_pending();
                continue;
            }
            if (!it->is_regular_file(ec) || !is_text_candidate(p)) continue;
            const fs::path rel = fs::relative(p, root, ec);
            const std::string label = std::distance(rel.begin(), rel.end()) > 1
                                          ? rel.begin()->string()
                                          : p.stem().string();
            files.emplace_back(p, label);
        }
        std::sort(files.begin(), files.end());
    } else {
        throw FileError(path, "not a regular file or folder");
    }

    Corpus corpus;
    std::map<std::string, int32_t> label_ids;
    std::string text;
    std::vector<std::pair<std::string, std::vector<Document>>> by_file;
    for (const auto& [file, label] : files) {
        if (!read_text_file(file, text)) continue;  // binary
        std::vector<Document> docs;
        split_paragraphs(text, 0, docs);
        if (docs.empty()) continue;
        by_file.emplace_back(label, std::move(docs));
        label_ids.emplace(label, 0);
    }
    if (by_file.empty())
        throw FileError(path, "empty text corpus: no paragraph of text in " +
                                  std::to_string(files.size()) +
                                  " candidate file(s) (*.txt or no extension, not binary)");
    // Labels in name order, so a corpus gives the same label ids wherever it is loaded.
    for (auto& [name, id] : label_ids) {
        id = static_cast<int32_t>(corpus.label_names.size());
        corpus.label_names.push_back(name);
    }
    for (auto& [label, docs] : by_file) {
        for (auto& d : docs) {
            d.label = label_ids.at(label);
            corpus.documents.push_back(std::move(d));
        }
    }
    // Group by label (stable) so capping and probes see each label's documents together.
    std::stable_sort(corpus.documents.begin(), corpus.documents.end(),
                     [](const Document& a, const Document& b) { return a.label < b.label; });
    cap_per_label(corpus, max_per_label);
    return corpus;
}

}  // namespace moe
