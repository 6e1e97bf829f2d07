#pragma once
// Routing inspection: what the gate of every MoE layer decided for one text, plus the analyses
// the inspector view shows (agreement of two checkpoints, label x expert specialization, the
// tokens an expert takes most). Plain data and pure functions, no Qt: the GUI converts these
// into its own plain types, scripts and tests use them directly.
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/routing_probe.h"

namespace moe {

// One forward pass over one sequence of T tokens, with the routing of every main MoE layer.
struct Inspection {
    std::vector<int32_t> tokens;          // [T]
    std::vector<std::string> token_text;  // [T] ByteTokenizer::token_display of each token
    std::vector<int64_t> layers;          // HF index of each MoE layer (main layers only)
    int64_t E = 0;                        // routed experts
    int64_t K = 0;                        // experts per token
    int64_t heads = 0;                    // attention heads
    int64_t n_group = 1;                  // expert groups (group-limited routing)
    int64_t topk_group = 1;               // groups a token may use
    int64_t sliding_window = 0;           // attention window (0 = full causal)
    std::vector<RoutingRecord> routing;   // per MoE layer, parallel to `layers` (tokens == T)
    // Attention weights of every main decoder layer (HF index i at [i], dense layers included),
    // each [H, T, T]: row q holds query q's weights over keys 0..q (0 outside the window).
    std::vector<std::vector<float>> attention;
    // Dynamic sparse attention (index_topk > 0; 0 = dense): the keys each query of every main
    // layer attended to, [T, K] with K = min(index_topk, T), -1 padded; `attention` then holds
    // the dense attention those keys replace.
    int64_t index_topk = 0;
    std::vector<std::vector<int32_t>> selected_keys;
    // Selection bias e_score_correction_bias per MoE layer [E]; zeros when the model has none.
    std::vector<std::vector<float>> bias;
    std::string note;  // e.g. why the text was truncated; empty when nothing to say

    int64_t n_tokens() const { return static_cast<int64_t>(tokens.size()); }
    int64_t n_layers() const { return static_cast<int64_t>(layers.size()); }
};

// Runs the model over `tokens` as one sequence (no targets), probing routing and attention.
// Error for an empty sequence, one longer than max_position_embeddings, or ids outside the vocab.
Inspection inspect_tokens(Model& model, const std::vector<int32_t>& tokens);

// How many routing decisions two inspections of the same tokens share. A decision is the set
// of K experts a token goes to in one layer (order and weights ignored).
struct RoutingAgreement {
    double overlap = 0.0;  // mean over (token, layer) of |A ∩ B| / K
    double exact = 0.0;    // share of (token, layer) whose sets are identical
    double top1 = 0.0;     // share of (token, layer) with the same first expert
    std::vector<double> layer_overlap;  // per MoE layer, same definitions
    std::vector<double> layer_exact;
    std::vector<double> layer_top1;
};
// Error unless both hold the same tokens, layers and K.
RoutingAgreement routing_agreement(const Inspection& a, const Inspection& b);

// Share of each label's routing slots (token x K choices) that went to each expert, in one MoE
// layer of one routing snapshot: rows sum to 1 for labels with tokens, 0 for labels without.
struct SpecializationMatrix {
    int64_t labels = 0;
    int64_t experts = 0;
    std::vector<double> share;         // [labels, experts] row-major
    std::vector<int64_t> label_tokens; // tokens per label that were counted
    double at(int64_t l, int64_t e) const { return share[static_cast<size_t>(l * experts + e)]; }
};
// labels [T_p] (index into the label names, -1 = unlabelled, skipped); topk [L*T_p*K] as in
// RoutingRow::topk; layer indexes the L MoE layers. Error on inconsistent sizes.
SpecializationMatrix specialization_matrix(const std::vector<int32_t>& labels,
                                           const std::vector<int32_t>& topk, int64_t n_labels,
                                           int64_t E, int64_t K, int64_t layer);

// One token an expert takes.
struct ExpertToken {
    int64_t position = 0;  // in the inspected sequence
    int32_t token = 0;
    std::string text;      // display form
    float weight = 0.0f;   // the gate weight the token gives this expert
    float score = 0.0f;    // the expert's (unbiased) affinity score for the token
    int64_t slot = 0;      // rank among the token's K choices (0 = first)
};
// The at most n tokens routed to `expert` in MoE layer `layer` (index into Inspection::routing),
// largest weight first (ties: earlier position first).
std::vector<ExpertToken> top_tokens_for_expert(const Inspection& inspection, int64_t layer,
                                               int64_t expert, int64_t n);

}  // namespace moe
