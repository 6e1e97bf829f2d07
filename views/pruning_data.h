#pragma once
// Plain data for PruningView: what moe-prune measured and removed (its pruning.json), per layer.
#include <QString>
#include <QStringList>

#include <map>
#include <vector>

namespace moe::views {

// One MoE layer of an expert pruning: every expert's score under each measured criterion.
struct PruningExpertLayer {
    QString name;                                   // "layer 1", "MTP 1"
    std::map<QString, std::vector<double>> scores;  // criterion -> [E] (higher = more important)
    std::vector<bool> removed;                      // [E]
};

// One layer of a channel pruning: the hidden-channel saliency of each of its FFNs.
struct PruningChannelLayer {
    QString name;                               // "layer 3"
    QStringList rows;                           // "expert 0", ..., "shared", "dense"
    std::vector<std::vector<double>> saliency;  // per row, per channel (original order)
    std::vector<std::vector<int>> removed;      // per row: the channels removed
};

struct PruningData {
    enum class Kind { None, Experts, Channels };
    Kind kind = Kind::None;
    QString criterion;  // experts: the criterion the pruning used
    QString summary;    // losses, sizes and times in one or two lines
    std::vector<PruningExpertLayer> expert_layers;
    std::vector<PruningChannelLayer> channel_layers;

    int layers() const {
        return static_cast<int>(kind == Kind::Experts ? expert_layers.size()
                                                      : channel_layers.size());
    }
};

}  // namespace moe::views
