#include "workbench/lesson.h"

#include <algorithm>
#include <filesystem>

#include <QStringList>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_fields.h"
#include "core/json_file.h"

namespace moe::workbench {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFormat = "moe-workbench-lesson";
constexpr int64_t kVersion = 1;

// Builds "file: step 2 ("title"): field "x": message".
struct Where {
    std::string file;
    std::string step;  // empty at the top level
    [[noreturn]] void fail(const std::string& field, const std::string& message) const {
        std::string m = file + ": ";
        if (!step.empty()) m += step + ": ";
        if (!field.empty()) m += "field \"" + field + "\": ";
        throw Error(m + message);
    }
    // The project's strict readers (core/json_fields.h) throw ConfigError(field, message);
    // this puts the file and step in front.
    template <class F>
    auto checked(F&& read) const {
        try {
            return read();
        } catch (const ConfigError& e) {
            const std::string what = e.what(), lead = e.field() + ": ";
            fail(e.field(), what.starts_with(lead) ? what.substr(lead.size()) : what);
        }
    }
};

std::string shown(const json& v) {
    return json_fields::describe(v);
}

void only_fields(const json& obj, std::initializer_list<const char*> allowed, const Where& w,
                 const std::string& prefix) {
    const std::vector<std::string> known(allowed.begin(), allowed.end());
    for (const auto& [key, value] : obj.items())
        if (std::find(known.begin(), known.end(), key) == known.end())
            w.checked([&] {
                json_fields::reject_unknown(
                    prefix + key, known,
                    prefix.empty() ? "the lesson" : prefix.substr(0, prefix.size() - 1));
                return 0;
            });
}

std::string get_string(const json& obj, const char* key, const Where& w, const std::string& prefix,
                       bool required, const std::string& fallback = {}) {
    if (!obj.contains(key)) {
        if (required) w.fail(prefix + key, "missing");
        return fallback;
    }
    std::string s = w.checked([&] { return json_fields::get_string(obj.at(key), prefix + key); });
    if (required && s.empty()) w.fail(prefix + key, "must not be empty");
    return s;
}

int64_t get_int(const json& obj, const char* key, const Where& w, const std::string& prefix,
                int64_t fallback, int64_t lo, int64_t hi) {
    if (!obj.contains(key)) return fallback;
    const int64_t x = w.checked([&] { return json_fields::get_int(obj.at(key), prefix + key); });
    if (x < lo || x > hi)
        w.fail(prefix + key, std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " +
                                 std::to_string(hi) + "]");
    return x;
}

// "training.precision.scaling": 5 -> project["training"]["precision"]["scaling"] = 5.
void apply_set(json& project, const json& set, const Where& w, const std::string& prefix) {
    if (!set.is_object()) w.fail(prefix, "must be an object of \"dotted.field\": value");
    for (const auto& [path, value] : set.items()) {
        json* node = &project;
        size_t start = 0;
        while (true) {
            const size_t dot = path.find('.', start);
            const std::string key =
                path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
            if (key.empty()) w.fail(prefix + "." + path, "is not a dotted field path");
            if (!node->is_object())
                w.fail(prefix + "." + path, "goes through a value that is not an object");
            if (dot == std::string::npos) {
                (*node)[key] = value;
                break;
            }
            node = &(*node)[key];
            if (node->is_null()) *node = json::object();
            start = dot + 1;
        }
    }
}

views::Highlight read_highlight(const json& h, const Where& w) {
    views::Highlight out;
    if (!h.is_object()) w.fail("highlight", "must be an object, not " + shown(h));
    only_fields(h, {"part", "curve", "steps", "layer", "expert", "token", "head", "tensor", "row"},
                w, "highlight.");
    auto text = [&](const char* key) {
        return QString::fromStdString(get_string(h, key, w, "highlight.", false));
    };
    out.part = text("part");
    out.curve = text("curve");
    static const QStringList curves = {"loss", "mtp",       "eval",      "aux",
                                       "lr",   "grad_norm", "throughput"};
    if (!out.curve.isEmpty() && !curves.contains(out.curve))
        w.fail("highlight.curve", "unknown curve \"" + out.curve.toStdString() + "\" (one of " +
                                      curves.join(", ").toStdString() + ")");
    out.tensor = text("tensor");
    out.row = text("row");
    out.layer = int(get_int(h, "layer", w, "highlight.", -1, 0, 4096));
    out.expert = int(get_int(h, "expert", w, "highlight.", -1, 0, 1 << 20));
    out.token = int(get_int(h, "token", w, "highlight.", -1, 0, 1 << 24));
    out.head = int(get_int(h, "head", w, "highlight.", -1, 0, 4096));
    if (h.contains("steps")) {
        const json& s = h.at("steps");
        if (!s.is_array() || s.size() != 2 || !s[0].is_number() || !s[1].is_number())
            w.fail("highlight.steps", "must be [first, last], not " + shown(s));
        out.step_from = s[0].get<double>();
        out.step_to = s[1].get<double>();
        if (!(out.step_from >= 0 && out.step_from <= out.step_to && out.step_to < 1e15))
            w.fail("highlight.steps", "must be 0 <= first <= last, not " + shown(s));
    }
    if (out.empty())
        w.fail("highlight",
               "points at nothing (give part, curve, steps, layer, expert, token, head, tensor or "
               "row)");
    return out;
}

LessonAction read_action(const json& a, const Lesson& lesson, const std::string& presets_dir,
                         const Where& w) {
    LessonAction out;
    if (!a.is_object()) w.fail("action", "must be an object, not " + shown(a));
    const char* kinds[] = {"train", "model", "inspect", "generate"};
    int count = 0;
    for (const char* k : kinds) count += a.contains(k) ? 1 : 0;
    if (count != 1) w.fail("action", "must have exactly one of train, model, inspect, generate");
    auto known_run = [&](const std::string& id, const std::string& field) {
        if (!lesson.run(id)) {
            std::string ids;
            for (const LessonRun& r : lesson.runs) ids += (ids.empty() ? "" : ", ") + r.id;
            w.fail(field, "no run \"" + id + "\" in the lesson's runs (" +
                              (ids.empty() ? "none" : ids) + ")");
        }
    };
    if (a.contains("train")) {
        only_fields(a, {"train", "pause_at"}, w, "action.");
        out.kind = LessonAction::Kind::Train;
        const json& t = a.at("train");
        if (!t.is_array() || t.empty())
            w.fail("action.train", "must be a non-empty list of run ids");
        for (const json& id : t) {
            if (!id.is_string())
                w.fail("action.train", "must list run ids (strings), not " + shown(id));
            known_run(id.get<std::string>(), "action.train");
            out.runs.push_back(id.get<std::string>());
        }
        out.pause_at = get_int(a, "pause_at", w, "action.", 0, 1, int64_t(1) << 40);
    } else if (a.contains("model")) {
        only_fields(a, {"model"}, w, "action.");
        out.kind = LessonAction::Kind::Model;
        out.preset = get_string(a, "model", w, "action.", true);
        const fs::path p = fs::path(presets_dir) / out.preset;
        if (!fs::is_regular_file(p))
            w.fail("action.model", "no preset \"" + out.preset + "\" in " + presets_dir);
    } else {
        const bool inspect = a.contains("inspect");
        if (inspect)
            only_fields(a, {"inspect", "run", "checkpoint", "compare"}, w, "action.");
        else
            only_fields(a, {"generate", "run", "checkpoint", "new_tokens", "speculative"}, w,
                        "action.");
        out.kind = inspect ? LessonAction::Kind::Inspect : LessonAction::Kind::Generate;
        out.text = get_string(a, inspect ? "inspect" : "generate", w, "action.", true);
        out.run = get_string(a, "run", w, "action.", true);
        known_run(out.run, "action.run");
        out.checkpoint = get_string(a, "checkpoint", w, "action.", false, "last");
        out.compare = get_string(a, "compare", w, "action.", false);
        for (const auto& [field, value] :
             {std::pair{"checkpoint", out.checkpoint}, {"compare", out.compare}}) {
            if (value.empty() || value == "last" || value == "first") continue;
            if (value.find_first_not_of("0123456789") != std::string::npos)
                w.fail(std::string("action.") + field,
                       "must be \"last\", \"first\" or a step number, not \"" + value + "\"");
        }
        out.new_tokens = get_int(a, "new_tokens", w, "action.", 32, 1, 4096);
        if (a.contains("speculative"))
            out.speculative = w.checked(
                [&] { return json_fields::get_bool(a.at("speculative"), "action.speculative"); });
    }
    return out;
}

}  // namespace

