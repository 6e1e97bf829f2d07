#include "generate/generator.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "core/error.h"
#include "model/kv_cache.h"

namespace moe {

void GenerationSettings::validate() const {
    if (max_new_tokens < 0)
        throw ConfigError("max_new_tokens", "must be >= 0, got " + std::to_string(max_new_tokens));
    if (max_length < 0)
        throw ConfigError("max_length",
                          "must be >= 0 (0: the model's), got " + std::to_string(max_length));
    if (prefill_chunk < 1)
        throw ConfigError("prefill_chunk", "must be >= 1, got " + std::to_string(prefill_chunk));
    sampling.validate();
    if (speculative && sampling.temperature != 0.0)
        throw ConfigError("speculative",
                          "MTP speculative decoding here is greedy: set temperature 0 "
                          "(got " +
                              std::to_string(sampling.temperature) + ")");
}

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// The run: cache, positions, output, routing.
class Run {
public:
    Run(Model& model, const std::vector<int32_t>& prompt, const GenerationSettings& s,
        const TokenCallback& cb)
        : m_(model), s_(s), cb_(cb), sampler_(s.sampling), V_(model.config().vocab_size) {
        const ModelConfig& c = model.config();
        if (prompt.empty()) throw Error("generation: the prompt has no tokens");
        const int64_t limit = s.max_length > 0 ? std::min(s.max_length, c.max_position_embeddings)
                                               : c.max_position_embeddings;
        if (int64_t(prompt.size()) >= limit)
            throw Error("generation: the prompt has " + std::to_string(prompt.size()) +
                        " tokens, no room left within max_length " + std::to_string(limit));
        // The speculative verify writes one row past the last kept token.
        capacity_ = std::min(limit, int64_t(prompt.size()) + s.max_new_tokens + 2);
        capacity_ = std::min(capacity_, c.max_position_embeddings);
        cache_ = std::make_unique<KvCache>(c, model.backend().allocator(), capacity_);
        h_last_ = Tensor(Shape{1, c.hidden_size}, model.backend().allocator());
        limit_ = limit;
        seq_ = prompt;
        r_.prompt_tokens = int64_t(prompt.size());
    }

    GenerationResult run() {
        const auto t0 = Clock::now();
        prefill();
        r_.prefill_seconds = since(t0);
        const auto t1 = Clock::now();
        if (!done_) (s_.speculative ? decode_speculative() : decode_plain());
        r_.decode_seconds = since(t1);
        if (s_.record_routing) r_.routing.resize(std::min(r_.routing.size(), seq_.size()));
        return std::move(r_);
    }

private:
    // Appends a generated token and decides whether to go on.
    void emit(int32_t t) {
        if (done_) return;
        seq_.push_back(t);
        r_.tokens.push_back(t);
        if (cb_ && !cb_(t)) return finish("stopped");
        if (std::find(s_.stop_tokens.begin(), s_.stop_tokens.end(), t) != s_.stop_tokens.end())
            return finish("stop token");
        if (int64_t(r_.tokens.size()) >= s_.max_new_tokens) return finish("max_new_tokens");
        // The next step writes the cache row of this token (and a draft after it).
        if (int64_t(seq_.size()) + (s_.speculative ? 1 : 0) > capacity_ ||
            int64_t(seq_.size()) >= limit_)
            return finish("max_length");
    }
    void finish(const char* why) {
        done_ = true;
        r_.stop_reason = why;
    }

    // Routing of rows [0, n) of the last main forward, tokens at positions start...
    void keep_routing(int64_t start, int64_t n) {
        if (!s_.record_routing) return;
        const auto& recs = m_.routing();
        for (int64_t i = 0; i < n; ++i) {
            const int64_t pos = start + i;
            if (int64_t(r_.routing.size()) <= pos) r_.routing.resize(size_t(pos + 1));
            TokenRouting tr;
            tr.position = pos;
            tr.token = seq_.size() > size_t(pos) ? seq_[size_t(pos)] : pending_[size_t(i)];
            for (const RoutingRecord& rec : recs) {
                if (rec.layer >= m_.config().num_hidden_layers) continue;  // MTP layers
                tr.layers.push_back(rec.layer);
                const auto b = rec.topk_idx.begin() + i * rec.top_k;
                tr.experts.emplace_back(b, b + rec.top_k);
                const auto w = rec.topk_weight.begin() + i * rec.top_k;
                tr.weights.emplace_back(w, w + rec.top_k);
            }
            r_.routing[size_t(pos)] = std::move(tr);
        }
    }

    std::vector<float> host_row(const Tensor& t, int64_t row) {
        const std::vector<float> all = t.to_host();
        return std::vector<float>(all.begin() + row * V_, all.begin() + (row + 1) * V_);
    }

