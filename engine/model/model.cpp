#include "model/model.h"

#include <cmath>
#include <utility>

#include "core/error.h"
#include "core/rng.h"
#include "model/linear.h"
#include "model/size_check.h"

namespace moe {

namespace {

std::string layer_prefix(int64_t index) { return "model.layers." + std::to_string(index); }

void check_tokens(const int32_t* tokens, int64_t count, int64_t vocab, const char* what) {
    for (int64_t i = 0; i < count; ++i)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            throw Error(std::string(what) + ": token id " + std::to_string(tokens[i]) +
                        " at index " + std::to_string(i) + " is outside the vocabulary [0, " +
                        std::to_string(vocab) + ")");
}

}  // namespace

Model::Model(const ModelConfig& cfg, Backend& backend)
    : cfg_(cfg), be_(backend), params_(/*deferred=*/true) {
    cfg_.validate();
    if (cfg_.index_topk > 0 && !be_.supports_sparse_attention())
        throw ConfigError("index_topk",
                          "dynamic top-k sparse attention is not implemented on the " +
                              std::string(be_.name()) +
                              " backend yet; train or run this model on the CPU (device cpu), or "
                              "set index_topk to 0 for dense attention (got " +
                              std::to_string(cfg_.index_topk) + ")");
    // Before the first parameter: a model that cannot fit is refused naming the field to blame.
    check_model_fits(cfg_, be_.allocator(), /*with_gradients=*/true);
    const int64_t D = cfg_.hidden_size;
    embed_ = &params_.add("model.embed_tokens.weight", {cfg_.vocab_size, D});
    for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l)
        blocks_.push_back(
            std::make_unique<TransformerBlock>(params_, layer_prefix(l), l, cfg_, &precision_));
    norm_ = &params_.add("model.norm.weight", {D});
    head_ = &params_.add("lm_head.weight", {cfg_.vocab_size, D});
    for (int64_t k = 1; k <= cfg_.num_nextn_predict_layers; ++k)
        mtp_.push_back(std::make_unique<MtpModule>(params_, cfg_.num_hidden_layers + k - 1, cfg_,
                                                   &precision_));
    // Every parameter and gradient in two arenas on the backend's device.
    params_.pack(be_.allocator());
}

void Model::init_weights(uint64_t seed) {
    const double std_dev = cfg_.initializer_range;
    std::vector<float> host;  // drawn on the host, then copied to the device
    for (Parameter* p : params_.all()) {
        Tensor& v = p->value;
        if (p->name.ends_with("e_score_correction_bias")) {
            v.zero();
        } else if (v.rank() == 1) {  // every other vector is a norm weight
            v.fill(1.0f);
        } else {
            const uint64_t stream = stream_id(p->name);
            host.resize(static_cast<size_t>(v.numel()));
            for (int64_t i = 0; i < v.numel(); ++i)
                host[i] = static_cast<float>(std_dev * random_normal(seed, stream, uint64_t(i)));
            v.copy_from_host(host.data());
        }
    }
}

double Model::run_trunk(const int32_t* inputs, int64_t B, int64_t T, bool probe) {
    const int64_t n = B * T, D = cfg_.hidden_size;
    x0_.resize({n, D});
    be_.embedding_forward(inputs, n, embed_->value.data(), cfg_.vocab_size, D, x0_.data());
    double aux = 0.0;
    const float* x = x0_.data();
    for (auto& block : blocks_) {
        RoutingRecord* rec = nullptr;
        if (probe && block->is_moe()) rec = &routing_.emplace_back();
        block->attention().set_keep_probs(probe);  // the routing inspector shows the weights
        aux += block->forward(be_, x, B, T, positions_.data(), rec);
        x = block->output().data();
    }
    return aux;
}

void Model::run_head(const float* h, int64_t n) {
    const int64_t D = cfg_.hidden_size, V = cfg_.vocab_size;
    normed_.resize({n, D});
    norm_rstd_.resize({n});
    logits_.resize({n, V});
    be_.rmsnorm_forward(h, D, norm_->value.data(), n, D, static_cast<float>(cfg_.rms_norm_eps),
                        normed_.data(), D, norm_rstd_.data());
    linear_forward(be_, normed_.data(), n, D, head_->value.data(), V, logits_.data());
}

