#pragma once
// The engine's session types as protocol JSON (events, inspections). Qt-free.
#include <nlohmann/json.hpp>

#include "inspect/routing_inspection.h"
#include "session/session.h"
#include "store/run_layout.h"

namespace moe::remote {

SessionState state_from_string(const std::string& s);  // ProtocolError("bad_message") if unknown

nlohmann::json to_json(const StepReport& r);
StepReport step_from_json(const nlohmann::json& j);
nlohmann::json to_json(const EvalReport& r);
EvalReport eval_from_json(const nlohmann::json& j);
// An event as the worker streams it: {"kind": "step"|"eval"|"state"|"checkpoint"|"log"|"failed", ...}
nlohmann::json to_json(const SessionEvent& e);
SessionEvent event_from_json(const nlohmann::json& j);

nlohmann::json to_json(const Inspection& in, bool with_attention);
Inspection inspection_from_json(const nlohmann::json& j);

// A metrics row of a run file as the step report it came from (fields the file does not keep
// are 0): used to fill a gap in a stream from the run file.
StepReport step_from_row(const MetricsRow& row, int64_t total_steps);

}  // namespace moe::remote
