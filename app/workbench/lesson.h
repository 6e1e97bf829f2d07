#pragma once
// A lesson: a small JSON file in projects/lessons/ (docs/lessons.md) that walks a class through
// one idea of the workbench step by step. Each step has text, the view to bring forward, what
// to point at there, and an optional action (train the lesson's runs, show a preset's model,
// inspect or generate text with a run's checkpoint). Loading validates everything a step
// refers to (views, runs, presets, the projects the runs make) and names the file, the step
// and the field of anything wrong.
#include <cstdint>
#include <string>
#include <vector>

#include "highlight.h"
#include "store/project.h"

namespace moe::workbench {

// A run the lesson makes once and keeps: a preset with some fields changed.
struct LessonRun {
    std::string id;      // referred to by the steps
    std::string preset;  // file name in the presets folder
    Project project;     // the preset with `set` applied, validated; named "<lesson>-<id>"
};

struct LessonAction {
    enum class Kind { None, Train, Model, Inspect, Generate };
    Kind kind = Kind::None;
    std::vector<std::string> runs;    // Train: made if missing, then shown together
    int64_t pause_at = 0;             // Train: a run trained now pauses at this step (0: never)
    std::string preset;               // Model: a preset whose model the Model view shows
    std::string text;                 // Inspect / Generate
    std::string run;                  // Inspect / Generate: whose checkpoint
    std::string checkpoint = "last";  // "last", "first" or a step number
    std::string compare;              // Inspect: a second checkpoint of the same run ("" none)
    int64_t new_tokens = 32;          // Generate
    bool speculative = false;         // Generate: MTP drafts
};

struct LessonStep {
    std::string title;
    std::string text;            // rich text (Qt's HTML subset)
    std::string view;            // "curves", "experts", "routing", "sparsity", "quantization",
                                 // "communication", "model"
    views::Highlight highlight;  // what to point at (empty: nothing)
    LessonAction action;
};

struct Lesson {
    std::string path;  // the file
    std::string id;    // the file's stem
    std::string title, summary;
    double minutes = 0;  // training time on a 2-core CPU when its runs are made
    std::vector<LessonRun> runs;
    std::vector<LessonStep> steps;

    const LessonRun* run(const std::string& id) const;
};

// The views a step may name, and the dock each is in.
const std::vector<std::string>& lesson_views();
std::string lesson_view_dock(const std::string& view);

// Reads and validates a lesson; presets are looked up in presets_dir. Throws moe::Error whose
// message starts with the file and names the step and field ("lessons/x.json: step 3
// ("Watch the load"): field "view": unknown view "curvs" (one of ...)").
Lesson load_lesson(const std::string& path, const std::string& presets_dir);

// Every *.json in dir, sorted by file name; files that do not load are reported in errors
// (one message each) and left out.
std::vector<Lesson> load_lessons(const std::string& dir, const std::string& presets_dir,
                                 std::vector<std::string>* errors);

}  // namespace moe::workbench
