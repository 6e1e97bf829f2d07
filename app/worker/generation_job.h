#pragma once
// The worker's "generate" request: a checkpoint in the runs folder continues a text on the
// worker's CPU or GPU (engine/generate through CheckpointInspector), streaming "progress"
// messages - the text so far and a fresh routing inspection of it - while it runs, then one
// result. A "cancel" request or the client's disconnect stops it after the current token.
//
// Progress is paced by the client: a new progress message is only made when the previous one
// has left the socket (and at most every interval_ms), so a slow link gets fewer, never a queue
// of stale ones, and generation never waits for the network.
#include <atomic>
#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "generate/generator.h"
#include "inspect/routing_inspection.h"

namespace moe::worker {

class InspectorCache;

struct GenerationRequest {
    std::string checkpoint;  // as the client sent it (relative to the runs folder)
    std::filesystem::path dir;
    std::string text;
    std::string device = "cpu";
    GenerationSettings settings;
    bool attention = false;  // attention weights in the final inspection
    bool live = true;        // progress messages with inspections
    int interval_ms = 250;   // least time between progress messages

    // Checks every field before any work: ProtocolError("bad_request"/"path_outside_root"/
    // "not_found") or ConfigError naming the field.
    static GenerationRequest parse(const nlohmann::json& m, const std::filesystem::path& runs_root);
};

// What the pool thread and the connection's thread share.
struct GenerationJob {
    std::atomic<bool> cancel{false};
    std::atomic<bool> progress_pending{false};  // a progress message not yet written out
};

// An inspection as a message field, within what a client accepts in one frame (64 MiB, less
// room for the rest): attention weights are left out (with a note) when they do not fit, and
// a routing that alone does not fit is an Error naming its size.
nlohmann::json inspection_json(const Inspection& inspection, bool attention);

// Runs the generation on the calling (pool) thread. progress(body) gets each progress
// message's fields ("generated", "text", "tokens", "inspection"); the result's fields are the
// request's answer. Engine errors propagate.
nlohmann::json run_generation(const GenerationRequest& request, InspectorCache& cache,
                              GenerationJob& job,
                              const std::function<void(nlohmann::json)>& progress);

}  // namespace moe::worker
