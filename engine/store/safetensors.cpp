#include "store/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_text.h"

// The data buffer is little-endian; reading it straight into fp32/int32 memory needs a
// little-endian host (every platform the workbench targets).
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes little-endian");

namespace moe {

namespace {

std::string in_quotes(const std::string& name) { return "'" + name + "'"; }

std::string range_string(uint64_t begin, uint64_t end) {
    return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

// IEEE binary16 -> binary32, exact for every value (subnormals, infinities, NaN payloads).
float f16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
    } else if (mant == 0) {
        bits = sign;
    } else {
        // Subnormal half: shift the mantissa up until its leading 1 becomes the implicit bit.
        int e = -1;
        do {
            ++e;
            mant <<= 1;
        } while ((mant & 0x400u) == 0);
        bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3FFu) << 13);
    }
    return std::bit_cast<float>(bits);
}

std::string errno_text(int err) { return std::strerror(err); }

// Writes all of [data, data + n), retrying on short writes and EINTR; returns errno or 0.
int write_all(int fd, const void* data, uint64_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
        const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1u << 30));
        const ssize_t w = ::write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO;
        p += w;
        n -= static_cast<uint64_t>(w);
    }
    return 0;
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
    static const std::map<std::string, size_t> sizes = {
        {"BOOL", 1},    {"U8", 1},       {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
        {"I16", 2},     {"U16", 2},      {"F16", 2}, {"BF16", 2},    {"I32", 4},
        {"U32", 4},     {"F32", 4},      {"I64", 8}, {"U64", 8},     {"F64", 8},
    };
    auto it = sizes.find(dtype);
    return it == sizes.end() ? 0 : it->second;
}

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsReader::SafetensorsReader(const std::string& path, Access access) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw FileError(path, "cannot open safetensors file: " + errno_text(errno));
    try {
        struct stat st {};
        if (::fstat(fd_, &st) != 0) throw FileError(path, "cannot stat: " + errno_text(errno));
        if (S_ISDIR(st.st_mode)) throw FileError(path, "is a directory, not a safetensors file");
        file_size_ = static_cast<uint64_t>(st.st_size);
        if (file_size_ < 8)
            throw FileError(path, "file is " + std::to_string(file_size_) +
                                      " bytes, shorter than the 8-byte header length field "
                                      "(empty or truncated safetensors file)");
        unsigned char len_bytes[8];
        if (::pread(fd_, len_bytes, 8, 0) != 8)
            throw FileError(path, "cannot read the header length: " + errno_text(errno));
        uint64_t header_len = 0;
        for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
        if (header_len > kMaxHeaderBytes)
            throw FileError(path, "header length " + std::to_string(header_len) +
                                      " bytes exceeds the 100 MB limit (not a safetensors file?)");
        if (header_len > file_size_ - 8)
            throw FileError(path, "header length " + std::to_string(header_len) +
                                      " bytes is larger than the file: expected at least " +
                                      std::to_string(8 + header_len) + " bytes, file has " +
                                      std::to_string(file_size_) + " bytes (truncated file?)");
        std::string header(static_cast<size_t>(header_len), '\0');
        if (header_len > 0 &&
            ::pread(fd_, header.data(), header.size(), 8) != static_cast<ssize_t>(header_len))
            throw FileError(path, "cannot read the " + std::to_string(header_len) +
                                      "-byte header: " + errno_text(errno));
        data_start_ = 8 + header_len;
        SafetensorsHeader parsed = parse_safetensors_header(header, file_size_ - data_start_, path);
        entries_ = std::move(parsed.entries);
        index_ = std::move(parsed.index);
        metadata_ = std::move(parsed.metadata);
        if (access == Access::Map) {
            void* m = ::mmap(nullptr, static_cast<size_t>(file_size_), PROT_READ, MAP_PRIVATE, fd_, 0);
            if (m != MAP_FAILED) {  // else pread (a filesystem without mmap)
                map_ = static_cast<unsigned char*>(m);
                ::madvise(map_, static_cast<size_t>(file_size_), MADV_SEQUENTIAL);
            }
        }
    } catch (...) {
        ::close(fd_);
        fd_ = -1;
        throw;
    }
}

