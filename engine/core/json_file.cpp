#include "core/json_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace moe {

nlohmann::json read_json_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path, std::string("cannot open for reading: ") + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw FileError(path, "read failed");
    try {
        return nlohmann::json::parse(text.str());
    } catch (const nlohmann::json::parse_error& e) {
        // e.what() carries "at line L, column C"; the byte offset helps with one-line files.
        throw FileError(path, "invalid JSON at byte " + std::to_string(e.byte) + ": " + e.what());
    }
}

void write_json_file(const std::string& path, const nlohmann::json& value) {
    namespace fs = std::filesystem;
    const fs::path target(path);
    std::error_code ec;
    if (target.has_parent_path()) {
        fs::create_directories(target.parent_path(), ec);
        if (ec) throw FileError(path, "cannot create folder: " + ec.message());
    }
    const std::string tmp = path + ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        if (!out) throw FileError(tmp, std::string("cannot open for writing: ") + std::strerror(errno));
        out << value.dump(2) << '\n';
        out.flush();
        if (!out) {
            out.close();
            fs::remove(tmp, ec);
            throw FileError(tmp, "write failed");
        }
    }
    fs::rename(tmp, target, ec);
    if (ec) {
        std::error_code ignored;
        fs::remove(tmp, ignored);
        throw FileError(path, "cannot replace file: " + ec.message());
    }
}

}  // namespace moe
