#pragma once
// CheckpointInspector: a model loaded once from a checkpoint directory (config.json + weights)
// with its own backend (the CPU unless told), answering routing inspections of texts. Texts are
// tokenized with the checkpoint's tokenizer.json when it has one (a real DeepSeek-layout model),
// else byte by byte (the project's own models). The GUI keeps one per open
// checkpoint and calls it off the GUI thread; one call at a time per instance (the backend and
// the model's forward state are not thread-safe).
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "generate/generator.h"
#include "inspect/routing_inspection.h"
#include "model/config.h"
#include "model/model.h"
#include "text/hf_tokenizer.h"

namespace moe {

class CheckpointInspector {
public:
    // Reads dir/config.json and the weights: FileError/ConfigError naming the path otherwise.
    // threads: CPU threads for the forward pass (0 = all cores); device: "cpu" or "cuda:N"
    // (make_backend).
    explicit CheckpointInspector(const std::string& dir, int threads = 1,
                                 const std::string& device = "cpu");
    ~CheckpointInspector();
    CheckpointInspector(const CheckpointInspector&) = delete;
    CheckpointInspector& operator=(const CheckpointInspector&) = delete;

    const std::string& dir() const { return dir_; }
    const ModelConfig& config() const { return cfg_; }

    // Byte-tokenizes the text and inspects it. Texts longer than max_position_embeddings are
    // cut to that many tokens, with a note in Inspection::note. Error for an empty text or a
    // byte outside the model's vocabulary.
    Inspection inspect_text(const std::string& text);
    // The checkpoint's tokenizer: encode (no BOS/EOS added), decode, and a token as the views
    // show it (a space as ␠, a newline as \n).
    std::vector<int32_t> encode(const std::string& text) const;
    std::string decode(const std::vector<int32_t>& tokens) const;
    std::string token_display(int32_t token) const;
    bool has_tokenizer_json() const { return tokenizer_.has_value(); }
    Inspection inspect(const std::vector<int32_t>& tokens);

    // Continues a text (byte tokens) with the KV cache, as moe-generate does. on_step gets the
    // whole token sequence (prompt and generated) after every new token and may itself call
    // inspect() on it (the workbench's live routing); returning false stops. The prompt is cut
    // to leave room for at least one new token within max_position_embeddings.
    GenerationResult generate_text(const std::string& prompt, const GenerationSettings& settings,
                                   const std::function<bool(const std::vector<int32_t>&)>& on_step);

private:
    std::string dir_;
    ModelConfig cfg_;
    std::unique_ptr<Backend> backend_;
    std::unique_ptr<Model> model_;
    std::optional<HfTokenizer> tokenizer_;
};

}  // namespace moe
