#include "model/mtp_module.h"

#include "model/projection.h"

namespace moe {

namespace {
std::string layer_prefix(int64_t index) { return "model.layers." + std::to_string(index); }
}  // namespace

MtpModule::MtpModule(ParameterStore& store, int64_t layer_index, const ModelConfig& cfg,
                     const PrecisionContext* precision)
    : D_(cfg.hidden_size),
      eps_(static_cast<float>(cfg.rms_norm_eps)),
      enorm_(&store.add(layer_prefix(layer_index) + ".enorm.weight", {cfg.hidden_size})),
      hnorm_(&store.add(layer_prefix(layer_index) + ".hnorm.weight", {cfg.hidden_size})),
      eh_proj_(&store.add(layer_prefix(layer_index) + ".eh_proj.weight",
                          {cfg.hidden_size, 2 * cfg.hidden_size})),
      precision_(precision),
      block_(store, layer_prefix(layer_index), layer_index, cfg, precision),
      head_norm_(&store.add(layer_prefix(layer_index) + ".shared_head.norm.weight",
                            {cfg.hidden_size})) {}

double MtpModule::forward(Backend& be, const float* emb, const float* h_prev, int64_t B,
                          int64_t T, const int32_t* positions, RoutingRecord* probe) {
    const int64_t n = B * T;
    emb_ = emb;
    h_prev_ = h_prev;
    n_ = n;
    cat_.resize({n, 2 * D_});
    e_rstd_.resize({n});
    h_rstd_.resize({n});
    proj_.resize({n, D_});
    normed_.resize({n, D_});
    head_rstd_.resize({n});

    // [enorm(emb) | hnorm(h_prev)] written straight into the two halves of cat.
    be.rmsnorm_forward(emb, D_, enorm_->value.data(), n, D_, eps_, cat_.data(), 2 * D_,
                       e_rstd_.data());
    be.rmsnorm_forward(h_prev, D_, hnorm_->value.data(), n, D_, eps_, cat_.data() + D_, 2 * D_,
                       h_rstd_.data());
    projection_forward(be, precision_, *eh_proj_, cat_.data(), n, 2 * D_, D_, proj_.data());
    const double aux = block_.forward(be, proj_.data(), B, T, positions, probe);
    be.rmsnorm_forward(block_.output().data(), D_, head_norm_->value.data(), n, D_, eps_,
                       normed_.data(), D_, head_rstd_.data());
    return aux;
}

void MtpModule::backward(Backend& be, const float* d_normed, const float* d_out_extra,
                         float* d_emb, float* d_h_prev) {
    const int64_t n = n_;
    d_out_.resize({n, D_});
    d_out_.zero();
    if (d_out_extra) be.add_2d(d_out_extra, D_, d_out_.data(), D_, n, D_);
    be.rmsnorm_backward(d_normed, D_, block_.output().data(), D_, head_norm_->value.data(),
                        head_rstd_.data(), n, D_, d_out_.data(), D_, head_norm_->grad.data());
    d_proj_.resize({n, D_});
    d_proj_.zero();
    block_.backward(be, d_out_.data(), d_proj_.data());
    d_cat_.resize({n, 2 * D_});
    d_cat_.zero();
    projection_backward(be, precision_, *eh_proj_, d_proj_.data(), cat_.data(), n, 2 * D_, D_,
                        d_cat_.data());
    be.rmsnorm_backward(d_cat_.data(), 2 * D_, emb_, D_, enorm_->value.data(), e_rstd_.data(), n,
                        D_, d_emb, D_, enorm_->grad.data());
    be.rmsnorm_backward(d_cat_.data() + D_, 2 * D_, h_prev_, D_, hnorm_->value.data(),
                        h_rstd_.data(), n, D_, d_h_prev, D_, hnorm_->grad.data());
}

}  // namespace moe
