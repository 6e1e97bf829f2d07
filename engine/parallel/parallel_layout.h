#pragma once
// How the ranks of a run share the work (docs/parallelism.md): ep ranks split each MoE layer's
// routed experts (expert parallelism), dp groups of them train on different slices of the
// global batch (data parallelism); ep * dp ranks in all. Rank r is expert shard r % ep of data
// group r / ep, so an expert group is ep consecutive ranks (one node, where the all-to-all is
// fastest). Every rank trains on its own slice of the global batch: batch_size / (ep * dp)
// sequences.
#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace moe {

struct ParallelLayout {
    int ep = 1, dp = 1;
    bool zero = false;  // ZeRO-1: the AdamW moments sharded over all ranks

    int world() const { return ep * dp; }
    int ep_index(int rank) const { return rank % ep; }
    int dp_index(int rank) const { return rank / ep; }
    // "ep=2,dp=2", "dp=4", "ep=8,zero=1" (missing factors are 1, zero 0); ConfigError naming
    // `field` and the text for anything else.
    static ParallelLayout parse(const std::string& text, const std::string& field = "--parallel");
    std::string to_string() const;  // "ep=2,dp=2", with ",zero=1" when set
    bool operator==(const ParallelLayout&) const = default;
};

// The communicators of one rank: every rank, its expert group (the ranks that share its data
// index and split the experts) and its data group (the ranks that hold its expert shard).
struct ParallelContext {
    ParallelLayout layout;
    std::shared_ptr<Communicator> world, experts, data;
    bool active = false;  // made by create(): every collective runs, even with one rank

    int rank() const { return world->rank(); }
    bool root() const { return world->rank() == 0; }
    // A run under --parallel. With one rank it still takes every parallel code path (the
    // collectives, the expert dispatch), which is how one GPU checks the NCCL path.
    bool parallel() const { return active; }

    static ParallelContext solo();
    // Splits `world` by the layout: Error unless world->size() == layout.world().
    static ParallelContext create(std::shared_ptr<Communicator> world,
                                  const ParallelLayout& layout);
};

}  // namespace moe
