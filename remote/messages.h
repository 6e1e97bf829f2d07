#pragma once
// Message bodies of the remote protocol: JSON objects with a string "type". Pure C++ (no Qt),
// fuzzed together with the frame decoder. See docs/remote-protocol.md for every message.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "frame_codec.h"

namespace moe::remote {

inline constexpr int kProtocolVersion = 1;  // major version: peers must agree exactly
inline constexpr size_t kNonceBytes = 32;
inline constexpr int64_t kMaxChunk = 4 << 20;  // largest download chunk a client may ask for

// Parses a frame's JSON: an object with a non-empty string "type". ProtocolError("bad_json")
// for text that is not JSON, ("bad_message") for JSON that is not such an object.
nlohmann::json parse_message(std::string_view json);

// Typed field access with errors naming the field: ProtocolError("bad_request").
std::string get_string(const nlohmann::json& m, const char* field, size_t max_len = 4096);
int64_t get_int(const nlohmann::json& m, const char* field, int64_t lo, int64_t hi);
int64_t get_int_or(const nlohmann::json& m, const char* field, int64_t lo, int64_t hi, int64_t fallback);
// A JSON number (integer or not) in [lo, hi]; absent: fallback. NaN is not a JSON number.
double get_number_or(const nlohmann::json& m, const char* field, double lo, double hi, double fallback);
bool get_bool_or(const nlohmann::json& m, const char* field, bool fallback);
const nlohmann::json& get_object(const nlohmann::json& m, const char* field);

// A request's answer: {"type":"result","id":id, ...fields} / {"type":"error","id":id,
// "code":code,"message":message}.
nlohmann::json make_result(int64_t id, nlohmann::json fields = nlohmann::json::object());
nlohmann::json make_error(int64_t id, const std::string& code, const std::string& message);

// Resolves `relative` (as a client sent it) inside `root` (an existing directory). Rejects
// empty paths, absolute paths, NUL bytes, backslashes, any ".." component and anything whose
// real location (symlinks resolved) lies outside the root's real location:
// ProtocolError("path_outside_root" / "bad_path"). The result need not exist.
std::filesystem::path resolve_inside(const std::filesystem::path& root, std::string_view relative);

// Base64 (standard alphabet, padded) for nonces and MACs in JSON.
std::string to_base64(std::string_view bytes);
// ProtocolError("bad_request") naming `field` for invalid input.
std::string from_base64(std::string_view text, const char* field);

}  // namespace moe::remote
