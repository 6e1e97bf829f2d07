#pragma once
// The contract between data and drawing: plain values that any source (a run file, a live
// session, a test) can fill. Views never see engine types.
#include <QColor>
#include <QString>
#include <QStringList>

#include <cstdint>
#include <vector>

namespace moe::views {

// One curve: y over x (x ascending). Missing values are NaN and break the line.
struct Series {
    QString name;
    std::vector<double> x;
    std::vector<double> y;
};

// A row-major [rows, cols] grid of values, with optional labels for rows and columns.
struct Matrix {
    int rows = 0;
    int cols = 0;
    std::vector<double> values;  // rows * cols
    QStringList row_labels;
    QStringList col_labels;
    double at(int r, int c) const { return values[static_cast<size_t>(r) * cols + c]; }
};

}  // namespace moe::views
