#pragma once
// Small RAII wrappers over HDF5 C identifiers, and the conversion of HDF5's error stack into
// moe::FileError. Included only by engine .cpp files (HDF5 is a PRIVATE dependency of moe_engine).
//
// The Debian HDF5 is the serial build: it is not thread-safe, and the GUI may read a run file
// on its thread while the engine writes it on another (LocalSession). Every HDF5 call made by the
// engine therefore runs under hdf5_mutex(); the handles take it when they close.
#include <hdf5.h>

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace moe::h5 {

inline std::recursive_mutex& hdf5_mutex() {
    static std::recursive_mutex m;
    return m;
}

using Lock = std::lock_guard<std::recursive_mutex>;

// HDF5 prints its error stack to stderr by default; errors are reported as exceptions instead.
// The automatic printing is per-process in the serial build, so turning it off once is enough.
inline void silence_errors() {
    static const bool done = [] {
        Lock lock(hdf5_mutex());
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
        return true;
    }();
    (void)done;
}

// The current error stack as one line, outermost call first. Must be called right after the
// failing call: the next HDF5 API call clears the stack.
inline std::string error_stack_text() {
    std::vector<std::string> lines;
    auto walk = [](unsigned, const H5E_error2_t* err, void* data) -> herr_t {
        auto* out = static_cast<std::vector<std::string>*>(data);
        std::string line = err->desc ? err->desc : "";
        // HDF5 puts ctime() text, with its newline, into write errors.
        for (char& ch : line)
            if (ch == '\n') ch = ' ';
        char minor[256] = {0};
        if (H5Eget_msg(err->min_num, nullptr, minor, sizeof(minor)) > 0 && line.find(minor) == std::string::npos)
            line += line.empty() ? std::string(minor) : " (" + std::string(minor) + ")";
        if (!line.empty() && (out->empty() || out->back() != line)) out->push_back(line);
        return 0;
    };
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk, &lines);
    H5Eclear2(H5E_DEFAULT);
    // The stack is 5-15 entries deep; a user needs the outermost (what failed) and the innermost
    // or the one with errno text ("errno = 28, error message = 'No space left on device'").
    std::string text;
    if (!lines.empty()) {
        text = lines.front();
        std::string cause = lines.back();
        for (const auto& l : lines)
            if (l.find("errno") != std::string::npos) {
                cause = l;
                break;
            }
        if (lines.size() > 1) text += "; ...; " + cause;
    }
    return text.empty() ? std::string("HDF5 call failed") : text;
}

// Throws FileError(path, "<what>: <HDF5 error stack>") when an HDF5 call returned < 0.
[[noreturn]] inline void fail(const std::string& path, const std::string& what) {
    throw FileError(path, what + ": " + error_stack_text());
}

template <typename T>
T check(T status, const std::string& path, const std::string& what) {
    if (status < 0) fail(path, what);
    return status;
}

// Owns one hid_t and closes it with Close. Movable, not copyable.
template <herr_t (*Close)(hid_t)>
class Id {
public:
    Id() = default;
    explicit Id(hid_t id) : id_(id) {}
    ~Id() { reset(); }
    Id(Id&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)) {}
    Id& operator=(Id&& o) noexcept {
        if (this != &o) {
            reset();
            id_ = std::exchange(o.id_, H5I_INVALID_HID);
        }
        return *this;
    }
    Id(const Id&) = delete;
    Id& operator=(const Id&) = delete;

    hid_t get() const { return id_; }
    bool valid() const { return id_ >= 0; }
    // Closes now; returns HDF5's status (a file close may fail on a full disk).
    herr_t reset() noexcept {
        herr_t status = 0;
        if (id_ >= 0) {
            Lock lock(hdf5_mutex());
            status = Close(id_);
        }
        id_ = H5I_INVALID_HID;
        return status;
    }

private:
    hid_t id_ = H5I_INVALID_HID;
};

using File = Id<H5Fclose>;
using Group = Id<H5Gclose>;
using Dataset = Id<H5Dclose>;
using Dataspace = Id<H5Sclose>;
using Datatype = Id<H5Tclose>;
using Attribute = Id<H5Aclose>;
using PropList = Id<H5Pclose>;

// Wraps a freshly created/opened identifier, throwing FileError when the call failed.
template <typename Handle>
Handle make(hid_t id, const std::string& path, const std::string& what) {
    if (id < 0) fail(path, what);
    return Handle(id);
}

// Variable-length UTF-8 string type (what h5py writes and reads as Python str).
inline Datatype vlen_utf8_type(const std::string& path) {
    Datatype t = make<Datatype>(H5Tcopy(H5T_C_S1), path, "string type");
    check(H5Tset_size(t.get(), H5T_VARIABLE), path, "string type");
    check(H5Tset_cset(t.get(), H5T_CSET_UTF8), path, "string type");
    return t;
}

}  // namespace moe::h5
