#pragma once
// Plain text as a corpus: a file, or a folder searched recursively for *.txt files and files
// without an extension. Documents are paragraphs (text between blank lines). Labels: the file's
// stem for a single file or a file at the folder's top level, the top-level subfolder's name for
// files below one (so corpus/legal/a.txt and corpus/legal/x/b.txt share the label "legal").
#include <cstdint>
#include <string>

#include "data/document.h"

namespace moe {

// Files containing a NUL byte are skipped as binary; hidden files and folders are skipped.
// max_per_label > 0 keeps at most that many paragraphs per label, evenly spaced through the
// label's paragraphs (deterministic; balances labels of very different sizes).
// FileError: missing path, unreadable file, or no paragraph found at all.
Corpus load_text_corpus(const std::string& path, int64_t max_per_label = 0);

// Paragraphs of one text (blank-line separated; '\r' dropped; lines keep their '\n' between them,
// surrounding blank lines and trailing spaces of a paragraph trimmed) appended to `out`.
void split_paragraphs(const std::string& text, int32_t label, std::vector<Document>& out);

// Keeps at most `max_per_label` documents per label, evenly spaced, in their original order.
void cap_per_label(Corpus& corpus, int64_t max_per_label);

}  // namespace moe
