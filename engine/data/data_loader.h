#pragma once
// DataLoader: turns a DataSpec into training and validation batches for the model.
//
// Packing: documents are byte-tokenized, each followed by the separator 0, and laid end to end in
// one stream; every sequence is the next T+1 tokens of the stream (documents run across sequence
// and batch boundaries). Alongside the tokens: each token's document label and whether it lies in
// the document's answer part (answer bytes and the closing separator).
//
// Splits. Synthetic: a document is validation when a hash of its text falls below
// validation_fraction, so no text is ever in both sets; the training stream draws from a
// seed-dependent generator and skips validation texts, the validation set comes from a generator
// that does not depend on the run seed (validation losses compare across runs). Text and fortunes:
// by a hash of the document index, also seed-independent; training documents are shuffled again
// every epoch from the seed.
//
// Determinism: every choice comes from core/rng.h, so batches are a pure function of (spec, seed);
// state()/restore() save and continue the training stream exactly (batch size may change).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/data_spec.h"
#include "data/document.h"
#include "data/synthetic_tasks.h"
#include "model/model.h"

namespace moe {

// A single sequence of documents covering every label, for routing snapshots.
struct ProbeBatch {
    Batch batch;                      // batch 1, seq_len tokens - 1: tokens.size() == `tokens`
    std::string text;                 // text[i] is token i as a byte (separators are '\0')
    std::vector<int32_t> labels;      // label of each token
    std::vector<uint8_t> answer_mask; // 1 inside an answer part
};

class DataLoader {
public:
    // Loads finite corpora now: FileError for a missing or empty corpus, ConfigError for an
    // invalid spec, batch < 1 or seq_len < 1.
    DataLoader(const DataSpec& spec, uint64_t seed, int64_t batch, int64_t seq_len);

    const DataSpec& spec() const { return spec_; }
    int64_t batch_size() const { return B_; }
    int64_t seq_len() const { return T_; }
    std::vector<std::string> label_names() const { return labels_; }

    // The next B sequences of T+1 tokens. labels and answer_mask, when given, are resized to
    // [B * (T+1)] too. The steady state allocates nothing beyond that first resize.
    void next_train_batch(Batch& out, std::vector<int32_t>* labels = nullptr,
                          std::vector<uint8_t>* answer_mask = nullptr);

    // The first `count` batches of the validation stream: the same on every call and for every
    // seed. A finite validation set gives at most as many batches as it fills (at least one; the
    // last wraps around); empty when validation_fraction is 0.
    const std::vector<Batch>& validation_batches(int64_t count);
    // Parallel to the last validation_batches() result.
    const std::vector<std::vector<int32_t>>& validation_labels() const { return val_labels_; }
    const std::vector<std::vector<uint8_t>>& validation_answer_masks() const { return val_masks_; }

    // Training stream position: {"version", "source", "data_seed", "index", "epoch", "offset",
    // "batches"}. restore() throws Error when the state belongs to another source or seed.
    nlohmann::json state() const;
    void restore(const nlohmann::json& state);

    // `tokens` tokens (>= 2) split evenly between the labels, each share filled with that label's
    // documents (validation documents first) and cut at the share's end. Fixed for a spec.
    ProbeBatch probe_batch(int64_t tokens);

    // Cross-entropy in nats/token of a byte-frequency model (add-one smoothed) fitted on about
    // `sample_tokens` training tokens and measured on about as many validation tokens, separators
    // included (finite corpora: every k-th document, so every label is sampled). A floor any trained model should beat. Error without validation data.
    double unigram_baseline_loss(int64_t sample_tokens);

    int64_t batches_served() const { return batches_; }
    int64_t epoch() const { return train_.epoch; }  // finite corpora: passes over the training set
    // Finite corpora: document counts per split; -1 for synthetic data.
    int64_t train_documents() const;
    int64_t validation_documents() const;

private:
    struct Stream {
        bool validation = false;
        bool shuffled = false;   // training order reshuffled per epoch (else natural order)
        uint64_t index = 0;      // synthetic: raw document index; corpora: position in the order
        int64_t epoch = 0;
        int64_t offset = 0;      // tokens of the current document already emitted
        bool loaded = false;     // synthetic: `doc` holds document `index`
        Document doc;
    };

    bool synthetic() const { return train_gen_ != nullptr; }
    bool text_in_validation(const std::string& text) const;
    const Document& current(Stream& s);
    void advance(Stream& s);
    void fill(Stream& s, int32_t* tokens, int32_t* labels, uint8_t* mask, int64_t n);
    void shuffle_for_epoch(int64_t epoch);

    DataSpec spec_;
    uint64_t seed_ = 0;
    uint64_t data_seed_ = 0;
    int64_t B_ = 0, T_ = 0;
    std::vector<std::string> labels_;

    std::unique_ptr<SyntheticTasks> train_gen_, val_gen_;
    Corpus corpus_;
    std::vector<int64_t> train_ids_, val_ids_;  // document indices per split
    std::vector<int64_t> order_;                // train_ids_ shuffled for order_epoch_
    int64_t order_epoch_ = -1;

    Stream train_;
    int64_t batches_ = 0;

    std::vector<Batch> val_batches_;
    std::vector<std::vector<int32_t>> val_labels_;
    std::vector<std::vector<uint8_t>> val_masks_;
    int64_t val_count_ = -1;
};

}  // namespace moe