SafetensorsReader::~SafetensorsReader() {
    unmap();
    if (fd_ >= 0) ::close(fd_);
}

void SafetensorsReader::unmap() {
    if (map_) ::munmap(map_, static_cast<size_t>(file_size_));
    map_ = nullptr;
}

SafetensorsReader::SafetensorsReader(SafetensorsReader&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      map_(std::exchange(other.map_, nullptr)),
      file_size_(other.file_size_),
      data_start_(other.data_start_),
      entries_(std::move(other.entries_)),
      index_(std::move(other.index_)),
      metadata_(std::move(other.metadata_)) {}

SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&& other) noexcept {
    if (this != &other) {
        unmap();
        if (fd_ >= 0) ::close(fd_);
        path_ = std::move(other.path_);
        fd_ = std::exchange(other.fd_, -1);
        map_ = std::exchange(other.map_, nullptr);
        file_size_ = other.file_size_;
        data_start_ = other.data_start_;
        entries_ = std::move(other.entries_);
        index_ = std::move(other.index_);
        metadata_ = std::move(other.metadata_);
    }
    return *this;
}

namespace {

// The first key that appears twice at the top level of a header that parses as JSON, or "".
std::string first_duplicate_tensor(const std::string& header) {
    using nlohmann::json;
    std::set<std::string> seen;
    std::string duplicate;
    auto on_event = [&](int depth, json::parse_event_t event, json& parsed) {
        if (depth == 1 && event == json::parse_event_t::key && duplicate.empty()) {
            const std::string key = parsed.get<std::string>();
            if (!seen.insert(key).second) duplicate = key;
        }
        return true;
    };
    try {
        const json whole = json::parse(header, on_event);  // only the callback's keys matter
    } catch (const json::exception&) {
        return "";
    }
    return duplicate;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const std::string& header, uint64_t buffer_size,
                                           const std::string& path) {
    using nlohmann::json;
    const uint64_t data_start = 8 + static_cast<uint64_t>(header.size());
    // A real file's size fits in off_t; larger claims come only from callers in memory.
    if (buffer_size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) - data_start)
        throw FileError(path, "data buffer of " + std::to_string(buffer_size) +
                                  " bytes is larger than any file can be");
    const uint64_t file_size = data_start + buffer_size;
    json j;
    try {
        // Depth, size and duplicate-key limits of untrusted JSON (core/json_text.h).
        j = parse_json_text(header, SafetensorsReader::kMaxHeaderBytes);
    } catch (const JsonTextError& e) {
        // A duplicate key refused by parse_json_text (where() names it; depth and syntax errors
        // have none, so the second parse below never sees an over-deep text): name the tensor
        // when the duplicate is a top-level key.
        const std::string duplicate = e.where().empty() ? "" : first_duplicate_tensor(header);
        if (!duplicate.empty())
            throw FileError(path,
                            "tensor " + in_quotes(duplicate) + " appears twice in the header");
        throw FileError(path, std::string("header: ") + e.what());
    }
    if (!j.is_object())
        throw FileError(path, std::string("header is not a JSON object but a JSON ") +
                                  j.type_name());

