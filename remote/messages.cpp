#include "messages.h"

#include <array>
#include <cstdint>
#include <system_error>

#include "core/json_text.h"

namespace moe::remote {

nlohmann::json parse_message(std::string_view json) {
    nlohmann::json m;
    try {
        // Depth and duplicate-key limits as for files: a peer's message is untrusted text.
        m = moe::parse_json_text(json, SIZE_MAX);
    } catch (const moe::JsonTextError& e) {
        throw ProtocolError("bad_json", std::string("frame body: ") + e.what());
    }
    if (!m.is_object()) throw ProtocolError("bad_message", "frame body is not a JSON object");
    auto it = m.find("type");
    if (it == m.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
        throw ProtocolError("bad_message", "message without a string field \"type\"");
    return m;
}

std::string get_string(const nlohmann::json& m, const char* field, size_t max_len) {
    auto it = m.find(field);
    if (it == m.end() || !it->is_string())
        throw ProtocolError("bad_request", std::string("field \"") + field + "\" must be a string");
    const std::string& s = it->get_ref<const std::string&>();
    if (s.size() > max_len)
        throw ProtocolError("bad_request", std::string("field \"") + field + "\" is longer than " +
                                               std::to_string(max_len) + " bytes");
    return s;
}

int64_t get_int(const nlohmann::json& m, const char* field, int64_t lo, int64_t hi) {
    auto it = m.find(field);
    if (it == m.end() || !it->is_number_integer())
        throw ProtocolError("bad_request", std::string("field \"") + field + "\" must be an integer");
    int64_t v = 0;
    if (it->is_number_unsigned()) {
        const uint64_t u = it->get<uint64_t>();
        if (u > uint64_t(INT64_MAX))
            throw ProtocolError("bad_request", std::string("field \"") + field + "\" is out of range");
        v = int64_t(u);
    } else {
        v = it->get<int64_t>();
    }
    if (v < lo || v > hi)
        throw ProtocolError("bad_request", std::string("field \"") + field + "\" = " + std::to_string(v) +
                                               " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
}

int64_t get_int_or(const nlohmann::json& m, const char* field, int64_t lo, int64_t hi, int64_t fallback) {
    if (!m.contains(field)) return fallback;
    return get_int(m, field, lo, hi);
}

double get_number_or(const nlohmann::json& m, const char* field, double lo, double hi, double fallback) {
    auto it = m.find(field);
    if (it == m.end()) return fallback;
    if (!it->is_number()) throw ProtocolError("bad_request", std::string("field \"") + field + "\" must be a number");
    const double v = it->get<double>();
    if (!(v >= lo && v <= hi))
        throw ProtocolError("bad_request", std::string("field \"") + field + "\" = " + std::to_string(v) +
                                               " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
}

bool get_bool_or(const nlohmann::json& m, const char* field, bool fallback) {
    auto it = m.find(field);
    if (it == m.end()) return fallback;
    if (!it->is_boolean()) throw ProtocolError("bad_request", std::string("field \"") + field + "\" must be true or false");
    return it->get<bool>();
}

const nlohmann::json& get_object(const nlohmann::json& m, const char* field) {
    auto it = m.find(field);
    if (it == m.end() || !it->is_object())
        throw ProtocolError("bad_request", std::string("field \"") + field + "\" must be an object");
    return *it;
}

nlohmann::json make_result(int64_t id, nlohmann::json fields) {
    if (!fields.is_object()) fields = nlohmann::json::object();
    fields["type"] = "result";
    fields["id"] = id;
    return fields;
}

nlohmann::json make_error(int64_t id, const std::string& code, const std::string& message) {
    return {{"type", "error"}, {"id", id}, {"code", code}, {"message", message}};
}

std::filesystem::path resolve_inside(const std::filesystem::path& root, std::string_view relative) {
    namespace fs = std::filesystem;
    const std::string shown(relative.substr(0, 200));
    if (relative.empty()) throw ProtocolError("bad_path", "empty path");
    if (relative.size() > 1024) throw ProtocolError("bad_path", "path longer than 1024 bytes");
    if (relative.find('\0') != std::string_view::npos) throw ProtocolError("bad_path", "path contains a NUL byte");
    if (relative.find('\\') != std::string_view::npos)
        throw ProtocolError("bad_path", "path \"" + shown + "\" contains a backslash");
    if (relative.front() == '/' || relative.front() == '~')
        throw ProtocolError("path_outside_root", "path \"" + shown + "\" is absolute; paths are relative to the runs folder");
    const fs::path rel{std::string(relative)};
    for (const fs::path& part : rel)
        if (part == "..")
            throw ProtocolError("path_outside_root", "path \"" + shown + "\" contains \"..\"");
    std::error_code ec;
    const fs::path real_root = fs::canonical(root, ec);
    if (ec) throw ProtocolError("internal", "runs folder " + root.string() + " is not readable: " + ec.message());
    // weakly_canonical resolves every symlink of the existing prefix: a link pointing out of
    // the root is caught here.
    const fs::path real = fs::weakly_canonical(real_root / rel, ec);
    if (ec) throw ProtocolError("bad_path", "path \"" + shown + "\" cannot be resolved: " + ec.message());
    auto r = real_root.begin();
    auto p = real.begin();
    for (; r != real_root.end(); ++r, ++p)
        if (p == real.end() || *p != *r)
            throw ProtocolError("path_outside_root", "path \"" + shown + "\" leads outside the runs folder");
    if (p == real.end()) throw ProtocolError("bad_path", "path \"" + shown + "\" is the runs folder itself");
    return real;
}

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

std::string to_base64(std::string_view in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const uint32_t v = (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8) | uint8_t(in[i + 2]);
        out += kB64[(v >> 18) & 63];
        out += kB64[(v >> 12) & 63];
        out += kB64[(v >> 6) & 63];
        out += kB64[v & 63];
    }
    if (i + 1 == in.size()) {
        const uint32_t v = uint32_t(uint8_t(in[i])) << 16;
        out += kB64[(v >> 18) & 63];
        out += kB64[(v >> 12) & 63];
        out += "==";
    } else if (i + 2 == in.size()) {
        const uint32_t v = (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8);
        out += kB64[(v >> 18) & 63];
        out += kB64[(v >> 12) & 63];
        out += kB64[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

std::string from_base64(std::string_view text, const char* field) {
    auto bad = [&] { return ProtocolError("bad_request", std::string("field \"") + field + "\" is not valid base64"); };
    if (text.size() % 4 != 0) throw bad();
    std::array<int, 256> dec;
    dec.fill(-1);
    for (int i = 0; i < 64; ++i) dec[uint8_t(kB64[i])] = i;
    std::string out;
    out.reserve(text.size() / 4 * 3);
    for (size_t i = 0; i < text.size(); i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = text[i + k];
            if (c == '=' && i + 4 == text.size() && k >= 2) {
                v[k] = 0;
                ++pad;
            } else {
                if (pad) throw bad();
                v[k] = dec[uint8_t(c)];
                if (v[k] < 0) throw bad();
            }
        }
        const uint32_t x = (uint32_t(v[0]) << 18) | (uint32_t(v[1]) << 12) | (uint32_t(v[2]) << 6) | uint32_t(v[3]);
        out += char((x >> 16) & 0xff);
        if (pad < 2) out += char((x >> 8) & 0xff);
        if (pad < 1) out += char(x & 0xff);
    }
    return out;
}

}  // namespace moe::remote
