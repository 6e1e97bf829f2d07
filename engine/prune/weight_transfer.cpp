#include "prune/weight_transfer.h"

#include "core/error.h"

namespace moe {

bool split_layer_name(const std::string& name, int64_t& layer, std::string& rest) {
    static const std::string kPrefix = "model.layers.";
    if (name.compare(0, kPrefix.size(), kPrefix) != 0) return false;
    const size_t dot = name.find('.', kPrefix.size());
    if (dot == std::string::npos || dot == kPrefix.size()) return false;
    layer = 0;
    for (size_t i = kPrefix.size(); i < dot; ++i) {
        if (name[i] < '0' || name[i] > '9') return false;
        layer = layer * 10 + (name[i] - '0');
    }
    rest = name.substr(dot + 1);
    return true;
}

void transfer_weights(const Model& from, Model& to,
                      const std::function<TensorSelection(const std::string&)>& select) {
    for (Parameter* dst : to.parameters().all()) {
        const TensorSelection sel = select(dst->name);
        const Parameter* src = from.parameters().find(sel.source);
        if (!src)
            throw Error("pruning: tensor '" + dst->name + "' has no source '" + sel.source +
                        "' in the original model");
        const Shape& s = src->value.shape();
        const int64_t R = s.empty() ? 1 : s[0];
        const int64_t C = s.size() >= 2 ? src->value.numel() / R : 1;
        if (!sel.cols.empty() && s.size() != 2)
            throw Error("pruning: columns selected from '" + sel.source +
                        "', which is not a matrix");
        const std::vector<float> v = src->value.to_host();
        std::vector<int64_t> rows = sel.rows, cols = sel.cols;
        if (rows.empty())
            for (int64_t r = 0; r < R; ++r) rows.push_back(r);
        if (cols.empty())
            for (int64_t c = 0; c < C; ++c) cols.push_back(c);
        if (int64_t(rows.size() * cols.size()) != dst->value.numel())
            throw Error("pruning: '" + dst->name + "' has shape " +
                        shape_to_string(dst->value.shape()) + " but " +
                        std::to_string(rows.size()) + " x " + std::to_string(cols.size()) +
                        " values were selected from '" + sel.source + "' " + shape_to_string(s));
        std::vector<float> out;
        out.reserve(rows.size() * cols.size());
        for (int64_t r : rows) {
            if (r < 0 || r >= R)
                throw Error("pruning: row " + std::to_string(r) + " out of range for '" +
                            sel.source + "'");
            for (int64_t c : cols) {
                if (c < 0 || c >= C)
                    throw Error("pruning: column " + std::to_string(c) + " out of range for '" +
                                sel.source + "'");
                out.push_back(v[static_cast<size_t>(r * C + c)]);
            }
        }
        dst->value.copy_from_host(out.data());
    }
}

}  // namespace moe
