#pragma once
// Debian's fortune files as a multilingual corpus labelled by language. Layout (Debian 12):
// English files at the top of /usr/share/games/fortunes (fortunes-min, fortunes), Brazilian
// Portuguese "brasil" (fortunes-br) and Chinese "chinese", "song100", "tang300" (fortunes-zh) also
// at the top, other languages in a folder named by their code (fortunes-de -> de/, fortunes-ru ->
// ru/, ...). Entries are separated by lines holding only "%". The .dat indexes, the .u8 aliases,
// symlinks (cz/ and sk/ point into cs/, Italian links at the top) and off/ (offensive sets) are
// skipped, so every entry is read once.
#include <cstdint>
#include <string>
#include <vector>

#include "data/document.h"

namespace moe {

struct FortunesOptions {
    std::string root = "/usr/share/games/fortunes";
    std::vector<std::string> languages;  // codes to load; empty = every language found
    int64_t max_per_label = 0;           // > 0: at most this many entries per language
};

// Language codes present under `root`, sorted.
std::vector<std::string> fortune_languages(const std::string& root = FortunesOptions{}.root);

// The Debian package that provides a language's fortunes ("en" -> "fortunes-min", "pt" ->
// "fortunes-br", "de" -> "fortunes-de").
std::string fortunes_package(const std::string& language);

// Labels are the loaded language codes, sorted. FileError: root missing, a requested language
// absent (the message names its package), or no entry at all.
Corpus load_fortunes_corpus(const FortunesOptions& options);

// Entries of one fortune file's text: split on "%" lines, ANSI colour escapes removed (the
// Chinese files use them), surrounding blank lines trimmed, empty entries dropped.
void split_fortunes(const std::string& text, int32_t label, std::vector<Document>& out);

}  // namespace moe
