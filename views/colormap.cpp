#include "colormap.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace moe::views {
namespace {

struct Stop {
    double t;
    QRgb rgb;
};

// Viridis sampled at nine points; a linear blend between them is visually indistinguishable
// from the full table at plot sizes.
constexpr std::array<Stop, 9> kViridis{{{0.000, 0x440154}, {0.125, 0x472d7b}, {0.250, 0x3b528b},
                                        {0.375, 0x2c728e}, {0.500, 0x21918c}, {0.625, 0x28ae80},
                                        {0.750, 0x5ec962}, {0.875, 0xaddc30}, {1.000, 0xfde725}}};

// Blue -> off-white -> orange; both arms fall in lightness at the same rate so equal |value|
// reads as equal strength.
constexpr std::array<Stop, 7> kDiverging{{{0.000, 0x1f4e8c}, {0.170, 0x4a86c5}, {0.340, 0xa9cbea},
                                          {0.500, 0xf5f5f2}, {0.660, 0xf9c48d}, {0.830, 0xe8833a},
                                          {1.000, 0x9e4a09}}};

constexpr std::array<QRgb, 14> kCategories{{
    0x0072b2,  // blue (Okabe-Ito)
    0xe69f00,  // orange
    0x009e73,  // bluish green
    0xd55e00,  // vermillion
    0xcc79a7,  // reddish purple
    0x56b4e9,  // sky blue
    0x000000,  // black
    0x882255,  // wine (Tol muted)
    0x44aa99,  // teal
    0x999933,  // olive
    0x332288,  // indigo
    0xaa4499,  // purple
    0x117733,  // green
    0x888888,  // grey
}};

template <size_t N>
QColor interpolate(const std::array<Stop, N>& stops, double t) {
    if (std::isnan(t)) return QColor(0xb0, 0xb0, 0xb0);
    t = std::clamp(t, 0.0, 1.0);
    for (size_t i = 1; i < N; ++i) {
        if (t <= stops[i].t) {
            const double f = (t - stops[i - 1].t) / (stops[i].t - stops[i - 1].t);
            const QColor a(stops[i - 1].rgb), b(stops[i].rgb);
            return QColor::fromRgbF(float(a.redF() + f * (b.redF() - a.redF())),
                                    float(a.greenF() + f * (b.greenF() - a.greenF())),
                                    float(a.blueF() + f * (b.blueF() - a.blueF())));
        }
    }
    return QColor(stops[N - 1].rgb);
}

template <size_t N>
QCPColorGradient make_gradient(const std::array<Stop, N>& stops) {
    QCPColorGradient g;
    g.clearColorStops();
    for (const Stop& s : stops) g.setColorStopAt(s.t, QColor(s.rgb));
    g.setColorInterpolation(QCPColorGradient::ciRGB);
    g.setLevelCount(256);
    return g;
}

}  // namespace

QCPColorGradient viridis_gradient() { return make_gradient(kViridis); }
QCPColorGradient diverging_gradient() { return make_gradient(kDiverging); }

QColor category_color(int i) {
    const int n = static_cast<int>(kCategories.size());
    return QColor(kCategories[static_cast<size_t>(std::max(i, 0) % n)]);
}

int category_count() { return static_cast<int>(kCategories.size()); }

QColor map_color(double t) { return interpolate(kViridis, t); }

QColor diverging_color(double t) {
    return interpolate(kDiverging, std::isnan(t) ? t : 0.5 * (std::clamp(t, -1.0, 1.0) + 1.0));
}

}  // namespace moe::views
