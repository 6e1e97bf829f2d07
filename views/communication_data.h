#pragma once
// Plain data for CommunicationView: a run's /parallel rows (docs/run-format.md), per rank and
// per training step since the previous logged row.
#include <QString>

#include <cstddef>
#include <vector>

namespace moe::views {

struct CommunicationData {
    QString layout;             // "ep=2,dp=2"
    int ranks = 1;              // W
    std::vector<double> steps;  // [n] logged steps
    // [n * ranks] each, row-major by step: what each rank saw per training step.
    std::vector<double> step_s, all_reduce_bytes, all_reduce_s, all_to_all_bytes, all_to_all_s,
        tokens_sent, tokens_received;

    int rows() const { return static_cast<int>(steps.size()); }
    double at(const std::vector<double>& column, int row, int rank) const {
        return column[static_cast<size_t>(row) * ranks + rank];
    }
    bool valid() const {
        const size_t n = steps.size() * static_cast<size_t>(ranks);
        for (const auto* c : {&step_s, &all_reduce_bytes, &all_reduce_s, &all_to_all_bytes,
                              &all_to_all_s, &tokens_sent, &tokens_received})
            if (c->size() != n) return false;
        return ranks >= 1;
    }
};

}  // namespace moe::views