void Model::forward_logits(const int32_t* tokens, int64_t B, int64_t T, bool probe_routing) {
    if (B <= 0 || T <= 0) throw Error("forward_logits: empty batch");
    const int64_t n = B * T;
    check_tokens(tokens, n, cfg_.vocab_size, "forward_logits");
    DeviceScope scope(be_.allocator());
    host_inputs_.assign(tokens, tokens + n);
    host_positions_.resize(static_cast<size_t>(n));
    for (int64_t t = 0; t < n; ++t) host_positions_[t] = static_cast<int32_t>(t % T);
    inputs_.upload(host_inputs_);
    positions_.upload(host_positions_);
    routing_.clear();
    B_ = B;
    T_ = T;
    run_trunk(inputs_.data(), B, T, probe_routing);
    run_head(blocks_.back()->output().data(), n);
    be_.flush_checks();
    has_forward_ = false;  // no targets: nothing to differentiate
}

void Model::upload_positions(int64_t n, int64_t start) {
    host_positions_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) host_positions_[i] = static_cast<int32_t>(start + i);
    positions_.upload(host_positions_);
}

const Tensor& Model::hidden() const { return blocks_.back()->output(); }

void Model::forward_cached(const int32_t* tokens, int64_t n, int64_t start, KvCache& cache,
                           bool all_logits, bool probe_routing) {
    if (n <= 0) throw Error("forward_cached: no tokens");
    if (start < 0 || start + n > cache.capacity())
        throw Error("forward_cached: positions " + std::to_string(start) + ".." +
                    std::to_string(start + n - 1) + " do not fit the KV cache's " +
                    std::to_string(cache.capacity()));
    check_tokens(tokens, n, cfg_.vocab_size, "generate");
    DeviceScope scope(be_.allocator());
    host_inputs_.assign(tokens, tokens + n);
    inputs_.upload(host_inputs_);
    upload_positions(n, start);
    routing_.clear();
    B_ = 1;
    T_ = n;
    struct Detach {  // the blocks never keep a cache past this call, even on an error
        std::vector<std::unique_ptr<TransformerBlock>>& blocks;
        ~Detach() {
            for (auto& b : blocks) b->attention().set_cache(nullptr);
        }
    } detach{blocks_};
    for (size_t l = 0; l < blocks_.size(); ++l) {
        const MlaAttention::Cache c{&cache.latent(int64_t(l)), &cache.rope_key(int64_t(l)),
                                    cache.index_key(int64_t(l)), start};
        blocks_[l]->attention().set_cache(&c);
    }
    run_trunk(inputs_.data(), 1, n, probe_routing);
    const float* h = blocks_.back()->output().data();
    if (all_logits)
        run_head(h, n);
    else
        run_head(h + (n - 1) * cfg_.hidden_size, 1);
    be_.flush_checks();
    has_forward_ = false;
}

void Model::mtp_forward_cached(const float* h, const int32_t* next_tokens, int64_t n,
                               int64_t start, KvCache& cache, bool probe_routing) {
    if (mtp_.empty()) throw Error("speculative decoding needs an MTP module (num_nextn_predict_layers >= 1)");
    if (n <= 0) return;
    check_tokens(next_tokens, n, cfg_.vocab_size, "generate");
    DeviceScope scope(be_.allocator());
    const int64_t D = cfg_.hidden_size, V = cfg_.vocab_size, L = cfg_.num_hidden_layers;
    host_stage_.assign(next_tokens, next_tokens + n);
    draft_tokens_.upload(host_stage_);
    upload_positions(n, start);
    mtp_draft_emb_.resize({n, D});
    be_.embedding_forward(draft_tokens_.data(), n, embed_->value.data(), V, D, mtp_draft_emb_.data());
    MlaAttention& attn = mtp_[0]->block().attention();
    struct Detach {
        MlaAttention& a;
        ~Detach() { a.set_cache(nullptr); }
    } detach{attn};
    const MlaAttention::Cache c{&cache.latent(L), &cache.rope_key(L), cache.index_key(L), start};
    attn.set_cache(&c);
    RoutingRecord* rec = nullptr;
    if (probe_routing && mtp_[0]->block().is_moe()) rec = &routing_.emplace_back();
    mtp_[0]->forward(be_, mtp_draft_emb_.data(), h, 1, n, positions_.data(), rec);
    mtp_draft_logits_.resize({n, V});
    linear_forward(be_, mtp_[0]->normed().data(), n, D, head_->value.data(), V,
                   mtp_draft_logits_.data());
    be_.flush_checks();
}

