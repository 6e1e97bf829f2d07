#pragma once
// Safetensors files: an 8-byte little-endian header length N, N bytes of JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data
// buffer (offsets are relative to its start). This is the format of HuggingFace checkpoints, so
// files written here load in PyTorch/transformers and theirs load here.
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moe {

// One tensor as the header describes it. begin/end are byte offsets into the data buffer.
struct SafetensorsEntry {
    std::string name;
    std::string dtype;  // as in the file: "F32", "BF16", "I64", "F8_E4M3", ...
    Shape shape;
    uint64_t begin = 0;
    uint64_t end = 0;
    int64_t numel() const { return shape_numel(shape); }
};

// Bytes per element of a safetensors dtype string; 0 when the dtype is unknown.
size_t safetensors_dtype_size(const std::string& dtype);

// The validated content of a safetensors header: what SafetensorsReader keeps of it.
struct SafetensorsHeader {
    std::vector<SafetensorsEntry> entries;       // ascending offsets, covering the buffer exactly
    std::map<std::string, size_t> index;         // tensor name -> position in entries
    std::map<std::string, std::string> metadata; // "__metadata__"
};

// Parses and validates the JSON header text of a file (the `header.size()` bytes after the
// length field) whose data buffer, everything after the header, is `buffer_size` bytes long.
// On success every entry has a known dtype, a shape that shape_numel accepts (numel() neither
// overflows nor throws), end - begin == numel * dtype size, and the entries cover
// [0, buffer_size) in order without gap or overlap. FileErrors name `path` and the tensor (a
// buffer_size no file can have is one too). SafetensorsReader calls it on the header it read;
// fuzz/fuzz_safetensors_header.cpp calls it on bytes in memory.
SafetensorsHeader parse_safetensors_header(const std::string& header, uint64_t buffer_size,
                                           const std::string& path);

// Opens a file and validates its whole header up front (sizes, offsets, contiguity, truncation),
// so a later read can only fail on an I/O error or an unsupported conversion. The file stays open
// and memory-mapped (read-only): a tensor is converted straight from the page cache into its
// destination, with no whole-file or per-tensor staging copy, and its pages are released from
// this process after the read, so loading a checkpoint larger than RAM needs only its fp32
// destination. Where mapping fails (or with Access::Read) reads use pread. A const reader may be
// shared between threads. Errors are FileErrors that name the path and the tensor; a file that
// shrinks while open is reported before its missing bytes are touched.
class SafetensorsReader {
public:
    static constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;
    enum class Access { Map, Read };

    explicit SafetensorsReader(const std::string& path, Access access = Access::Map);
    ~SafetensorsReader();
    SafetensorsReader(SafetensorsReader&& other) noexcept;
    SafetensorsReader& operator=(SafetensorsReader&& other) noexcept;
    SafetensorsReader(const SafetensorsReader&) = delete;
    SafetensorsReader& operator=(const SafetensorsReader&) = delete;

    const std::string& path() const { return path_; }
    // In data-buffer order (ascending offsets), which for files written here is insertion order.
    const std::vector<SafetensorsEntry>& tensors() const { return entries_; }
    const SafetensorsEntry* find(const std::string& name) const;
    bool contains(const std::string& name) const { return find(name) != nullptr; }
    const SafetensorsEntry& entry(const std::string& name) const;  // FileError if absent
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    // F32, F64, BF16 and F16 convert to fp32; any other dtype is a FileError naming it.
    Tensor read_f32(const std::string& name) const;
    // Same, into caller memory of exactly `count` elements (loads parameters without a copy).
    void read_f32_into(const std::string& name, float* dst, int64_t count) const;
    // Into a tensor on any device (through host memory when it is on a device).
    void read_f32_into(const std::string& name, Tensor& dst) const;
    // The raw bytes of a one-byte dtype (U8, I8, F8_E4M3, F8_E5M2), e.g. FP8 codes to decode
    // with their block scales; other dtypes are a FileError naming the tensor.
    std::vector<uint8_t> read_bytes_u8(const std::string& name) const;
    // I32 and I64 (an I64 value outside the int32 range is a FileError naming it).
    std::vector<int32_t> read_i32(const std::string& name) const;

    uint64_t file_size() const { return file_size_; }
    uint64_t data_start() const { return data_start_; }  // 8 + header length
    bool mapped() const { return map_ != nullptr; }

private:
    void read_bytes(const SafetensorsEntry& e, void* dst) const;
    // The tensor's bytes in the mapping (after checking the file still holds them), or nullptr
    // when the file is not mapped. release() drops its pages from this process afterwards.
    const unsigned char* mapped_bytes(const SafetensorsEntry& e) const;
    void release(const SafetensorsEntry& e) const;
    void unmap();

    std::string path_;
    int fd_ = -1;
    unsigned char* map_ = nullptr;  // the whole file, read-only; nullptr: pread
    uint64_t file_size_ = 0;
    uint64_t data_start_ = 0;
    std::vector<SafetensorsEntry> entries_;
    std::map<std::string, size_t> index_;
    std::map<std::string, std::string> metadata_;
};

// Collects tensors and metadata, then writes one file atomically. fp32 data is NOT copied: the
// Tensor or pointer passed to add_f32 must stay alive and unchanged until write() returns (a
// model's parameters are saved without doubling memory). int32 data is copied, and so is a
// tensor on a device (read back into host memory the writer owns).
class SafetensorsWriter {
public:
    void add_f32(const std::string& name, const Tensor& tensor);
    void add_f32(const std::string& name, const float* data, const Shape& shape);
    // Shape defaults to 1-D [values.size()]; otherwise its element count must match.
    void add_i32(const std::string& name, std::vector<int32_t> values, Shape shape = {});
    // One-byte codes (dtype "U8", "F8_E4M3", "F8_E5M2"); copied.
    void add_u8(const std::string& name, const std::string& dtype, std::vector<uint8_t> values,
                Shape shape);
    void set_metadata(const std::string& key, const std::string& value);

    size_t size() const { return items_.size(); }
    bool contains(const std::string& name) const;

    // Writes `path + ".tmp"`, fsyncs it and renames it onto `path`, so `path` is either the old
    // file or the complete new one, never a partial file. Errors are FileErrors naming `path`.
    void write(const std::string& path) const;

private:
    struct Item {
        std::string name;
        std::string dtype;
        Shape shape;
        const void* data = nullptr;  // points into the caller's memory or into ints
        uint64_t bytes = 0;
        std::vector<int32_t> ints;
        std::vector<uint8_t> bytes_u8;
    };
    void check_new_name(const std::string& name) const;

    std::vector<Item> items_;
    std::deque<std::vector<float>> host_copies_;  // device tensors, read back (stable addresses)
    std::map<std::string, std::string> metadata_;
};

}  // namespace moe
