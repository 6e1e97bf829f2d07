// Fuzz target: the remote protocol's frame decoder and message parser (remote/frame_codec.h,
// remote/messages.h), plus path confinement of whatever path a message carries. libFuzzer
// entry point; under gcc the same function is driven by standalone_driver.cpp.
// Invariants checked: only ProtocolError escapes; the decoder never holds more than its limit
// plus one input; a path that resolves always lies inside the root.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "frame_codec.h"
#include "messages.h"

using namespace moe::remote;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    constexpr uint32_t kLimit = 1 << 16;
    // Feed in two pieces split by the first byte, so partial headers are exercised too.
    const size_t split = size ? data[0] % (size + 1) : 0;
    FrameDecoder d(kLimit);
    try {
        d.feed(reinterpret_cast<const char*>(data), split);
        while (auto f = d.next()) parse_message(f->json);
        d.feed(reinterpret_cast<const char*>(data) + split, size - split);
        while (auto f = d.next()) {
            const nlohmann::json m = parse_message(f->json);
            if (m.contains("path") && m["path"].is_string()) {
                static const std::filesystem::path root = std::filesystem::temp_directory_path();
                try {
                    const auto p = resolve_inside(root, m["path"].get<std::string>());
                    const std::string rs = std::filesystem::canonical(root).string();
                    if (p.string().compare(0, rs.size(), rs) != 0) std::abort();  // escaped the root
                } catch (const ProtocolError&) {
                }
            }
        }
    } catch (const ProtocolError&) {
    }
    if (d.buffered() > kHeaderSize + kLimit + size) std::abort();
    return 0;
}
