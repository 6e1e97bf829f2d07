#pragma once
// Quantization error of a low-precision run: every quantized tensor's error at a logged step
// (a scrollable bar list, filtered and sorted), the selected tensor's value histogram under the
// chosen number format's grid (what rounds, what flushes to zero, what saturates), its error
// over training with other open runs overlaid, and a heatmap of a tensor's block scales.
#include "number_grid.h"
#include "quant_tensor_list.h"
#include "quantization_data.h"

#include <QStringList>
#include <QWidget>

#include <map>
#include <utility>

class QCustomPlot;
class QCPBars;
class QCPGraph;
class QCPItemRect;
class QCPItemText;
class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QScrollBar;
class QSlider;
class QStackedWidget;

namespace moe::views {

class HeatmapPlot;

class QuantizationView : public QWidget {
    Q_OBJECT
public:
    enum class HistogramKind { Values, Errors };
    // Bars shown before "Show all" is ticked.
    static constexpr int kTopN = 40;

    explicit QuantizationView(QWidget* parent = nullptr);
    ~QuantizationView() override;

    // Replaces the runs; keeps the chosen run, tensors and controls where they still exist, and
    // stays on the newest step if it was there (live runs).
    void setData(QuantizationData data);
    const QuantizationData& data() const { return data_; }

    void setRun(int run);  // index into data().runs
    int run() const { return run_; }
    void setStepIndex(int row);
    int stepIndex() const { return row_; }
    void setMetric(QuantMetric metric);
    QuantMetric metric() const { return metric_; }
    void setSort(QuantSort sort);
    QuantSort sort() const { return sort_; }
    void setRoleFilter(RoleFilter filter);
    RoleFilter roleFilter() const { return role_filter_; }
    void setTextFilter(const QString& text);
    void setShowAll(bool all);
    bool showAll() const { return show_all_; }
    void setGridFormat(GridFormat format);
    GridFormat gridFormat() const { return grid_format_; }
    void setHistogramKind(HistogramKind kind);
    HistogramKind histogramKind() const { return hist_kind_; }
    void setScaleGrid(int grid);
    int scaleGrid() const { return scale_grid_; }

    // Selection by tensor key; the first is the one shown in the histogram. additive toggles.
    void selectTensor(const QString& key, bool additive = false);
    QStringList selectedTensors() const { return selected_; }

    // Tensor indices in bar order (filtered, sorted, cut to kTopN unless "show all").
    const std::vector<int>& shownTensors() const { return shown_; }
    int matchingTensorCount() const { return matching_; }
    // The bar list's first visible row (it scrolls when the list is longer than the plot).
    int firstVisibleRow() const { return first_row_; }
    int visibleRows() const;
    // Tooltip text of a tensor at the shown step (what hovering its bar shows).
    QString tensorTooltip(int tensor) const;

    bool emptyStateShown() const;
    QString emptyStateText() const;

    QCustomPlot* barPlot() const { return bar_plot_; }
    QCustomPlot* histogramPlot() const { return hist_plot_; }
    QCustomPlot* trainingPlot() const { return training_plot_; }
    HeatmapPlot* scalePlot() const { return scale_plot_; }
    const NumberGrid& numberGrid() const { return grid_; }
    QCPGraph* histogramGraph() const { return hist_graph_; }
    QCPGraph* gridTicks() const { return grid_ticks_; }

signals:
    void selectionChanged(const QStringList& keys);

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void buildUi();
    QWidget* buildBarPanel();
    QWidget* buildHistogramPanel();
    QWidget* buildTrainingPanel();
    QWidget* buildScalePanel();
    void chooseDefaultRun();
    void fillScaleCombo();
    void loadRow();
    void updateEmptyState();
    void updateStepControls();
    void updateBars();
    void updateBarRange();
    void updateHistogram();
    void updateGridOverlay();
    void updateTraining();
    void updateScales();
    void updateAll();
    int rowAt(double pixel_y) const;
    const QuantRunData* current() const;
    const QuantSeries& seriesFor(int run, int tensor);
    QString stepText(int row) const;

    QuantizationData data_;
    int run_ = -1;
    int row_ = -1;
    QuantRowData row_data_;  // the shown row of the current run
    int loaded_run_ = -1, loaded_row_ = -1;
    std::map<std::pair<int, int>, QuantSeries> series_cache_;  // (run, tensor)

    QuantMetric metric_ = QuantMetric::RelError;
    QuantSort sort_ = QuantSort::ByError;
    RoleFilter role_filter_ = RoleFilter::All;
    QString text_filter_;
    bool show_all_ = false;
    GridFormat grid_format_ = GridFormat::E4M3;
    bool grid_format_chosen_ = false;  // by the user: then a new run does not reset it
    HistogramKind hist_kind_ = HistogramKind::Values;
    int scale_grid_ = 0;
    QStringList selected_;
    std::vector<int> shown_;
    int matching_ = 0;
    int first_row_ = 0;
    NumberGrid grid_;

    QStackedWidget* stack_ = nullptr;
    QLabel* empty_label_ = nullptr;
    QComboBox* run_combo_ = nullptr;
    QSlider* step_slider_ = nullptr;
    QLabel* step_label_ = nullptr;
    QComboBox* metric_combo_ = nullptr;
    QComboBox* sort_combo_ = nullptr;
    QComboBox* role_combo_ = nullptr;
    QLineEdit* filter_edit_ = nullptr;
    QCheckBox* show_all_check_ = nullptr;
    QLabel* count_label_ = nullptr;
    QComboBox* format_combo_ = nullptr;
    QComboBox* hist_combo_ = nullptr;
    QComboBox* scale_combo_ = nullptr;
    QLabel* tensor_label_ = nullptr;

    QCustomPlot* bar_plot_ = nullptr;
    QScrollBar* bar_scroll_ = nullptr;
    std::vector<QCPBars*> role_bars_;  // one per role, so the colours name the roles
    std::vector<QCPItemRect*> highlights_;
    QCPItemText* bar_note_ = nullptr;

    QCustomPlot* hist_plot_ = nullptr;
    QCPGraph* hist_graph_ = nullptr;
    QCPGraph* grid_lines_ = nullptr;   // faint full-height lines (sparse formats)
    QCPGraph* grid_ticks_ = nullptr;   // rug of short ticks at the bottom
    QCPItemRect* flush_shade_ = nullptr;
    QCPItemRect* saturate_shade_ = nullptr;
    QCPItemText* flush_text_ = nullptr;
    QCPItemText* saturate_text_ = nullptr;
    QCPItemText* hist_note_ = nullptr;

    QCustomPlot* training_plot_ = nullptr;
    QCPItemText* training_note_ = nullptr;
    HeatmapPlot* scale_plot_ = nullptr;
    QCPItemText* scale_note_ = nullptr;
};

}  // namespace moe::views
