#include "frame_codec.h"

#include <cstring>

namespace moe::remote {

namespace {

void put_u32(std::string& out, uint32_t v) {
    out.push_back(char((v >> 24) & 0xff));
    out.push_back(char((v >> 16) & 0xff));
    out.push_back(char((v >> 8) & 0xff));
    out.push_back(char(v & 0xff));
}

uint32_t get_u32(const char* p) {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    return (uint32_t(u[0]) << 24) | (uint32_t(u[1]) << 16) | (uint32_t(u[2]) << 8) | uint32_t(u[3]);
}

}  // namespace

std::string encode_frame(std::string_view json, std::string_view binary, uint32_t max_size) {
    const uint64_t total = uint64_t(json.size()) + uint64_t(binary.size());
    if (total > max_size)
        throw ProtocolError("frame_too_large", "frame of " + std::to_string(total) +
                                                   " bytes exceeds the limit of " + std::to_string(max_size));
    std::string out;
    out.reserve(kHeaderSize + size_t(total));
    out.append(kMagic, 4);
    put_u32(out, uint32_t(json.size()));
    put_u32(out, uint32_t(binary.size()));
    out.append(json);
    out.append(binary);
    return out;
}

void FrameDecoder::feed(const char* data, size_t n) {
    if (broken_) throw ProtocolError("broken_stream", "the connection already sent an invalid frame");
    // Compact what was consumed before growing.
    if (pos_ > 0 && pos_ >= buffer_.size() / 2) {
        buffer_.erase(0, pos_);
        pos_ = 0;
    }
    buffer_.append(data, n);
    if (!header_ok_ && buffered() >= kHeaderSize) check_header();
}

void FrameDecoder::check_header() {
    const char* h = buffer_.data() + pos_;
    if (std::memcmp(h, kMagic, 4) != 0) {
        broken_ = true;
        throw ProtocolError("bad_magic", "not a moe-worker protocol frame (bad magic bytes)");
    }
    json_len_ = get_u32(h + 4);
    bin_len_ = get_u32(h + 8);
    const uint64_t total = uint64_t(json_len_) + uint64_t(bin_len_);
    if (total > max_size_) {
        broken_ = true;
        throw ProtocolError("frame_too_large", "frame of " + std::to_string(total) +
                                                   " bytes announced; the limit is " + std::to_string(max_size_));
    }
    if (json_len_ < 2) {
        broken_ = true;
        throw ProtocolError("bad_message", "frame without a JSON object (length " + std::to_string(json_len_) + ")");
    }
    header_ok_ = true;
}

std::optional<Frame> FrameDecoder::next() {
    if (broken_) throw ProtocolError("broken_stream", "the connection already sent an invalid frame");
    if (!header_ok_) {
        if (buffered() < kHeaderSize) return std::nullopt;
        check_header();
    }
    const size_t need = kHeaderSize + size_t(json_len_) + size_t(bin_len_);
    if (buffered() < need) return std::nullopt;
    Frame f;
    const char* p = buffer_.data() + pos_ + kHeaderSize;
    f.json.assign(p, json_len_);
    f.binary.assign(p + json_len_, bin_len_);
    pos_ += need;
    header_ok_ = false;
    if (pos_ == buffer_.size()) {
        buffer_.clear();
        pos_ = 0;
    }
    // The next header (if already in) is checked by the next call, so this frame is not lost.
    return f;
}

}  // namespace moe::remote