    SafetensorsHeader out;
    std::vector<SafetensorsEntry>& entries = out.entries;
    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& name = it.key();
        const json& v = it.value();
        if (name == "__metadata__") {
            if (!v.is_object())
                throw FileError(path, "__metadata__ is not an object but " +
                                          std::string(v.type_name()));
            for (auto m = v.begin(); m != v.end(); ++m) {
                if (!m.value().is_string())
                    throw FileError(path, "__metadata__ value for " + in_quotes(m.key()) +
                                              " is not a string: " + m.value().dump());
                out.metadata[m.key()] = m.value().get<std::string>();
            }
            continue;
        }
        const std::string where = "tensor " + in_quotes(name);
        if (!v.is_object())
            throw FileError(path, where + ": header entry is not an object: " + v.dump());
        if (!v.contains("dtype") || !v["dtype"].is_string())
            throw FileError(path, where + ": missing or non-string \"dtype\"");
        if (!v.contains("shape") || !v["shape"].is_array())
            throw FileError(path, where + ": missing or non-array \"shape\"");
        if (!v.contains("data_offsets") || !v["data_offsets"].is_array() ||
            v["data_offsets"].size() != 2 || !v["data_offsets"][0].is_number_unsigned() ||
            !v["data_offsets"][1].is_number_unsigned())
            throw FileError(path, where + ": \"data_offsets\" must be two non-negative integers, "
                                          "got " + (v.contains("data_offsets")
                                                       ? v["data_offsets"].dump()
                                                       : std::string("nothing")));
        SafetensorsEntry e;
        e.name = name;
        e.dtype = v["dtype"].get<std::string>();
        const size_t elem = safetensors_dtype_size(e.dtype);
        if (elem == 0) throw FileError(path, where + ": unknown dtype " + in_quotes(e.dtype));
        // Element count with an overflow guard: a corrupt shape must not wrap around to a size
        // that happens to match.
        uint64_t numel = 1;
        bool overflow = false;    // the count wraps around uint64
        bool past_int64 = false;  // a running product passes int64, where numel() counts
        for (const json& d : v["shape"]) {
            if (!d.is_number_unsigned())
                throw FileError(path, where + ": shape " + v["shape"].dump() +
                                          " has a non-integer or negative dimension " + d.dump());
            const uint64_t dim = d.get<uint64_t>();
            if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                throw FileError(path, where + ": dimension " + d.dump() + " is too large");
            e.shape.push_back(static_cast<int64_t>(dim));
            if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim) overflow = true;
            numel *= dim;
            if (numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                past_int64 = true;
        }
        e.begin = v["data_offsets"][0].get<uint64_t>();
        e.end = v["data_offsets"][1].get<uint64_t>();
        if (e.end < e.begin)
            throw FileError(path, where + ": data_offsets " + range_string(e.begin, e.end) +
                                      " end before they begin");
        if (overflow || numel > std::numeric_limits<uint64_t>::max() / elem ||
            numel * elem != e.end - e.begin)
            throw FileError(path, where + ": shape " + shape_to_string(e.shape) + " of " +
                                      e.dtype + " needs " +
                                      (overflow ? std::string("more than 2^64")
                                                : std::to_string(numel * elem)) +
                                      " bytes but data_offsets " + range_string(e.begin, e.end) +
                                      " span " + std::to_string(e.end - e.begin));
        // A zero dimension can hide absurd ones ([2^31, 2^32, 0] spans 0 bytes): numel() must
        // still count the shape later, so refuse what shape_numel (core/tensor.h) refuses.
        if (past_int64)
            throw FileError(path, where + ": shape " + shape_to_string(e.shape) +
                                      " has more elements than a tensor can hold");
        try {
            static_cast<void>(shape_numel(e.shape));
        } catch (const Error& err) {
            throw FileError(path, where + ": " + err.what());
        }
        entries.push_back(std::move(e));
    }

    // The data buffer must be covered exactly: ranges start at 0, follow each other without gap
    // or overlap, and end where the file ends.
    std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t max_end = 0;
    for (const SafetensorsEntry& e : entries) max_end = std::max(max_end, e.end);
    uint64_t expected = 0;
    const SafetensorsEntry* prev = nullptr;
    for (const SafetensorsEntry& e : entries) {
        if (e.begin < expected)
            throw FileError(path, "tensor " + in_quotes(e.name) + " data_offsets " +
                                      range_string(e.begin, e.end) + " overlap tensor " +
                                      in_quotes(prev->name) + " " +
                                      range_string(prev->begin, prev->end));
        if (e.begin > expected)
            throw FileError(path, "tensor " + in_quotes(e.name) + " data_offsets " +
                                      range_string(e.begin, e.end) + " leave a gap of " +
                                      std::to_string(e.begin - expected) + " bytes after " +
                                      (prev ? "tensor " + in_quotes(prev->name) + " " +
                                                  range_string(prev->begin, prev->end)
                                            : std::string("the start of the data buffer")) +
                                      " (ranges must be contiguous)");
        if (e.end > buffer_size)
            throw FileError(path, "truncated file: tensor " + in_quotes(e.name) +
                                      " data_offsets " +
                                      range_string(e.begin, e.end) + " reach past the end; the " +
                                      "header needs at least " +
                                      std::to_string(data_start + max_end) +
                                      " bytes, the file has " + std::to_string(file_size) +
                                      " bytes");
        expected = e.end;
        prev = &e;
    }
    if (expected != buffer_size)
        throw FileError(path, "file has " + std::to_string(buffer_size - expected) +
                                  " bytes after the last tensor" +
                                  (prev ? " " + in_quotes(prev->name) : std::string()) +
                                  ": expected " + std::to_string(data_start + expected) +
                                  " bytes in total, the file has " + std::to_string(file_size) +
                                  " bytes");
    for (size_t i = 0; i < entries.size(); ++i) out.index[entries[i].name] = i;
    return out;
}

