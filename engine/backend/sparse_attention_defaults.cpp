// Backend's defaults for the dynamic sparse attention ops (backend.h): a backend without them
// says so by name, the moment a model with index_topk > 0 first runs on it. The host
// implementation is CpuBackend's (backend/cpu/cpu_sparse_attention.cpp).
#include <string>

#include "backend/backend.h"
#include "core/error.h"

namespace moe {

namespace {

[[noreturn]] void not_implemented(const Backend& be, const char* op) {
    throw Error(std::string(op) + ": dynamic top-k sparse attention (index_topk > 0) is not " +
                "implemented on the " + be.name() +
                " backend yet; run this model on the CPU (device cpu), or set index_topk to 0 " +
                "for dense attention");
}

}  // namespace

void Backend::indexer_scores_forward(const float*, const float*, const float*, int64_t, int64_t,
                                     int64_t, int64_t, int64_t, int64_t, float, float*) {
    not_implemented(*this, "indexer_scores_forward");
}

void Backend::indexer_scores_backward(const float*, const float*, const float*, const float*,
                                      int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float,
                                      float*, float*, float*) {
    not_implemented(*this, "indexer_scores_backward");
}

void Backend::topk_keys(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, int32_t*) {
    not_implemented(*this, "topk_keys");
}

void Backend::sparse_attention_forward(const float*, const float*, const float*, const int32_t*,
                                       int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float,
                                       float*, float*) {
    not_implemented(*this, "sparse_attention_forward");
}

void Backend::sparse_attention_backward(const float*, const float*, const float*, const float*,
                                        const float*, const int32_t*, int64_t, int64_t, int64_t,
                                        int64_t, int64_t, int64_t, float, float*, float*, float*) {
    not_implemented(*this, "sparse_attention_backward");
}

double Backend::indexer_loss(const float*, const float*, const int32_t*, int64_t, int64_t, int64_t,
                             int64_t, float, float*) {
    not_implemented(*this, "indexer_loss");
}

void Backend::mask_unselected_keys(float*, int64_t, int64_t, int64_t, const int32_t*, int64_t) {
    not_implemented(*this, "mask_unselected_keys");
}

}  // namespace moe
