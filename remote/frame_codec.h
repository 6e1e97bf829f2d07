#pragma once
// Frames of the remote protocol (docs/remote-protocol.md). Pure C++ (no Qt), so the fuzz target
// builds it with clang/libFuzzer on its own.
//
//   offset 0  4 bytes  magic "MOEW"
//   offset 4  4 bytes  JSON length J   (big-endian u32)
//   offset 8  4 bytes  binary length B (big-endian u32)
//   offset 12 J bytes  UTF-8 JSON object with a string "type"
//   then      B bytes  binary attachment (file chunks), may be empty
//
// J + B must not exceed the decoder's limit; the header is checked as soon as its 12 bytes are
// in, before anything of the payload is buffered, so a peer cannot make us allocate more than
// the limit (plus the bytes of one read).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace moe::remote {

inline constexpr char kMagic[4] = {'M', 'O', 'E', 'W'};
inline constexpr size_t kHeaderSize = 12;
inline constexpr uint32_t kDefaultMaxFrame = 16u << 20;  // 16 MiB
inline constexpr uint32_t kPreAuthMaxFrame = 64u << 10;  // before the handshake: 64 KiB

// A protocol violation. `code` is one of the error codes of docs/remote-protocol.md
// ("bad_magic", "frame_too_large", "bad_json", "bad_message", ...).
class ProtocolError : public std::runtime_error {
public:
    ProtocolError(std::string code, const std::string& message)
        : std::runtime_error(message), code_(std::move(code)) {}
    const std::string& code() const { return code_; }

private:
    std::string code_;
};

struct Frame {
    std::string json;     // the JSON text (parsed by messages.h)
    std::string binary;   // attachment bytes
};

// Header + payload as one byte string. Throws ProtocolError("frame_too_large") past max_size.
std::string encode_frame(std::string_view json, std::string_view binary = {},
                         uint32_t max_size = kDefaultMaxFrame);

// Incremental decoder: feed() whatever the socket gave, then take next() until it returns
// nullopt. Any violation throws ProtocolError; the decoder is then unusable (the connection
// must be closed).
class FrameDecoder {
public:
    explicit FrameDecoder(uint32_t max_size = kDefaultMaxFrame) : max_size_(max_size) {}
    void set_max_size(uint32_t max_size) { max_size_ = max_size; }
    uint32_t max_size() const { return max_size_; }

    void feed(const char* data, size_t n);
    void feed(std::string_view s) { feed(s.data(), s.size()); }
    std::optional<Frame> next();
    // Bytes held: never more than kHeaderSize + max_size + what one feed() added before the
    // header was checked.
    size_t buffered() const { return buffer_.size() - pos_; }

private:
    void check_header();
    std::string buffer_;
    size_t pos_ = 0;
    bool header_ok_ = false;
    uint32_t json_len_ = 0, bin_len_ = 0;
    uint32_t max_size_;
    bool broken_ = false;
};

}  // namespace moe::remote