const SafetensorsEntry* SafetensorsReader::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
}

const SafetensorsEntry& SafetensorsReader::entry(const std::string& name) const {
    if (const SafetensorsEntry* e = find(name)) return *e;
    throw FileError(path_, "no tensor named " + in_quotes(name) + " in this file");
}

const unsigned char* SafetensorsReader::mapped_bytes(const SafetensorsEntry& e) const {
    if (!map_) return nullptr;
    // Touching mapped bytes past a shrunk file's end would be SIGBUS: check the size first
    // (the file changing between this check and the copy is not guarded against).
    struct stat st {};
    if (::fstat(fd_, &st) != 0)
        throw FileError(path_, "tensor " + in_quotes(e.name) + ": cannot stat: " + errno_text(errno));
    if (static_cast<uint64_t>(st.st_size) < data_start_ + e.end)
        throw FileError(path_, "tensor " + in_quotes(e.name) + ": read failed: the file is now " +
                                   std::to_string(st.st_size) + " bytes, the tensor ends at byte " +
                                   std::to_string(data_start_ + e.end) + " (file shrank while open?)");
    return map_ + data_start_ + e.begin;
}

void SafetensorsReader::release(const SafetensorsEntry& e) const {
    if (!map_ || e.end == e.begin) return;
    // Whole pages inside the tensor only: a neighbour's partial page may be in use elsewhere.
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t begin = (data_start_ + e.begin + page - 1) / page * page;
    const uint64_t end = (data_start_ + e.end) / page * page;
    if (end > begin) ::madvise(map_ + begin, static_cast<size_t>(end - begin), MADV_DONTNEED);
}

void SafetensorsReader::read_bytes(const SafetensorsEntry& e, void* dst) const {
    if (const unsigned char* src = mapped_bytes(e)) {
        std::memcpy(dst, src, static_cast<size_t>(e.end - e.begin));
        release(e);
        return;
    }
    char* p = static_cast<char*>(dst);
    uint64_t offset = data_start_ + e.begin;
    uint64_t left = e.end - e.begin;
    while (left > 0) {
        const size_t chunk = static_cast<size_t>(std::min<uint64_t>(left, 1u << 30));
        const ssize_t r = ::pread(fd_, p, chunk, static_cast<off_t>(offset));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            throw FileError(path_, "tensor " + in_quotes(e.name) + ": read failed at byte " +
                                       std::to_string(offset) + ": " +
                                       (r == 0 ? std::string("unexpected end of file (file "
                                                             "shrank while open?)")
                                               : errno_text(errno)));
        p += r;
        offset += static_cast<uint64_t>(r);
        left -= static_cast<uint64_t>(r);
    }
}

std::vector<uint8_t> SafetensorsReader::read_bytes_u8(const std::string& name) const {
    const SafetensorsEntry& e = entry(name);
    if (safetensors_dtype_size(e.dtype) != 1)
        throw FileError(path_, "tensor " + in_quotes(name) + " has dtype " + e.dtype +
                                   ", expected a one-byte dtype (U8, I8, F8_E4M3, F8_E5M2)");
    std::vector<uint8_t> out(static_cast<size_t>(e.numel()));
    read_bytes(e, out.data());
    return out;
}