LossReport Model::forward(const Batch& batch, const ForwardOptions& options) {
    const int64_t B = batch.batch, T = batch.seq_len, n = B * T, V = cfg_.vocab_size;
    if (B <= 0 || T <= 0) throw Error("forward: empty batch");
    if (static_cast<int64_t>(batch.tokens.size()) != B * (T + 1))
        throw Error("forward: batch holds " + std::to_string(batch.tokens.size()) +
                    " tokens, expected batch * (seq_len + 1) = " + std::to_string(B * (T + 1)));
    check_tokens(batch.tokens.data(), B * (T + 1), V, "forward");
    DeviceScope scope(be_.allocator());
    B_ = B;
    T_ = T;
    mtp_lambda_ = options.mtp_lambda;
    routing_.clear();

    // Inputs, next-token targets and positions, row-major over (sequence, position).
    host_inputs_.resize(static_cast<size_t>(n));
    host_targets_.resize(static_cast<size_t>(n));
    host_positions_.resize(static_cast<size_t>(n));
    auto tok = [&](int64_t b, int64_t j) { return batch.tokens[static_cast<size_t>(b * (T + 1) + j)]; };
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < T; ++i) {
            host_inputs_[b * T + i] = tok(b, i);
            host_targets_[b * T + i] = tok(b, i + 1);
            host_positions_[b * T + i] = static_cast<int32_t>(i);
        }
    inputs_.upload(host_inputs_);
    targets_.upload(host_targets_);
    positions_.upload(host_positions_);
    main_valid_ = n;

    LossReport report;
    report.aux_loss = run_trunk(inputs_.data(), B, T, options.probe_routing);
    const float* h_main = blocks_.back()->output().data();
    run_head(h_main, n);
    losses_.resize({n});
    be_.cross_entropy_forward(logits_.data(), targets_.data(), n, V, losses_.data());
    report.loss = be_.sum(losses_.data(), n) / static_cast<double>(main_valid_);

    // MTP: module k reads Emb(t_{i+k}) (token 0 past the end) and predicts t_{i+k+1}.
    const int64_t depth = static_cast<int64_t>(mtp_.size());
    mtp_inputs_.resize(static_cast<size_t>(depth));
    mtp_targets_.resize(static_cast<size_t>(depth));
    mtp_valid_.assign(static_cast<size_t>(depth), 0);
    mtp_emb_.resize(static_cast<size_t>(depth));
    mtp_logits_.resize(static_cast<size_t>(depth));
    report.mtp_losses.assign(static_cast<size_t>(depth), 0.0);
    const float* h_prev = h_main;
    for (int64_t k = 1; k <= depth; ++k) {
        auto& in = mtp_inputs_[k - 1];
        auto& tg = mtp_targets_[k - 1];
        host_stage_.resize(static_cast<size_t>(n));
        for (int64_t b = 0; b < B; ++b)
            for (int64_t i = 0; i < T; ++i) host_stage_[b * T + i] = i + k <= T ? tok(b, i + k) : 0;
        in.upload(host_stage_);
        int64_t valid = 0;
        for (int64_t b = 0; b < B; ++b)
            for (int64_t i = 0; i < T; ++i) {
                const bool has_target = i + k + 1 <= T;
                host_stage_[b * T + i] = has_target ? tok(b, i + k + 1) : -1;
                valid += has_target;
            }
        tg.upload(host_stage_);
        mtp_valid_[k - 1] = valid;
        Tensor& emb = mtp_emb_[k - 1];
        emb.resize({n, cfg_.hidden_size});
        be_.embedding_forward(in.data(), n, embed_->value.data(), V, cfg_.hidden_size, emb.data());
        RoutingRecord* rec = nullptr;
        if (options.probe_routing && mtp_[k - 1]->block().is_moe()) rec = &routing_.emplace_back();
        MtpModule& m = *mtp_[k - 1];
        report.aux_loss += m.forward(be_, emb.data(), h_prev, B, T, positions_.data(), rec);
        Tensor& lg = mtp_logits_[k - 1];
        lg.resize({n, V});
        linear_forward(be_, m.normed().data(), n, cfg_.hidden_size, head_->value.data(), V,
                       lg.data());
        mtp_token_losses_.resize({n});
        be_.cross_entropy_forward(lg.data(), tg.data(), n, V, mtp_token_losses_.data());
        if (valid > 0)
            report.mtp_losses[k - 1] = be_.sum(mtp_token_losses_.data(), n) / double(valid);
        h_prev = m.output().data();
    }
    if (depth > 0) {
        double s = 0.0;
        for (double l : report.mtp_losses) s += l;
        report.mtp_loss = options.mtp_lambda / static_cast<double>(depth) * s;
    }
    report.total = report.loss + report.mtp_loss + report.aux_loss;
    if (cfg_.index_topk > 0) {
        for (const auto& blk : blocks_) report.indexer_loss += blk->attention().indexer_loss();
        for (const auto& m : mtp_) report.indexer_loss += m->block().attention().indexer_loss();
    }
    be_.flush_checks();
    has_forward_ = true;
    return report;
}

