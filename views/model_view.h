#pragma once
// The model at a glance: a table of parameters, active parameters and FLOPs per token for each
// part, a diagram of the layer stack (dense, MoE, MTP), and the config text.
#include "highlight.h"
#include "model_summary_data.h"
#include "plot_data.h"

#include <QWidget>

class QCustomPlot;
class QPlainTextEdit;
class QLabel;
class QTreeWidget;
class QTreeWidgetItem;

namespace moe::views {

class EfficiencyCalculator;

class ModelView : public QWidget {
    Q_OBJECT
public:
    enum Column { NameColumn, ParamsColumn, ActiveColumn, FlopsColumn, NoteColumn, ColumnCount };
    // Item data role holding the exact number behind a formatted cell.
    static constexpr int kValueRole = Qt::UserRole + 1;

    explicit ModelView(QWidget *parent = nullptr);

    void setSummary(ModelSummaryData data);
    const ModelSummaryData &summary() const { return data_; }

    QTreeWidget *table() const { return tree_; }
    QTreeWidgetItem *totalsItem() const { return totals_; }
    QCustomPlot *diagram() const { return diagram_; }
    QPlainTextEdit *configText() const { return config_; }
    EfficiencyCalculator *calculator() const { return calculator_; }
    QLabel *kvCacheLabel() const { return kv_label_; }

    // Points at a row of the table (a part's name, e.g. "routed experts"), at "kv cache" or at
    // "calculator"; false (with what was not found in *missing) otherwise.
    bool setHighlight(const Highlight &h, QString *missing = nullptr);
    void clearHighlight();

    // Every part as a numeric table (rows: parts, columns: params, active, FLOPs), for CSV.
    Matrix tableMatrix() const;
    bool exportTableCsv(const QString &path, QString *error = nullptr) const;

    // 1234 -> "1.23 K", 6.71e11 -> "671 B"; FLOPs: "2.1 GFLOP", "350 MFLOP".
    static QString humanCount(double value);
    static QString humanFlops(double value);

private:
    void fillDiagram();

    ModelSummaryData data_;
    QTreeWidget *tree_ = nullptr;
    QTreeWidgetItem *totals_ = nullptr;
    QCustomPlot *diagram_ = nullptr;
    QPlainTextEdit *config_ = nullptr;
    EfficiencyCalculator *calculator_ = nullptr;
    QLabel *kv_label_ = nullptr;
};

}  // namespace moe::views