    // The main model over the prompt in chunks; with speculative decoding the MTP module also
    // sees every prompt position whose next token is known, so its cache is complete.
    void prefill() {
        const int64_t P = int64_t(seq_.size());
        for (int64_t a = 0; a < P; a += s_.prefill_chunk) {
            const int64_t b = std::min(P, a + s_.prefill_chunk);
            pending_.assign(seq_.begin() + a, seq_.begin() + b);
            m_.forward_cached(seq_.data() + a, b - a, a, *cache_, false, s_.record_routing);
            keep_routing(a, b - a);
            if (s_.speculative) {
                const int64_t known = std::min(b, P - 1) - a;  // rows whose next token is known
                if (known > 0)
                    m_.mtp_forward_cached(m_.hidden().data(), seq_.data() + a + 1, known, a,
                                          *cache_);
                if (b == P) keep_last_hidden(b - a - 1);
            }
        }
        const std::vector<float> logits = m_.logits().to_host();
        emit(sampler_.next(logits.data(), V_));
    }

    void keep_last_hidden(int64_t row) {
        const int64_t D = m_.config().hidden_size;
        m_.backend().copy_2d(m_.hidden().data() + row * D, D, h_last_.data(), D, 1, D);
    }

    void decode_plain() {
        while (!done_) {
            const int64_t pos = int64_t(seq_.size()) - 1;  // the newest token, not yet cached
            pending_.assign(1, seq_.back());
            m_.forward_cached(&seq_.back(), 1, pos, *cache_, false, s_.record_routing);
            ++r_.main_forwards;
            keep_routing(pos, 1);
            const std::vector<float> logits = m_.logits().to_host();
            emit(sampler_.next(logits.data(), V_));
        }
    }

    // Greedy speculative decoding with the first MTP module (see generator.h).
    void decode_speculative() {
        // Draft for the token after the newest one: MTP at the position before it.
        int64_t pos = int64_t(seq_.size()) - 1;
        m_.mtp_forward_cached(h_last_.data(), &seq_[size_t(pos)], 1, pos - 1, *cache_);
        int32_t draft = Sampler::argmax(m_.mtp_logits().to_host().data(), V_);
        while (!done_) {
            pos = int64_t(seq_.size()) - 1;
            const int32_t pair[2] = {seq_[size_t(pos)], draft};
            pending_.assign(pair, pair + 2);
            m_.forward_cached(pair, 2, pos, *cache_, true, s_.record_routing);
            ++r_.main_forwards;
            ++r_.drafted;
            const std::vector<float> logits = m_.logits().to_host();
            const int32_t a0 = Sampler::argmax(logits.data(), V_);
            // The next draft is made before the tokens are handed out: the callback may run the
            // model itself (the workbench re-inspects the text), which overwrites hidden().
            if (a0 == draft) {
                ++r_.accepted;
                const int32_t a1 = Sampler::argmax(logits.data() + V_, V_);
                keep_routing(pos, 2);
                const int32_t next[2] = {draft, a1};
                m_.mtp_forward_cached(m_.hidden().data(), next, 2, pos, *cache_);
                const int32_t accepted = draft;
                draft = Sampler::argmax(host_row(m_.mtp_logits(), 1).data(), V_);
                emit(accepted);
                emit(a1);
            } else {
                keep_routing(pos, 1);
                m_.mtp_forward_cached(m_.hidden().data(), &a0, 1, pos, *cache_);
                draft = Sampler::argmax(m_.mtp_logits().to_host().data(), V_);
                emit(a0);
            }
        }
    }

    Model& m_;
    const GenerationSettings& s_;
    const TokenCallback& cb_;
    Sampler sampler_;
    const int64_t V_;
    int64_t capacity_ = 0, limit_ = 0;
    std::unique_ptr<KvCache> cache_;
    std::vector<int32_t> seq_, pending_;
    Tensor h_last_;
    GenerationResult r_;
    bool done_ = false;
};

}  // namespace

GenerationResult generate(Model& model, const std::vector<int32_t>& prompt,
                          const GenerationSettings& settings, const TokenCallback& on_token) {
    settings.validate();
    if (settings.speculative && model.config().num_nextn_predict_layers < 1)
        throw ConfigError("speculative",
                          "the model has no MTP module (num_nextn_predict_layers = 0)");
    if (settings.max_new_tokens == 0) {
        GenerationResult r;
        r.prompt_tokens = int64_t(prompt.size());
        r.stop_reason = "max_new_tokens";
        return r;
    }
    Run run(model, prompt, settings, on_token);
    return run.run();
}

}  // namespace moe