void Model::backward(float loss_scale) {
    if (!has_forward_) throw Error("backward() needs a training forward() first");
    DeviceScope scope(be_.allocator());
    const int64_t n = B_ * T_, D = cfg_.hidden_size, V = cfg_.vocab_size;
    const int64_t depth = static_cast<int64_t>(mtp_.size());

    d_h_.resize(static_cast<size_t>(depth + 1));
    for (Tensor& t : d_h_) {
        t.resize({n, D});
        t.zero();
    }
    d_logits_.resize({n, V});
    d_normed_.resize({n, D});

    // No moe_layers() here: it allocates, and a steady-state step allocates nothing.
    for (auto& b : blocks_)
        if (b->is_moe()) b->moe()->set_aux_grad_scale(loss_scale);
    for (auto& m : mtp_)
        if (m->block().is_moe()) m->block().moe()->set_aux_grad_scale(loss_scale);

    // Main head: total = CE_mean + ...
    const float* h_main = blocks_.back()->output().data();
    d_logits_.zero();
    be_.cross_entropy_backward(logits_.data(), targets_.data(), n, V,
                               static_cast<float>(double(loss_scale) / double(main_valid_)),
                               d_logits_.data());
    d_normed_.zero();
    linear_backward(be_, d_logits_.data(), normed_.data(), n, D, head_->value.data(), V,
                    d_normed_.data(), head_->grad.data());
    be_.rmsnorm_backward(d_normed_.data(), D, h_main, D, norm_->value.data(), norm_rstd_.data(),
                         n, D, d_h_[0].data(), D, norm_->grad.data());

    // MTP modules, deepest first: module k's input h^{k-1} collects its gradient.
    d_emb_.resize({n, D});
    for (int64_t k = depth; k >= 1; --k) {
        MtpModule& m = *mtp_[k - 1];
        d_normed_.zero();
        if (mtp_valid_[k - 1] > 0) {
            d_logits_.zero();
            const double scale =
                loss_scale * mtp_lambda_ / double(depth) / double(mtp_valid_[k - 1]);
            be_.cross_entropy_backward(mtp_logits_[k - 1].data(), mtp_targets_[k - 1].data(), n,
                                       V, static_cast<float>(scale), d_logits_.data());
            linear_backward(be_, d_logits_.data(), m.normed().data(), n, D, head_->value.data(),
                            V, d_normed_.data(), head_->grad.data());
        }
        d_emb_.zero();
        m.backward(be_, d_normed_.data(), k < depth ? d_h_[k].data() : nullptr, d_emb_.data(),
                   d_h_[k - 1].data());
        be_.embedding_backward(mtp_inputs_[k - 1].data(), n, d_emb_.data(), V, D,
                               embed_->grad.data());
    }

    // Main trunk, last layer first, ping-ponging two gradient buffers.
    d_a_.resize({n, D});
    d_b_.resize({n, D});
    const float* d_out = d_h_[0].data();
    Tensor* d_in = &d_a_;
    for (int64_t l = static_cast<int64_t>(blocks_.size()) - 1; l >= 0; --l) {
        d_in->zero();
        blocks_[l]->backward(be_, d_out, d_in->data());
        d_out = d_in->data();
        d_in = d_in == &d_a_ ? &d_b_ : &d_a_;
    }
    be_.embedding_backward(inputs_.data(), n, d_out, V, D, embed_->grad.data());
}

