#pragma once
// Colour maps that stay readable for people with colour-vision deficiencies. Each map is defined
// by a few stops and interpolated linearly in RGB, so the same colours appear in QCustomPlot
// colour maps and in widgets that paint by hand.
#include <QColor>
#include <qcustomplot.h>

namespace moe::views {

// Sequential, perceptually ordered dark purple -> teal -> yellow (viridis-like). For loads,
// scores, counts: anything with a meaningful zero and "more" direction.
QCPColorGradient viridis_gradient();

// Diverging blue -> near-white -> orange. Blue/orange stays distinct under deuteranopia,
// protanopia and tritanopia, unlike red/green. For signed values centred on zero (the
// balancing bias): set the data range symmetric, e.g. [-m, m].
QCPColorGradient diverging_gradient();

// Categorical palette: Okabe-Ito colours (without the yellow that vanishes on white), extended
// with Paul Tol's muted colours; 14 distinct entries, then it cycles. i < 0 is treated as 0.
QColor category_color(int i);
int category_count();

// Viridis-like colour for t in [0, 1] (clamped; NaN gives grey), for hand-drawn widgets.
QColor map_color(double t);
// Diverging colour for t in [-1, 1] (clamped; NaN gives grey); 0 is the neutral middle.
QColor diverging_color(double t);

}  // namespace moe::views
