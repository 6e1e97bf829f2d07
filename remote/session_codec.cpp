#include "session_codec.h"

#include <cmath>

#include "frame_codec.h"

namespace moe::remote {

namespace {

// JSON has no NaN/Inf: non-finite numbers travel as null and come back as NaN.
nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }
double dbl(const nlohmann::json& j, const char* k) {
    auto it = j.find(k);
    if (it == j.end() || it->is_null()) return std::nan("");
    if (!it->is_number()) throw ProtocolError("bad_message", std::string("field \"") + k + "\" must be a number");
    return it->get<double>();
}
int64_t i64(const nlohmann::json& j, const char* k) {
    auto it = j.find(k);
    if (it == j.end()) return 0;
    if (!it->is_number_integer()) throw ProtocolError("bad_message", std::string("field \"") + k + "\" must be an integer");
    return it->get<int64_t>();
}
nlohmann::json nums(const std::vector<double>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (double x : v) a.push_back(num(x));
    return a;
}
std::vector<double> dbls(const nlohmann::json& j, const char* k) {
    std::vector<double> out;
    auto it = j.find(k);
    if (it == j.end()) return out;
    if (!it->is_array()) throw ProtocolError("bad_message", std::string("field \"") + k + "\" must be an array");
    for (const auto& x : *it) out.push_back(x.is_number() ? x.get<double>() : std::nan(""));
    return out;
}

}  // namespace

SessionState state_from_string(const std::string& s) {
    for (SessionState st : {SessionState::Idle, SessionState::Running, SessionState::Paused, SessionState::Stopping,
                            SessionState::Finished, SessionState::Failed})
        if (s == to_string(st)) return st;
    throw ProtocolError("bad_message", "unknown session state \"" + s.substr(0, 40) + "\"");
}

nlohmann::json to_json(const StepReport& r) {
    return {{"step", r.step}, {"total_steps", r.total_steps}, {"tokens", r.tokens}, {"loss", num(r.loss)},
            {"mtp_loss", num(r.mtp_loss)}, {"aux_loss", num(r.aux_loss)}, {"lr", num(r.lr)},
            {"grad_norm", num(r.grad_norm)}, {"tokens_per_s", num(r.tokens_per_s)}, {"wall_s", num(r.wall_s)},
            {"eta_s", num(r.eta_s)}, {"skipped", r.skipped}, {"maxvio", nums(r.maxvio)}};
}

StepReport step_from_json(const nlohmann::json& j) {
    StepReport r;
    r.step = i64(j, "step");
    r.total_steps = i64(j, "total_steps");
    r.tokens = i64(j, "tokens");
    r.loss = dbl(j, "loss");
    r.mtp_loss = dbl(j, "mtp_loss");
    r.aux_loss = dbl(j, "aux_loss");
    r.lr = dbl(j, "lr");
    r.grad_norm = dbl(j, "grad_norm");
    r.tokens_per_s = dbl(j, "tokens_per_s");
    r.wall_s = dbl(j, "wall_s");
    r.eta_s = dbl(j, "eta_s");
    r.skipped = j.value("skipped", false);
    r.maxvio = dbls(j, "maxvio");
    return r;
}

nlohmann::json to_json(const EvalReport& r) {
    return {{"step", r.step}, {"loss", num(r.loss)}, {"labels", r.labels},
            {"label_loss", nums(r.label_loss)}, {"label_accuracy", nums(r.label_accuracy)}};
}

EvalReport eval_from_json(const nlohmann::json& j) {
    EvalReport r;
    r.step = i64(j, "step");
    r.loss = dbl(j, "loss");
    if (j.contains("labels") && j["labels"].is_array())
        for (const auto& l : j["labels"]) r.labels.push_back(l.is_string() ? l.get<std::string>() : "");
    r.label_loss = dbls(j, "label_loss");
    r.label_accuracy = dbls(j, "label_accuracy");
    return r;
}

nlohmann::json to_json(const SessionEvent& e) {
    using K = SessionEvent::Kind;
    nlohmann::json j{{"state", to_string(e.state)}};
    switch (e.kind) {
    case K::StateChanged: j["kind"] = "state"; break;
    case K::Step: j["kind"] = "step"; j["step"] = to_json(e.step); break;
    case K::Eval: j["kind"] = "eval"; j["eval"] = to_json(e.eval); break;
    case K::Checkpoint: j["kind"] = "checkpoint"; j["message"] = e.message; break;
    case K::Log: j["kind"] = "log"; j["message"] = e.message; break;
    case K::Failed: j["kind"] = "failed"; j["message"] = e.message; j["field"] = e.field; break;
    default: j["kind"] = "log"; j["message"] = e.message; break;
    }
    return j;
}