void Model::set_expert_parallel(Communicator* comm) {
    for (MoeLayer* l : moe_layers()) l->set_expert_parallel(comm);
}

std::vector<MoeLayer*> Model::moe_layers() {
    std::vector<MoeLayer*> out;
    for (auto& b : blocks_)
        if (b->is_moe()) out.push_back(b->moe());
    for (auto& m : mtp_)
        if (m->block().is_moe()) out.push_back(m->block().moe());
    return out;
}

const Tensor& Model::attention_probs(int64_t layer) const {
    if (layer < 0 || layer >= static_cast<int64_t>(blocks_.size()))
        throw Error("attention_probs: layer " + std::to_string(layer) + " outside [0, " +
                    std::to_string(blocks_.size()) + ")");
    return blocks_[static_cast<size_t>(layer)]->attention().probs();
}

const MlaAttention& Model::attention_of(int64_t layer) const {
    const int64_t main = static_cast<int64_t>(blocks_.size());
    if (layer < 0 || layer >= main + static_cast<int64_t>(mtp_.size()))
        throw Error("attention layer " + std::to_string(layer) + " outside [0, " +
                    std::to_string(main + static_cast<int64_t>(mtp_.size())) + ")");
    return layer < main ? blocks_[static_cast<size_t>(layer)]->attention()
                        : mtp_[static_cast<size_t>(layer - main)]->block().attention();
}

std::vector<int32_t> Model::selected_keys(int64_t layer) const {
    return attention_of(layer).selected_keys();
}

int64_t Model::selected_width(int64_t layer) const { return attention_of(layer).selected_width(); }

void Model::set_index_warmup(bool warmup) {
    for (auto& blk : blocks_) blk->attention().set_index_warmup(warmup);
    for (auto& m : mtp_) m->block().attention().set_index_warmup(warmup);
}

std::vector<std::pair<std::string, std::string>> Model::checkpoint_aliases() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (int64_t k = 1; k <= cfg_.num_nextn_predict_layers; ++k) {
        const std::string p = layer_prefix(cfg_.num_hidden_layers + k - 1);
        out.emplace_back(p + ".embed_tokens.weight", "model.embed_tokens.weight");
        out.emplace_back(p + ".shared_head.head.weight", "lm_head.weight");
    }
    return out;
}

std::vector<int64_t> Model::ffn_layer_indices() const {
    std::vector<int64_t> out;
    for (int64_t l = 0; l < cfg_.num_hidden_layers + cfg_.num_nextn_predict_layers; ++l)
        out.push_back(l);
    return out;
}

std::vector<double> Model::ffn_near_zero(float threshold) const {
    std::vector<double> out;
    for (const auto& b : blocks_) out.push_back(b->ffn_near_zero(threshold).fraction());
    for (const auto& m : mtp_) out.push_back(m->block().ffn_near_zero(threshold).fraction());
    return out;
}

}  // namespace moe
