#pragma once
// One document of a data source: its text, its label (an index into the source's label names:
// task, file or language) and where its answer starts.
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct Document {
    std::string text;
    int32_t label = 0;
    // Byte offset of the first answer byte (right after '=' or '>') for synthetic tasks, so
    // answer accuracy can be measured per task; -1 when the document has no answer part.
    int32_t answer_begin = -1;
};

// A finite source loaded in memory (text files, fortunes).
struct Corpus {
    std::vector<Document> documents;
    std::vector<std::string> label_names;
};

}  // namespace moe
