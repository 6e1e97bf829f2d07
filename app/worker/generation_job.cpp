#include "worker/generation_job.h"

#include <chrono>

#include "core/device.h"
#include "core/error.h"
#include "frame_codec.h"
#include "inspect/checkpoint_inspector.h"
#include "messages.h"
#include "session_codec.h"
#include "worker/inspector_cache.h"

namespace moe::worker {

using nlohmann::json;
using remote::ProtocolError;

GenerationRequest GenerationRequest::parse(const json& m, const std::filesystem::path& runs_root) {
    GenerationRequest r;
    r.checkpoint = remote::get_string(m, "checkpoint");
    r.dir = remote::resolve_inside(runs_root, r.checkpoint);
    if (!std::filesystem::is_directory(r.dir))
        throw ProtocolError("not_found",
                            "checkpoint " + r.checkpoint + " is not a folder in the runs folder");
    r.text = remote::get_string(m, "text", 1 << 16);
    if (m.contains("device")) {
        r.device = remote::get_string(m, "device", 16);
        try {
            moe::parse_device(r.device, "device");
        } catch (const std::exception& e) {
            throw ProtocolError("bad_request", e.what());
        }
    }
    GenerationSettings& s = r.settings;
    s.max_new_tokens = remote::get_int_or(m, "max_new_tokens", 1, 1 << 16, 64);
    s.sampling.temperature = remote::get_number_or(m, "temperature", 0.0, 100.0, 0.0);
    s.sampling.top_k = remote::get_int_or(m, "top_k", 0, 1 << 24, 0);
    s.sampling.top_p = remote::get_number_or(m, "top_p", 1e-6, 1.0, 1.0);
    s.sampling.seed = uint64_t(remote::get_int_or(m, "seed", 0, INT64_MAX, 0));
    s.speculative = remote::get_bool_or(m, "speculative", false);
    s.validate();  // ConfigError naming the field (speculative with sampling, ...)
    r.attention = remote::get_bool_or(m, "attention", false);
    r.live = remote::get_bool_or(m, "live", true);
    r.interval_ms = int(remote::get_int_or(m, "interval_ms", 50, 60000, 250));
    return r;
}

json inspection_json(const Inspection& inspection, bool attention) {
    constexpr size_t kLimit = 48u << 20;
    json j = remote::to_json(inspection, attention);
    if (!attention) {
        if (j.dump().size() <= kLimit) return j;
    } else {
        if (j.dump().size() <= kLimit) return j;
        j = remote::to_json(inspection, false);
        j["note"] = inspection.note + (inspection.note.empty() ? "" : " ") +
                    "Attention weights left out: too large to send for this many tokens.";
        if (j.dump().size() <= kLimit) return j;
    }
    throw moe::Error("the routing of " + std::to_string(inspection.n_tokens()) + " tokens in " +
                     std::to_string(inspection.n_layers()) + " MoE layers is " +
                     std::to_string(j.dump().size() >> 20) + " MiB as a message, over the " +
                     std::to_string(kLimit >> 20) +
                     " MiB one message may carry: use a shorter text");
}

json run_generation(const GenerationRequest& request, InspectorCache& cache, GenerationJob& job,
                    const std::function<void(json)>& progress) {
    using Clock = std::chrono::steady_clock;
    const auto t_load = Clock::now();
    InspectorCache::Lease insp = cache.acquire(request.dir.string(), request.device);
    const double load_seconds = std::chrono::duration<double>(Clock::now() - t_load).count();

    const auto t0 = Clock::now();
    auto last = t0 - std::chrono::hours(1);
    double first_token_seconds = -1.0;
    std::vector<int32_t> seq;
    int64_t prompt_tokens = -1;
    const GenerationResult r =
        insp->generate_text(request.text, request.settings, [&](const std::vector<int32_t>& s) {
            if (first_token_seconds < 0) {
                first_token_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
                prompt_tokens = int64_t(s.size()) - 1;
            }
            seq = s;
            if (request.live && !job.progress_pending.load() &&
                Clock::now() - last >= std::chrono::milliseconds(request.interval_ms)) {
                json body{{"generated", int64_t(s.size()) - prompt_tokens},
                          {"text", insp->decode(s)}};
                try {
                    body["inspection"] = inspection_json(insp->inspect(s), false);
                } catch (const moe::Error& e) {  // too long to show: the text still streams
                    body["note"] = e.what();
                }
                last = Clock::now();
                job.progress_pending = true;  // cleared when the message has left the socket
                progress(std::move(body));
            }
            return !job.cancel.load();
        });
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    json out{{"generated", int64_t(r.tokens.size())},
             {"prompt_tokens", r.prompt_tokens},
             {"tokens", r.tokens},
             {"stop_reason", r.stop_reason},
             {"load_seconds", load_seconds},
             {"loaded", insp.loaded_now()},
             {"first_token_seconds", first_token_seconds < 0 ? 0.0 : first_token_seconds},
             {"decode_tokens_per_second", r.decode_seconds > 0 && r.tokens.size() > 1
                                              ? double(r.tokens.size() - 1) / r.decode_seconds
                                              : 0.0},
             {"tokens_per_second", seconds > 0 ? double(r.tokens.size()) / seconds : 0.0},
             {"drafted", r.drafted},
             {"accepted", r.accepted}};
    if (seq.empty()) {  // nothing generated (cancelled at once): the prompt alone
        out["text"] = request.text;
        out["inspection"] = inspection_json(insp->inspect_text(request.text), request.attention);
    } else {
        out["text"] = insp->decode(seq);
        out["inspection"] = inspection_json(insp->inspect(seq), request.attention);
    }
    return out;
}

}  // namespace moe::worker