void SafetensorsReader::read_f32_into(const std::string& name, float* dst, int64_t count) const {
    const SafetensorsEntry& e = entry(name);
    const int64_t n = e.numel();
    if (n != count)
        throw FileError(path_, "tensor " + in_quotes(name) + " has " + std::to_string(n) +
                                   " elements (shape " + shape_to_string(e.shape) +
                                   "), the destination holds " + std::to_string(count));
    if (e.dtype == "F32") {
        read_bytes(e, dst);
    } else if (const unsigned char* src = (e.dtype == "BF16" || e.dtype == "F16" || e.dtype == "F64")
                                              ? mapped_bytes(e)
                                              : nullptr) {
        // Converted straight from the page cache (memcpy per element: a tensor's offset in the
        // buffer need not be aligned for its element type).
        if (e.dtype == "F64") {
            for (int64_t i = 0; i < n; ++i) {
                double v;
                std::memcpy(&v, src + 8 * i, 8);
                dst[i] = static_cast<float>(v);
            }
        } else {
            const bool bf16 = e.dtype == "BF16";
            for (int64_t i = 0; i < n; ++i) {
                uint16_t v;
                std::memcpy(&v, src + 2 * i, 2);
                dst[i] = bf16 ? bf16_to_f32(v) : f16_to_f32(v);
            }
        }
        release(e);
    } else if (e.dtype == "BF16" || e.dtype == "F16") {
        std::vector<uint16_t> raw(static_cast<size_t>(n));
        read_bytes(e, raw.data());
        if (e.dtype == "BF16")
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(raw[i]);
        else
            for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(raw[i]);
    } else if (e.dtype == "F64") {
        std::vector<double> raw(static_cast<size_t>(n));
        read_bytes(e, raw.data());
        for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(raw[i]);
    } else {
        throw FileError(path_, "tensor " + in_quotes(name) + " has dtype " + e.dtype +
                                   ", which cannot be read as fp32 (supported: F32, F64, BF16, "
                                   "F16)");
    }
}

Tensor SafetensorsReader::read_f32(const std::string& name) const {
    const SafetensorsEntry& e = entry(name);
    Tensor t(e.shape);
    read_f32_into(name, t.data(), t.numel());
    return t;
}

