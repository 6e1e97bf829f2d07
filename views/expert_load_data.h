#pragma once
// Plain data for ExpertLoadView: what the run file's /experts group holds, as flat arrays.
#include <QString>
#include <QStringList>

#include <cstddef>
#include <functional>
#include <vector>

namespace moe::views {

// Expert load, balancing bias and MaxVio over training, for every MoE layer (MTP included).
// Layout is row-major: load[(s * L + l) * E + e]. float keeps 64 x 26 x 100,000 steps at
// ~0.67 GB per array instead of twice that.
struct ExpertLoadData {
    QStringList layer_names;   // [L], e.g. "layer 4", "MTP 1"
    int experts = 0;           // E routed experts per layer
    std::vector<double> steps; // [S] logged training steps, ascending
    std::vector<float> load;   // [S, L, E] tokens routed to each expert at that logged step
    std::vector<float> bias;   // [S, L, E] aux-loss-free balancing bias; may be empty
    // When set and bias is empty: reads the bias ([S, L, E]) on demand. A finished run's bias is
    // only read when the bias tab is shown (half of what opening a large run would read).
    std::function<std::vector<float>()> load_bias;
    std::vector<float> maxvio; // [S, L] max_i (load_i - mean) / mean; may be empty (computed)
    int expert_ranks = 1;      // expert parallelism: rank r holds experts [r E/ranks, (r+1) E/ranks)

    int layers() const { return static_cast<int>(layer_names.size()); }
    int step_count() const { return static_cast<int>(steps.size()); }
    size_t index(int s, int l, int e) const
    {
        return (static_cast<size_t>(s) * layers() + l) * experts + e;
    }
    bool has_bias() const { return !bias.empty() || static_cast<bool>(load_bias); }
    // True when the arrays agree with the dimensions.
    bool valid() const
    {
        const size_t n = static_cast<size_t>(step_count()) * layers() * experts;
        return experts > 0 && layers() > 0 && load.size() == n && (bias.empty() || bias.size() == n)
            && (maxvio.empty() || maxvio.size() == static_cast<size_t>(step_count()) * layers());
    }
};

}  // namespace moe::views
