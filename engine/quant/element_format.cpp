#include "quant/element_format.h"

#include <limits>

#include "core/error.h"
#include "quant/number_formats.h"

namespace moe {

namespace {

struct FormatInfo {
    ElementFormat format;
    const char* name;
};

constexpr FormatInfo kFormats[] = {{ElementFormat::FP32, "fp32"},
                                   {ElementFormat::BF16, "bf16"},
                                   {ElementFormat::FP16, "fp16"},
                                   {ElementFormat::E4M3, "e4m3"},
                                   {ElementFormat::E5M2, "e5m2"}};

}  // namespace

const char* format_name(ElementFormat format) {
    for (const FormatInfo& f : kFormats)
        if (f.format == format) return f.name;
    return "unknown";
}

ElementFormat parse_format(const std::string& name, const std::string& field) {
    for (const FormatInfo& f : kFormats)
        if (name == f.name) return f.format;
    throw ConfigError(field, "must be one of fp32, bf16, fp16, e4m3, e5m2, got '" + name + "'");
}

float format_max(ElementFormat format) {
    switch (format) {
        case ElementFormat::FP32: return std::numeric_limits<float>::max();
        case ElementFormat::BF16: return bf16_decode(0x7F7F);  // 0x1.FEp127
        case ElementFormat::FP16: return 65504.0f;
        case ElementFormat::E4M3: return fp8_max(Fp8Format::E4M3);
        case ElementFormat::E5M2: return fp8_max(Fp8Format::E5M2);
    }
    return 0.0f;
}

float format_min_subnormal(ElementFormat format) {
    switch (format) {
        case ElementFormat::FP32: return std::numeric_limits<float>::denorm_min();
        case ElementFormat::BF16: return 0x1p-133f;
        case ElementFormat::FP16: return 0x1p-24f;
        case ElementFormat::E4M3: return 0x1p-9f;
        case ElementFormat::E5M2: return 0x1p-16f;
    }
    return 0.0f;
}

float round_to_format(float x, ElementFormat format) {
    switch (format) {
        case ElementFormat::FP32: return x;
        case ElementFormat::BF16: return round_to_bf16(x);
        case ElementFormat::FP16: return round_to_fp16(x);
        case ElementFormat::E4M3:
            return fp8_decode(fp8_encode(x, Fp8Format::E4M3), Fp8Format::E4M3);
        case ElementFormat::E5M2:
            return fp8_decode(fp8_encode(x, Fp8Format::E5M2), Fp8Format::E5M2);
    }
    return x;
}

}  // namespace moe
