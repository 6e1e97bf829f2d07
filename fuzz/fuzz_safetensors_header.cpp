// Fuzz target: the safetensors header check (engine/store/safetensors.h,
// parse_safetensors_header), the code SafetensorsReader runs on every file it opens.
// Input: 8 bytes little-endian = the size of the data buffer after the header (shorter inputs
// are zero-padded), the rest = the JSON header text.
// Invariants checked (what the reader promises before any read): only moe::Error (FileError)
// escapes; the entries have known dtypes, dimensions >= 0, a numel() that neither overflows
// int64 (UBSan) nor throws, end - begin == numel * dtype size, ascending offsets covering
// [0, buffer size) exactly without gap or overlap; index and entries agree, names are unique
// and "__metadata__" is never a tensor.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "core/error.h"
#include "store/safetensors.h"

namespace {

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "fuzz_safetensors_header: invariant broken: %s\n", what.c_str());
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    uint64_t buffer_size = 0;
    for (size_t i = 0; i < 8 && i < size; ++i) buffer_size |= uint64_t(data[i]) << (8 * i);
    const std::string header =
        size > 8 ? std::string(reinterpret_cast<const char*>(data) + 8, size - 8) : std::string();
    moe::SafetensorsHeader h;
    try {
        h = moe::parse_safetensors_header(header, buffer_size, "fuzz.safetensors");
    } catch (const moe::Error&) {
        return 0;  // FileError; anything else escapes and aborts (a bug)
    }

    uint64_t expected = 0;
    for (size_t i = 0; i < h.entries.size(); ++i) {
        const moe::SafetensorsEntry& e = h.entries[i];
        const size_t elem = moe::safetensors_dtype_size(e.dtype);
        if (elem == 0) fail("unknown dtype " + e.dtype + " accepted for " + e.name);
        if (e.name == "__metadata__") fail("__metadata__ read as a tensor");
        for (const int64_t d : e.shape)
            if (d < 0) fail("negative dimension in " + e.name);
        int64_t n = 0;
        try {
            n = e.numel();  // reads call it; UBSan would report an int64 overflow in it
        } catch (const std::exception& x) {
            fail("numel() fails for accepted tensor " + e.name + ": " + x.what());
        }
        if (n < 0) fail("negative numel for " + e.name);
        if (e.begin != expected) fail("gap or overlap at " + e.name);
        if (e.end < e.begin || e.end > buffer_size) fail("offsets outside the buffer: " + e.name);
        const uint64_t span = e.end - e.begin;
        if (span % elem != 0 || span / elem != static_cast<uint64_t>(n))
            fail("numel x dtype size differs from the data_offsets span: " + e.name);
        expected = e.end;
        const auto it = h.index.find(e.name);
        if (it == h.index.end() || it->second != i) fail("index disagrees with entries: " + e.name);
    }
    if (expected != buffer_size) fail("entries do not cover the data buffer");
    if (h.index.size() != h.entries.size()) fail("index has names that are not entries");
    return 0;
}