std::vector<int32_t> SafetensorsReader::read_i32(const std::string& name) const {
    const SafetensorsEntry& e = entry(name);
    const auto n = static_cast<size_t>(e.numel());
    std::vector<int32_t> out(n);
    if (e.dtype == "I32") {
        read_bytes(e, out.data());
    } else if (e.dtype == "I64") {
        std::vector<int64_t> raw(n);
        read_bytes(e, raw.data());
        for (size_t i = 0; i < n; ++i) {
            if (raw[i] < std::numeric_limits<int32_t>::min() ||
                raw[i] > std::numeric_limits<int32_t>::max())
                throw FileError(path_, "tensor " + in_quotes(name) + ": I64 value " +
                                           std::to_string(raw[i]) + " at index " +
                                           std::to_string(i) + " does not fit in int32");
            out[i] = static_cast<int32_t>(raw[i]);
        }
    } else {
        throw FileError(path_, "tensor " + in_quotes(name) + " has dtype " + e.dtype +
                                   ", which cannot be read as int32 (supported: I32, I64)");
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Writer

void SafetensorsWriter::check_new_name(const std::string& name) const {
    if (name.empty()) throw Error("safetensors writer: empty tensor name");
    if (name == "__metadata__")
        throw Error("safetensors writer: '__metadata__' is reserved and cannot name a tensor");
    if (contains(name)) throw Error("safetensors writer: tensor '" + name + "' added twice");
}

bool SafetensorsWriter::contains(const std::string& name) const {
    return std::any_of(items_.begin(), items_.end(),
                       [&](const Item& it) { return it.name == name; });
}

void SafetensorsWriter::add_f32(const std::string& name, const Tensor& tensor) {
    if (tensor.on_host()) {
        add_f32(name, tensor.data(), tensor.shape());
        return;
    }
    check_new_name(name);
    host_copies_.push_back(tensor.to_host());
    add_f32(name, host_copies_.back().data(), tensor.shape());
}

void SafetensorsReader::read_f32_into(const std::string& name, Tensor& dst) const {
    if (dst.on_host()) {
        read_f32_into(name, dst.data(), dst.numel());
        return;
    }
    std::vector<float> host(static_cast<size_t>(dst.numel()));
    read_f32_into(name, host.data(), dst.numel());
    dst.copy_from_host(host.data());
}

void SafetensorsWriter::add_f32(const std::string& name, const float* data, const Shape& shape) {
    check_new_name(name);
    for (int64_t d : shape)
        if (d < 0)
            throw Error("safetensors writer: tensor '" + name + "' has negative shape " +
                        shape_to_string(shape));
    const int64_t n = shape_numel(shape);
    if (n > 0 && data == nullptr)
        throw Error("safetensors writer: tensor '" + name + "' has no data");
    Item it;
    it.name = name;
    it.dtype = "F32";
    it.shape = shape;
    it.data = data;
    it.bytes = static_cast<uint64_t>(n) * sizeof(float);
    items_.push_back(std::move(it));
}

void SafetensorsWriter::add_i32(const std::string& name, std::vector<int32_t> values,
                                Shape shape) {
    check_new_name(name);
    if (shape.empty()) shape = {static_cast<int64_t>(values.size())};
    if (shape_numel(shape) != static_cast<int64_t>(values.size()))
        throw Error("safetensors writer: tensor '" + name + "' has shape " +
                    shape_to_string(shape) + " but " + std::to_string(values.size()) + " values");
    Item it;
    it.name = name;
    it.dtype = "I32";
    it.shape = std::move(shape);
    it.bytes = values.size() * sizeof(int32_t);
    it.ints = std::move(values);
    items_.push_back(std::move(it));
}

void SafetensorsWriter::add_u8(const std::string& name, const std::string& dtype,
                               std::vector<uint8_t> values, Shape shape) {
    check_new_name(name);
    if (safetensors_dtype_size(dtype) != 1)
        throw Error("safetensors writer: tensor '" + name + "': dtype " + dtype + " is not one byte wide");
    if (shape_numel(shape) != static_cast<int64_t>(values.size()))
        throw Error("safetensors writer: tensor '" + name + "' has shape " +
                    shape_to_string(shape) + " but " + std::to_string(values.size()) + " values");
    Item it;
    it.name = name;
    it.dtype = dtype;
    it.shape = std::move(shape);
    it.bytes = values.size();
    it.bytes_u8 = std::move(values);
    items_.push_back(std::move(it));
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
    metadata_[key] = value;
}

void SafetensorsWriter::write(const std::string& path) const {
    // ordered_json keeps insertion order, so the header reads in the same order as the data.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata_.empty()) {
        nlohmann::ordered_json meta = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata_) meta[k] = v;
        header["__metadata__"] = std::move(meta);
    }
    uint64_t offset = 0;
    for (const Item& it : items_) {
        header[it.name] = {{"dtype", it.dtype},
                           {"shape", it.shape},
                           {"data_offsets", {offset, offset + it.bytes}}};
        offset += it.bytes;
    }
    std::string text = header.dump();
    // Pad with spaces so the data buffer starts 8-byte aligned (readers may map it directly).
    text.append((8 - text.size() % 8) % 8, ' ');
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>(text.size() >> (8 * i));

    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        throw FileError(path, "cannot create temporary file " + tmp + ": " + errno_text(errno));
    auto fail = [&](const std::string& what, int err) {
        ::close(fd);
        ::unlink(tmp.c_str());
        return FileError(path,
                         what + ": " + errno_text(err) + " (nothing written under this name)");
    };
    if (int err = write_all(fd, len_bytes, 8)) throw fail("writing the header length", err);
    if (int err = write_all(fd, text.data(), text.size())) throw fail("writing the header", err);
    for (const Item& it : items_) {
        const void* data = it.dtype == "I32"                 ? static_cast<const void*>(it.ints.data())
                           : safetensors_dtype_size(it.dtype) == 1 ? static_cast<const void*>(it.bytes_u8.data())
                                                                   : it.data;
        if (int err = write_all(fd, data, it.bytes))
            throw fail("writing tensor '" + it.name + "'", err);
    }
    if (::fsync(fd) != 0) throw fail("fsync", errno);
    if (::close(fd) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw FileError(path, "closing " + tmp + ": " + errno_text(err));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        throw FileError(path, "renaming " + tmp + " onto it: " + errno_text(err));
    }
    // Persist the rename itself; failure here is not fatal (the data is already safe on disk).
    const auto slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

}  // namespace moe
