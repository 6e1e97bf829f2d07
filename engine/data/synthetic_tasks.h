#pragma once
// A synthetic corpus of labelled tasks. Each task has its own surface form and its own rule, so a
// router that specializes experts by task shows up directly in per-task expert load. A document
// is a pure function of (seed, index): any document can be generated alone, in any order.
//
//   arithmetic  "37+485=522", "902-35=867"       answer after '='
//   copy        "copy:kqzv>kqzv"                  answer after '>'
//   reverse     "rev:abcd>dcba"
//   brackets    "brk:([]{})>ok", "brk:([)]>bad"
//   sort        "sort:dbca>abcd"
//   language    "zo mipa vel ze teli run kat zo sorba." (toy grammar, no answer part): the
//               determiner agrees with its noun, the verb with its subject across a relative
//               clause.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/document.h"

namespace moe {

struct SyntheticOptions {
    // Relative weight per task name; a task absent or at 0 is not generated. Empty = all equal.
    std::map<std::string, double> weights;
    int64_t digits = 3;      // operands have 1..digits digits
    int64_t min_length = 3;  // string lengths for copy, reverse, brackets and sort
    int64_t max_length = 8;

    static constexpr int64_t kMaxDigits = 18;    // sums stay inside int64
    static constexpr int64_t kMaxLength = 256;   // bounds the bracket checker's stack
};

class SyntheticTasks {
public:
    // Every task this generator knows, in label order.
    static const std::vector<std::string>& task_names();

    // Throws ConfigError for unknown task names, bad weights or lengths.
    SyntheticTasks(uint64_t seed, SyntheticOptions options = {});

    // Names of the generated tasks (weight > 0) in task_names() order; a document's label indexes
    // this list.
    const std::vector<std::string>& label_names() const { return labels_; }
    const SyntheticOptions& options() const { return options_; }

    Document document(uint64_t index) const;
    // Same, reusing `out`'s storage (the loader's steady state allocates nothing).
    void document(uint64_t index, Document& out) const;

    // Checks a document of task `task` (a name from task_names()) against its rule: the answer is
    // the right one for the question. For tests and for grading model output.
    static bool is_valid(const std::string& task, const std::string& text);

private:
    uint64_t seed_;
    SyntheticOptions options_;
    std::vector<std::string> labels_;
    std::vector<int> task_of_label_;     // label -> index in task_names()
    std::vector<double> cumulative_;     // normalized cumulative weights per label
};

}  // namespace moe