const LessonRun* Lesson::run(const std::string& run_id) const {
    for (const LessonRun& r : runs)
        if (r.id == run_id) return &r;
    return nullptr;
}

const std::vector<std::string>& lesson_views() {
    static const std::vector<std::string> v = {
        "curves", "experts", "routing", "sparsity", "quantization", "communication", "model"};
    return v;
}

std::string lesson_view_dock(const std::string& view) {
    if (view == "curves") return "curvesDock";
    if (view == "experts") return "expertLoadDock";
    if (view == "routing") return "routingDock";
    if (view == "sparsity") return "sparsityDock";
    if (view == "quantization") return "quantDock";
    if (view == "communication") return "commDock";
    if (view == "model") return "modelDock";
    return {};
}

Lesson load_lesson(const std::string& path, const std::string& presets_dir) {
    Where w{path, {}};
    json j;
    try {
        j = read_json_file(path);
    } catch (const std::exception& e) {
        throw Error(e.what());  // FileError names the file and the parse position
    }
    if (!j.is_object()) w.fail("", "a lesson is a JSON object");
    only_fields(j, {"format", "version", "title", "summary", "minutes", "runs", "steps"}, w, "");
    if (get_string(j, "format", w, "", true) != kFormat)
        w.fail("format", "must be \"" + std::string(kFormat) + "\", not " + shown(j.at("format")));
    const int64_t version = get_int(j, "version", w, "", -1, 1, 1 << 20);
    if (version != kVersion)
        w.fail("version", version < 0
                              ? "missing"
                              : std::to_string(version) + " is newer than this workbench reads (" +
                                    std::to_string(kVersion) + ")");
    Lesson l;
    l.path = path;
    l.id = fs::path(path).stem().string();
    l.title = get_string(j, "title", w, "", true);
    l.summary = get_string(j, "summary", w, "", false);
    if (j.contains("minutes")) {
        l.minutes = w.checked([&] { return json_fields::get_double(j.at("minutes"), "minutes"); });
        if (!(l.minutes >= 0)) w.fail("minutes", "must be >= 0, not " + shown(j.at("minutes")));
    }
    if (j.contains("runs")) {
        const json& runs = j.at("runs");
        if (!runs.is_array()) w.fail("runs", "must be a list");
        for (size_t i = 0; i < runs.size(); ++i) {
            const json& r = runs[i];
            const std::string prefix = "runs[" + std::to_string(i) + "].";
            if (!r.is_object()) w.fail(prefix.substr(0, prefix.size() - 1), "must be an object");
            only_fields(r, {"id", "preset", "set"}, w, prefix);
            LessonRun run;
            run.id = get_string(r, "id", w, prefix, true);
            if (run.id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_") !=
                std::string::npos)
                w.fail(prefix + "id",
                       "\"" + run.id + "\" may use a-z, 0-9, - and _ only (it names files)");
            if (l.run(run.id)) w.fail(prefix + "id", "\"" + run.id + "\" is used twice");
            run.preset = get_string(r, "preset", w, prefix, true);
            const fs::path preset = fs::path(presets_dir) / run.preset;
            if (!fs::is_regular_file(preset))
                w.fail(prefix + "preset", "no preset \"" + run.preset + "\" in " + presets_dir);
            json project = read_json_file(preset.string());
            if (r.contains("set")) apply_set(project, r.at("set"), w, prefix + "set");
            project["name"] = l.id + "-" + run.id;
            try {
                run.project = Project::from_json(project);
                run.project.validate();
            } catch (const ConfigError& e) {
                w.fail(prefix + "set", "the run's project (" + run.preset +
                                           " changed by set) is invalid: " + e.what());
            }
            l.runs.push_back(std::move(run));
        }
    }
    if (!j.contains("steps") || !j.at("steps").is_array() || j.at("steps").empty())
        w.fail("steps", "must be a non-empty list of steps");
    const json& steps = j.at("steps");
    for (size_t i = 0; i < steps.size(); ++i) {
        const json& s = steps[i];
        Where sw{path, "step " + std::to_string(i + 1)};
        if (!s.is_object()) sw.fail("", "must be an object");
        if (s.contains("title") && s.at("title").is_string())
            sw.step += " (\"" + s.at("title").get<std::string>() + "\")";
        only_fields(s, {"title", "text", "view", "highlight", "action"}, sw, "");
        LessonStep step;
        step.title = get_string(s, "title", sw, "", true);
        step.text = get_string(s, "text", sw, "", true);
        step.view = get_string(s, "view", sw, "", true);
        const auto& views = lesson_views();
        if (std::find(views.begin(), views.end(), step.view) == views.end()) {
            std::string list;
            for (const auto& v : views) list += (list.empty() ? "" : ", ") + v;
            sw.fail("view", "unknown view \"" + step.view + "\" (one of " + list + ")");
        }
        if (s.contains("highlight")) step.highlight = read_highlight(s.at("highlight"), sw);
        if (s.contains("action")) step.action = read_action(s.at("action"), l, presets_dir, sw);
        l.steps.push_back(std::move(step));
    }
    return l;
}

std::vector<Lesson> load_lessons(const std::string& dir, const std::string& presets_dir,
                                 std::vector<std::string>* errors) {
    std::vector<std::string> files;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.is_regular_file() && e.path().extension() == ".json")
            files.push_back(e.path().string());
    if (ec && errors) errors->push_back(dir + ": " + ec.message());
    std::sort(files.begin(), files.end());
    std::vector<Lesson> out;
    for (const std::string& f : files) {
        try {
            out.push_back(load_lesson(f, presets_dir));
        } catch (const std::exception& e) {
            if (errors) errors->push_back(e.what());
        }
    }
    return out;
}

}  // namespace moe::workbench
