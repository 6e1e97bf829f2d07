#include "data/data_loader.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/rng.h"
#include "data/byte_tokenizer.h"
#include "data/fortunes_corpus.h"
#include "data/text_corpus.h"

namespace moe {

namespace {

// Split hashes use a fixed salt, not the run seed: the validation set is the same for every run.
const uint64_t kSplitSalt = stream_id("moe.data.split");
const uint64_t kShuffleStream = stream_id("moe.data.shuffle");
// Synthetic validation and probe documents come from their own index ranges of the
// seed-independent generator.
constexpr uint64_t kValidationBase = 0;
constexpr uint64_t kProbeBase = uint64_t{1} << 62;
// A synthetic stream that rejects this many documents in a row has an (almost) empty split.
constexpr int64_t kMaxRejections = 1 << 20;

double split_uniform(uint64_t key, uint64_t kind) {
    return static_cast<double>(random_bits(kSplitSalt, key, kind) >> 11) * 0x1.0p-53;
}

}  // namespace

DataLoader::DataLoader(const DataSpec& spec, uint64_t seed, int64_t batch, int64_t seq_len)
    : spec_(spec), seed_(seed), B_(batch), T_(seq_len) {
    spec_.validate();
    if (batch < 1) throw ConfigError("training.batch_size", "must be > 0, got " + std::to_string(batch));
    if (seq_len < 1) throw ConfigError("training.seq_len", "must be > 0, got " + std::to_string(seq_len));
    data_seed_ = random_bits(seed + static_cast<uint64_t>(spec_.seed_offset),
                             stream_id("moe.data.seed"), 0);
    if (spec_.source == "synthetic") {
        SyntheticOptions o;
        o.weights = spec_.tasks;
        o.digits = spec_.digits;
        o.min_length = spec_.min_length;
        o.max_length = spec_.max_length;
        train_gen_ = std::make_unique<SyntheticTasks>(data_seed_, o);
        val_gen_ = std::make_unique<SyntheticTasks>(
            random_bits(kSplitSalt, stream_id("moe.data.validation"),
                        static_cast<uint64_t>(spec_.seed_offset)),
            o);
        labels_ = train_gen_->label_names();
    } else {
        if (spec_.source == "text") {
            corpus_ = load_text_corpus(spec_.path, spec_.max_per_label);
        } else {
            FortunesOptions o;
            if (!spec_.path.empty()) o.root = spec_.path;
            o.languages = spec_.languages;
            o.max_per_label = spec_.max_per_label;
            corpus_ = load_fortunes_corpus(o);
        }
        labels_ = corpus_.label_names;
        const auto n = static_cast<int64_t>(corpus_.documents.size());
        for (int64_t i = 0; i < n; ++i)
            (split_uniform(static_cast<uint64_t>(i), 1) < spec_.validation_fraction ? val_ids_
                                                                                   : train_ids_)
                .push_back(i);
        // A tiny corpus may hash nothing into validation: hold out its lowest-hash document.
        if (spec_.validation_fraction > 0 && val_ids_.empty() && n >= 2) {
            int64_t best = 0;
            for (int64_t i = 1; i < n; ++i)
                if (split_uniform(i, 1) < split_uniform(best, 1)) best = i;
            val_ids_.push_back(best);
            train_ids_.erase(std::find(train_ids_.begin(), train_ids_.end(), best));
        }
        // Corpora come grouped by label; a fixed (seed-independent) shuffle of the validation
        // documents makes any prefix of the validation batches cover every label.
        std::sort(val_ids_.begin(), val_ids_.end(), [this](int64_t a, int64_t b) {
            return split_uniform(static_cast<uint64_t>(a), 3) < split_uniform(static_cast<uint64_t>(b), 3);
        });
        if (train_ids_.empty())
            throw FileError(spec_.source == "text" ? spec_.path : std::string("fortunes"),
                            "corpus too small: " + std::to_string(n) +
                                " document(s), none left for training");
        order_.reserve(train_ids_.size());
    }
    train_.shuffled = true;
}

bool DataLoader::text_in_validation(const std::string& text) const {
    return split_uniform(stream_id(text), 2) < spec_.validation_fraction;
}

int64_t DataLoader::train_documents() const {
    return synthetic() ? -1 : static_cast<int64_t>(train_ids_.size());
}

int64_t DataLoader::validation_documents() const {
    return synthetic() ? -1 : static_cast<int64_t>(val_ids_.size());
}

void DataLoader::shuffle_for_epoch(int64_t epoch) {
    if (order_epoch_ == epoch) return;
    order_.assign(train_ids_.begin(), train_ids_.end());  // capacity reserved: no allocation
    // Fisher-Yates with counter-based draws keyed by (data seed, epoch, position).
    for (size_t i = order_.size(); i > 1; --i) {
        const uint64_t j = random_bits(data_seed_, kShuffleStream + static_cast<uint64_t>(epoch), i) % i;
        std::swap(order_[i - 1], order_[j]);
    }
    order_epoch_ = epoch;
}

const Document& DataLoader::current(Stream& s) {
    if (synthetic()) {
        if (s.loaded) return s.doc;
        const SyntheticTasks& gen = s.validation ? *val_gen_ : *train_gen_;
        for (int64_t tries = 0;; ++tries) {
            if (tries == kMaxRejections)
                throw Error("synthetic data: no " + std::string(s.validation ? "validation" : "training") +
                            " document in " + std::to_string(kMaxRejections) +
                            " tries; the task space is too small for validation_fraction " +
                            std::to_string(spec_.validation_fraction));
            gen.document(s.index, s.doc);
            if (text_in_validation(s.doc.text) == s.validation) break;
            ++s.index;
        }
        s.loaded = true;
        return s.doc;
    }
    if (s.validation) return corpus_.documents[val_ids_[s.index]];
    if (!s.shuffled) return corpus_.documents[train_ids_[s.index]];
    shuffle_for_epoch(s.epoch);
    return corpus_.documents[order_[s.index]];
}

void DataLoader::advance(Stream& s) {
    ++s.index;
    s.offset = 0;
    s.loaded = false;
    if (!synthetic()) {
        const size_t size = s.validation ? val_ids_.size() : train_ids_.size();
        if (s.index >= size) {
            s.index = 0;
            ++s.epoch;
        }
    }
}

void DataLoader::fill(Stream& s, int32_t* tokens, int32_t* labels, uint8_t* mask, int64_t n) {
    int64_t i = 0;
    while (i < n) {
        const Document& d = current(s);
        const auto text_len = static_cast<int64_t>(d.text.size());
        const int64_t take = std::min(n - i, text_len + 1 - s.offset);
        for (int64_t k = 0; k < take; ++k) {
            const int64_t pos = s.offset + k;
            tokens[i + k] = pos < text_len ? static_cast<unsigned char>(d.text[pos])
                                           : ByteTokenizer::kSeparator;
            if (labels) labels[i + k] = d.label;
            if (mask) mask[i + k] = d.answer_begin >= 0 && pos >= d.answer_begin;
        }
        i += take;
        s.offset += take;
        if (s.offset == text_len + 1) advance(s);
    }
}

void DataLoader::next_train_batch(Batch& out, std::vector<int32_t>* labels,
                                  std::vector<uint8_t>* answer_mask) {
    const int64_t n = B_ * (T_ + 1);
    out.batch = B_;
    out.seq_len = T_;
    out.tokens.resize(n);
    if (labels) labels->resize(n);
    if (answer_mask) answer_mask->resize(n);
    fill(train_, out.tokens.data(), labels ? labels->data() : nullptr,
         answer_mask ? answer_mask->data() : nullptr, n);
    ++batches_;
}

const std::vector<Batch>& DataLoader::validation_batches(int64_t count) {
    if (count == val_count_) return val_batches_;
    val_batches_.clear();
    val_labels_.clear();
    val_masks_.clear();
    val_count_ = count;
    if (spec_.validation_fraction <= 0 || (!synthetic() && val_ids_.empty())) return val_batches_;
    Stream s;
    s.validation = true;
    s.index = synthetic() ? kValidationBase : 0;
    const int64_t n = B_ * (T_ + 1);
    for (int64_t b = 0; b < count; ++b) {
        if (b > 0 && s.epoch > 0) break;  // a finite set: stop once it has been used up
        Batch batch{B_, T_, std::vector<int32_t>(n)};
        std::vector<int32_t> labels(n);
        std::vector<uint8_t> mask(n);
        fill(s, batch.tokens.data(), labels.data(), mask.data(), n);
        val_batches_.push_back(std::move(batch));
        val_labels_.push_back(std::move(labels));
        val_masks_.push_back(std::move(mask));
    }
    return val_batches_;
}

nlohmann::json DataLoader::state() const {
    return nlohmann::json{{"version", 1},           {"source", spec_.source},
                          {"data_seed", data_seed_}, {"index", train_.index},
                          {"epoch", train_.epoch},   {"offset", train_.offset},
                          {"batches", batches_}};
}

void DataLoader::restore(const nlohmann::json& state) {
    try {
        if (state.at("version").get<int>() != 1)
            throw Error("data loader state: unsupported version " + state.at("version").dump());
        if (state.at("source").get<std::string>() != spec_.source)
            throw Error("data loader state is for source \"" + state.at("source").get<std::string>() +
                        "\", this loader reads \"" + spec_.source + "\"");
        if (state.at("data_seed").get<uint64_t>() != data_seed_)
            throw Error("data loader state was saved with another seed or seed_offset");
        Stream s;
        s.shuffled = true;
        s.index = state.at("index").get<uint64_t>();
        s.epoch = state.at("epoch").get<int64_t>();
        s.offset = state.at("offset").get<int64_t>();
        if (!synthetic() && s.index >= train_ids_.size())
            throw Error("data loader state: index " + std::to_string(s.index) +
                        " is past the training set (" + std::to_string(train_ids_.size()) +
                        " documents); was the corpus changed?");
        if (s.offset < 0 || (!synthetic() && s.offset > static_cast<int64_t>(current(s).text.size())))
            throw Error("data loader state: offset " + std::to_string(s.offset) +
                        " is outside the current document; was the corpus changed?");
        s.loaded = false;
        batches_ = state.at("batches").get<int64_t>();
        train_ = std::move(s);
    } catch (const nlohmann::json::exception& e) {
        throw Error(std::string("data loader state: malformed: ") + e.what());
    }
}

ProbeBatch DataLoader::probe_batch(int64_t tokens) {
    if (tokens < 2) throw ConfigError("probe_tokens", "must be >= 2, got " + std::to_string(tokens));
    const auto L = static_cast<int64_t>(labels_.size());
    // Share per label; the last label also takes the remainder.
    std::vector<int64_t> share(L, tokens / L);
    share[L - 1] += tokens % L;
    std::vector<std::vector<int32_t>> tok(L), lab(L);
    std::vector<std::vector<uint8_t>> msk(L);
    int64_t open = L;  // labels whose share is not full yet
    const auto add = [&](const Document& d) {
        const int32_t l = d.label;
        const auto full = static_cast<size_t>(share[l]);
        if (tok[l].size() >= full) return;
        const auto len = static_cast<int64_t>(d.text.size());
        for (int64_t pos = 0; pos <= len && tok[l].size() < full; ++pos) {
            tok[l].push_back(pos < len ? static_cast<unsigned char>(d.text[pos]) : ByteTokenizer::kSeparator);
            lab[l].push_back(l);
            msk[l].push_back(d.answer_begin >= 0 && pos >= d.answer_begin);
        }
        if (tok[l].size() >= full) --open;
    };
    for (int64_t l = 0; l < L; ++l)
        if (share[l] == 0) --open;
    if (synthetic()) {
        Document d;
        for (uint64_t i = 0; open > 0 && i < static_cast<uint64_t>(kMaxRejections); ++i) {
            val_gen_->document(kProbeBase + i, d);
            add(d);
        }
    } else {
        for (const auto* ids : {&val_ids_, &train_ids_})
            for (int64_t id : *ids) add(corpus_.documents[id]);
    }
    ProbeBatch p;
    p.batch.batch = 1;
    p.batch.seq_len = tokens - 1;
    p.batch.tokens.reserve(tokens);
    for (int64_t l = 0; l < L; ++l) {
        p.batch.tokens.insert(p.batch.tokens.end(), tok[l].begin(), tok[l].end());
        p.labels.insert(p.labels.end(), lab[l].begin(), lab[l].end());
        p.answer_mask.insert(p.answer_mask.end(), msk[l].begin(), msk[l].end());
        // A label without enough text: pad its share with separators.
        const auto missing = static_cast<size_t>(share[l]) - tok[l].size();
        p.batch.tokens.insert(p.batch.tokens.end(), missing, ByteTokenizer::kSeparator);
        p.labels.insert(p.labels.end(), missing, static_cast<int32_t>(l));
        p.answer_mask.insert(p.answer_mask.end(), missing, 0);
    }
    p.text = ByteTokenizer::decode(p.batch.tokens);
    return p;
}

double DataLoader::unigram_baseline_loss(int64_t sample_tokens) {
    if (sample_tokens < 1)
        throw ConfigError("sample_tokens", "must be >= 1, got " + std::to_string(sample_tokens));
    if (spec_.validation_fraction <= 0 || (!synthetic() && val_ids_.empty()))
        throw Error("unigram baseline: no validation data (training.data.validation_fraction is 0)");
    // Whole documents, independent of the training position. Synthetic documents are i.i.d., so
    // the first ones do; corpora are grouped by label, so take every k-th document instead, with
    // k chosen so the sample spans the whole split (all labels) at about `sample_tokens`.
    const auto visit = [&](bool validation, auto&& on_token) {
        const auto on_document = [&](const Document& d) {
            for (unsigned char c : d.text) on_token(c);
            on_token(ByteTokenizer::kSeparator);
            return static_cast<int64_t>(d.text.size()) + 1;
        };
        if (synthetic()) {
            Stream s;
            s.validation = validation;
            for (int64_t seen = 0; seen < sample_tokens; advance(s)) seen += on_document(current(s));
            return;
        }
        const std::vector<int64_t>& ids = validation ? val_ids_ : train_ids_;
        int64_t total = 0;
        for (int64_t id : ids) total += static_cast<int64_t>(corpus_.documents[id].text.size()) + 1;
        const auto stride = static_cast<size_t>(std::max<int64_t>(1, total / sample_tokens));
        for (size_t i = 0; i < ids.size(); i += stride) on_document(corpus_.documents[ids[i]]);
    };
    std::array<double, ByteTokenizer::kVocabSize> counts{};
    double total = 0;
    visit(false, [&](int c) { counts[c] += 1, total += 1; });
    double nll = 0, n = 0;
    const double denom = total + ByteTokenizer::kVocabSize;  // add-one smoothing
    visit(true, [&](int c) { nll -= std::log((counts[c] + 1) / denom), n += 1; });
    return nll / n;
}

}  // namespace moe
