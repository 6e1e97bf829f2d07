#include "core/json_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/json_text.h"

namespace moe {

namespace {
nlohmann::json parse_json_text_checked(const std::string& path, const std::string& text) {
    try {
        return parse_json_text(text);
    } catch (const JsonTextError& e) {
        throw FileError(path, e.what());
    }
}
}  // namespace

nlohmann::json read_json_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path, std::string("cannot open for reading: ") + std::strerror(errno));
    // The size is checked before the text is read: a huge file is refused, not loaded.
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw FileError(path, "is a folder, not a JSON file");
    const auto size = std::filesystem::file_size(path, ec);
    if (!ec && size > kMaxJsonBytes)
        throw FileError(path, "is " + std::to_string(size) + " bytes, more than the " +
                                  std::to_string(kMaxJsonBytes) + " this program reads as JSON");
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) throw FileError(path, "read failed");
    return parse_json_text_checked(path, text.str());
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
