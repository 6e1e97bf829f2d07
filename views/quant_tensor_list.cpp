#include "quant_tensor_list.h"

#include <QRegularExpression>
#include <QStringList>

#include <algorithm>
#include <cmath>

namespace moe::views {

int tensor_layer(const QString& key) {
    static const QRegularExpression layer(QStringLiteral("(?:^|\\.)layers\\.(\\d+)\\."));
    const QRegularExpressionMatch m = layer.match(key);
    return m.hasMatch() ? m.captured(1).toInt() : -1;
}

QString short_tensor_name(const QString& key) {
    QString base = key, suffix;
    const int at = key.lastIndexOf(QLatin1Char('@'));
    if (at >= 0) {
        base = key.left(at);
        const QString role = key.mid(at + 1);
        suffix = role == QLatin1String("input") ? QStringLiteral(" @in") : QStringLiteral(" @") + role;
    }
    if (base.startsWith(QLatin1String("model."))) base.remove(0, 6);
    if (base.endsWith(QLatin1String(".weight"))) base.chop(7);
    return base + suffix;
}

QString compact_tensor_name(const QString& key) {
    QString s = short_tensor_name(key);
    static const QRegularExpression layer(QStringLiteral("^layers\\.(\\d+)\\."));
    s.replace(layer, QStringLiteral("L\\1 "));
    s.replace(QLatin1String("self_attn."), QLatin1String("attn."));
    s.replace(QLatin1String("mlp.shared_experts."), QLatin1String("shared."));
    s.replace(QRegularExpression(QStringLiteral("mlp\\.experts\\.(\\d+)\\.")), QStringLiteral("e\\1."));
    s.replace(QLatin1String("mlp."), QString());
    s.replace(QLatin1String("_proj"), QString());
    if (s == QLatin1String("lm_head")) s = QStringLiteral("head");
    return s;
}

QString role_name(QuantRole role) {
    switch (role) {
    case QuantRole::Weight: return QStringLiteral("weight");
    case QuantRole::Activation: return QStringLiteral("activation");
    case QuantRole::Gradient: return QStringLiteral("gradient");
    }
    return {};
}

bool natural_less(const QString& a, const QString& b) {
    int i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        if (a[i].isDigit() && b[j].isDigit()) {
            int ei = i, ej = j;
            while (ei < a.size() && a[ei].isDigit()) ++ei;
            while (ej < b.size() && b[ej].isDigit()) ++ej;
            const qulonglong x = a.mid(i, ei - i).toULongLong(), y = b.mid(j, ej - j).toULongLong();
            if (x != y) return x < y;
            i = ei, j = ej;
            continue;
        }
        if (a[i] != b[j]) return a[i] < b[j];
        ++i, ++j;
    }
    return a.size() - i < b.size() - j;
}

bool role_matches(QuantRole role, RoleFilter filter) {
    switch (filter) {
    case RoleFilter::All: return true;
    case RoleFilter::Weights: return role == QuantRole::Weight;
    case RoleFilter::Activations: return role == QuantRole::Activation;
    case RoleFilter::Gradients: return role == QuantRole::Gradient;
    }
    return true;
}

std::vector<int> order_tensors(const QuantRunData& run, const QuantRowData& row, QuantSort sort,
                               QuantMetric metric, RoleFilter filter, const QString& text) {
    const QStringList words = text.split(QRegularExpression(QStringLiteral("\\s+")), Qt::SkipEmptyParts);
    std::vector<int> out;
    for (int i = 0; i < run.tensorCount(); ++i) {
        const QuantTensor& t = run.tensors[size_t(i)];
        if (!role_matches(t.role, filter)) continue;
        bool all = true;
        for (const QString& w : words) all = all && t.key.contains(w, Qt::CaseInsensitive);
        if (all) out.push_back(i);
    }
    auto name_less = [&](int a, int b) { return natural_less(run.tensors[size_t(a)].key, run.tensors[size_t(b)].key); };
    std::sort(out.begin(), out.end(), name_less);
    if (sort == QuantSort::ByName) return out;
    if (sort == QuantSort::ByLayer) {
        std::stable_sort(out.begin(), out.end(), [&](int a, int b) {
            const int la = tensor_layer(run.tensors[size_t(a)].key), lb = tensor_layer(run.tensors[size_t(b)].key);
            // Tensors outside the layers (embedding, head) go last.
            const unsigned ua = unsigned(la), ub = unsigned(lb);
            return ua < ub;
        });
        return out;
    }
    const std::vector<float>& v = metric == QuantMetric::RelError ? row.rel_error : row.snr_db;
    // Worst first: the largest error or the lowest SNR; missing values (NaN, no row) last.
    auto badness = [&](int i) {
        if (size_t(i) >= v.size() || !std::isfinite(v[size_t(i)])) return -HUGE_VAL;
        return metric == QuantMetric::RelError ? double(v[size_t(i)]) : -double(v[size_t(i)]);
    };
    std::stable_sort(out.begin(), out.end(), [&](int a, int b) { return badness(a) > badness(b); });
    return out;
}

}  // namespace moe::views
