#pragma once
// HF tokenizers' pre-tokenization (tokenizer.json "pre_tokenizer"): text is cut into pieces that
// BPE then encodes one at a time. Supported, as real byte-level BPE models use them:
//   Split {pattern: {Regex | String}, behavior, invert}  - through PCRE2 (UTF-8, Unicode
//       properties such as \p{L}, \p{N}, \p{P}), every behavior HF defines
//   ByteLevel {add_prefix_space, use_regex}              - GPT-2's split regex if use_regex
//   Digits {individual_digits}
//   Sequence of the above, or null
// The byte-level mapping itself is done by the model (bpe_model.h). An unsupported type is a
// ConfigError naming the field, e.g. pre_tokenizer.pretokenizers[3].type.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace moe {

// A piece of the input: [begin, end) byte offsets into the text.
struct TextSpan {
    size_t begin = 0, end = 0;
};

class PreTokenizer {
public:
    // `where` names the JSON field in messages ("pre_tokenizer").
    static std::unique_ptr<PreTokenizer> from_json(const nlohmann::json& j,
                                                   const std::string& where);
    virtual ~PreTokenizer() = default;
    // Cuts each piece further; pieces never overlap and keep their order. A piece may have a
    // prefix to add (ByteLevel's add_prefix_space): see `prefix_space`.
    virtual void split(std::string_view text, std::vector<TextSpan>& pieces) const = 0;
    // True when a space must be put in front of every piece before encoding (ByteLevel with
    // add_prefix_space, applied as HF does: to pieces that do not already start with one).
    virtual bool prefix_space() const { return false; }
};

}  // namespace moe