SessionEvent event_from_json(const nlohmann::json& j) {
    using K = SessionEvent::Kind;
    if (!j.is_object()) throw ProtocolError("bad_message", "event is not an object");
    SessionEvent e;
    const std::string kind = j.value("kind", "");
    e.state = state_from_string(j.value("state", "idle"));
    e.message = j.value("message", "");
    e.field = j.value("field", "");
    if (kind == "state") e.kind = K::StateChanged;
    else if (kind == "step") e.kind = K::Step, e.step = step_from_json(j.at("step"));
    else if (kind == "eval") e.kind = K::Eval, e.eval = eval_from_json(j.at("eval"));
    else if (kind == "checkpoint") e.kind = K::Checkpoint;
    else if (kind == "log") e.kind = K::Log;
    else if (kind == "failed") e.kind = K::Failed;
    else throw ProtocolError("bad_message", "unknown event kind \"" + kind.substr(0, 40) + "\"");
    return e;
}

nlohmann::json to_json(const Inspection& in, bool with_attention) {
    nlohmann::json routing = nlohmann::json::array();
    for (const RoutingRecord& r : in.routing)
        routing.push_back({{"layer", r.layer}, {"tokens", r.tokens}, {"top_k", r.top_k}, {"n_experts", r.n_experts},
                           {"topk_idx", r.topk_idx}, {"topk_weight", r.topk_weight}, {"scores", r.scores},
                           {"selection_scores", r.selection_scores}});
    nlohmann::json j{{"tokens", in.tokens}, {"token_text", in.token_text}, {"layers", in.layers}, {"E", in.E},
                     {"K", in.K}, {"heads", in.heads}, {"n_group", in.n_group}, {"topk_group", in.topk_group},
                     {"routing", routing}, {"bias", in.bias}, {"note", in.note}};
    if (with_attention) {
        j["attention"] = in.attention;
        // The masks drawn beside the attention: the window, or the sparse attention's keys.
        j["sliding_window"] = in.sliding_window;
        j["index_topk"] = in.index_topk;
        if (!in.selected_keys.empty()) j["selected_keys"] = in.selected_keys;
    }
    return j;
}

Inspection inspection_from_json(const nlohmann::json& j) {
    try {
        Inspection in;
        j.at("tokens").get_to(in.tokens);
        j.at("token_text").get_to(in.token_text);
        j.at("layers").get_to(in.layers);
        in.E = j.at("E").get<int64_t>();
        in.K = j.at("K").get<int64_t>();
        in.heads = j.at("heads").get<int64_t>();
        in.n_group = j.at("n_group").get<int64_t>();
        in.topk_group = j.at("topk_group").get<int64_t>();
        for (const auto& r : j.at("routing")) {
            RoutingRecord rec;
            rec.layer = r.at("layer").get<int64_t>();
            rec.tokens = r.at("tokens").get<int64_t>();
            rec.top_k = r.at("top_k").get<int64_t>();
            rec.n_experts = r.at("n_experts").get<int64_t>();
            r.at("topk_idx").get_to(rec.topk_idx);
            r.at("topk_weight").get_to(rec.topk_weight);
            r.at("scores").get_to(rec.scores);
            r.at("selection_scores").get_to(rec.selection_scores);
            in.routing.push_back(std::move(rec));
        }
        j.at("bias").get_to(in.bias);
        in.note = j.value("note", "");
        if (j.contains("attention")) j.at("attention").get_to(in.attention);
        in.sliding_window = j.value("sliding_window", int64_t(0));
        in.index_topk = j.value("index_topk", int64_t(0));
        if (j.contains("selected_keys")) j.at("selected_keys").get_to(in.selected_keys);
        return in;
    } catch (const nlohmann::json::exception& e) {
        throw ProtocolError("bad_message", std::string("malformed inspection: ") + e.what());
    }
}

StepReport step_from_row(const MetricsRow& row, int64_t total_steps) {
    StepReport r;
    r.step = row.step;
    r.total_steps = total_steps;
    r.tokens = row.tokens;
    r.wall_s = row.wall_s;
    r.loss = row.loss;
    r.mtp_loss = row.mtp_loss;
    r.aux_loss = row.aux_loss;
    r.lr = row.lr;
    r.grad_norm = row.grad_norm;
    r.tokens_per_s = row.tokens_per_s;
    r.skipped = row.skipped != 0;
    return r;
}

}  // namespace moe::remote
