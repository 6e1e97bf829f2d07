#include "core/json_text.h"

#include <cstdio>
#include <set>
#include <vector>

namespace moe {

namespace {

std::string mib(size_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / double(1 << 20));
    return buf;
}

}  // namespace

namespace {

// The deepest nesting of arrays and objects (strings skipped), stopping at the first bracket
// that goes past `limit`; *at is that bracket's byte offset (else text.size()).
int scan_depth(std::string_view text, int limit, size_t* at) {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > deepest) deepest = depth;
            if (deepest > limit) {
                if (at) *at = i;
                return deepest;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    if (at) *at = text.size();
    return deepest;
}

}  // namespace

int json_nesting_depth(std::string_view text, int limit) {
    return scan_depth(text, limit, nullptr);
}

nlohmann::json parse_json_text(std::string_view text, size_t max_bytes) {
    using json = nlohmann::json;
    if (text.size() > max_bytes)
        throw JsonTextError("is " + mib(text.size()) + ", more than the " + mib(max_bytes) +
                                " this program reads as JSON",
                            "", 0);
    // Depth first, without building anything: the refusal costs one pass over the bytes.
    size_t at = 0;
    if (scan_depth(text, kMaxJsonDepth, &at) > kMaxJsonDepth)
        throw JsonTextError("arrays and objects nested deeper than " +
                                std::to_string(kMaxJsonDepth) + " levels (at byte " +
                                std::to_string(at) + ")",
                            "", at);
    // Duplicate keys: one set of keys per open object, and the path of keys to it for messages.
    struct Open {
        bool object;
        std::set<std::string> keys;
        std::string last_key;
    };
    std::vector<Open> open;
    auto path = [&open] {
        std::string p;
        for (size_t i = 0; i + 1 < open.size(); ++i) {  // the innermost object is the one read
            const Open& o = open[i];
            if (!o.object || o.last_key.empty()) continue;
            if (!p.empty()) p += '.';
            p += o.last_key;
        }
        return p;
    };
    auto on_event = [&](int, json::parse_event_t event, json& parsed) {
        switch (event) {
            case json::parse_event_t::object_start:
                open.push_back({true, {}, {}});
                break;
            case json::parse_event_t::array_start:
                open.push_back({false, {}, {}});
                break;
            case json::parse_event_t::object_end:
            case json::parse_event_t::array_end:
                if (!open.empty()) open.pop_back();
                break;
            case json::parse_event_t::key: {
                if (open.empty()) break;
                const std::string key = parsed.get<std::string>();
                if (!open.back().keys.insert(key).second) {
                    const std::string where = path();
                    throw JsonTextError(
                        "duplicate key \"" + key + "\"" +
                            (where.empty() ? std::string(" at the top level") : " in " + where) +
                            " (JSON keeps only one of them; remove the other)",
                        where.empty() ? key : where + "." + key, 0);
                }
                open.back().last_key = key;
                break;
            }
            case json::parse_event_t::value:
                break;
        }
        return true;
    };
    try {
        return json::parse(text.begin(), text.end(), on_event);
    } catch (const json::parse_error& e) {
        // nlohmann's text is "[json.exception.parse_error.101] parse error at line L, column C:
        // reason"; keep "line L, column C: reason" and add the byte for one-line files.
        std::string detail = e.what();
        const std::string marker = "parse error at ";
        if (const size_t at = detail.find(marker); at != std::string::npos)
            detail = detail.substr(at + marker.size());
        else if (const size_t close = detail.find("] "); close != std::string::npos)
            detail = detail.substr(close + 2);
        throw JsonTextError(
            "not valid JSON at " + detail + " (byte " + std::to_string(e.byte) + ")", "", e.byte);
    } catch (const json::exception& e) {
        std::string detail = e.what();
        if (const size_t close = detail.find("] "); close != std::string::npos)
            detail = detail.substr(close + 2);
        throw JsonTextError("not valid JSON: " + detail, "", 0);
    }
}

}  // namespace moe
