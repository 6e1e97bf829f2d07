#pragma once
// Expert load balance over training: per-layer heatmaps of tokens per expert and of the
// balancing bias, layers x experts at one step, MaxVio and dead experts over training, and a
// bar chart of the load at the step under the cursor.
#include "expert_load_data.h"

#include <QWidget>

#include <vector>

class QCustomPlot;
class QCPRange;
class QCPBars;
class QCPGraph;
class QCPItemStraightLine;
class QCPItemRect;
class QComboBox;
class QLabel;
class QSlider;
class QSpinBox;
class QTabWidget;
class QTimer;
class QMouseEvent;

namespace moe::views {

class HeatmapPlot;

class ExpertLoadView : public QWidget {
    Q_OBJECT
public:
    enum class LoadUnit { Tokens, ShareOfMean };
    // How the training heatmaps fold many logged steps into one column.
    enum class Bucket { Mean, Max, Min };
    enum class DeadScope { AllLayers, ChosenLayer };

    explicit ExpertLoadView(QWidget *parent = nullptr);
    ~ExpertLoadView() override;

    // Takes the arrays by value: std::move a large run in (100,000 steps x 26 x 64 is ~1.3 GB).
    // Mismatched sizes are refused with a warning and show an empty view.
    void setData(ExpertLoadData data);
    const ExpertLoadData &data() const { return data_; }

    void setLayer(int layer);
    int layer() const { return layer_; }
    void setLoadUnit(LoadUnit unit);
    LoadUnit loadUnit() const { return unit_; }
    void setBucket(Bucket bucket);
    Bucket bucket() const { return bucket_; }
    void setDeadScope(DeadScope scope);
    DeadScope deadScope() const { return dead_scope_; }

    // The committed step (slider, spin box, click); hovering previews another without moving it.
    void setStepIndex(int index);
    int stepIndex() const { return step_; }
    int shownStepIndex() const { return preview_ >= 0 ? preview_ : step_; }
    // Preview the logged step nearest to a training step, as hovering a training plot does;
    // a negative value ends the preview.
    void previewStep(double step);
    void endPreview();

    // Logged steps per column of the training heatmaps right now (1 = no downsampling).
    double stepsPerColumn() const { return steps_per_column_; }
    int heatmapColumns() const { return columns_; }
    // Dead experts (zero load) at a logged step, in the current scope.
    int deadExperts(int step_index) const;
    double maxVio(int step_index, int layer) const;
    // Load of one expert at a step in the current unit.
    double loadValue(int step_index, int layer, int expert) const;

    // The plots, for tests, screenshots and export.
    HeatmapPlot *loadTrainingPlot() const { return load_training_; }
    HeatmapPlot *loadStepPlot() const { return load_step_; }
    HeatmapPlot *biasTrainingPlot() const { return bias_training_; }
    HeatmapPlot *biasStepPlot() const { return bias_step_; }
    QCustomPlot *barPlot() const { return bar_plot_; }
    QCustomPlot *maxVioPlot() const { return maxvio_plot_; }
    QCustomPlot *deadPlot() const { return dead_plot_; }
    QCPBars *loadBars() const { return bars_; }
    QTabWidget *heatmapTabs() const { return tabs_; }
    QSlider *stepSlider() const { return slider_; }

    // Redraw every plot now (for timing); returns milliseconds.
    double replotAll();

signals:
    void stepIndexChanged(int index);

protected:
    bool eventFilter(QObject *watched, QEvent *event) override;

private:
    void buildUi();
    void computeDerived();
    void showMarkers();
    bool ensureBias();
    void rebuildTrainingMaps();
    void fillTrainingMap(HeatmapPlot *plot, bool bias);
    void updateStepViews();
    void updateLineGraphs();
    void rebuildLines();
    void updateCursors();
    void scheduleTrainingRebuild();
    void onTrainingRangeChanged(const QCPRange &range);
    void onTrainingMouseMove(QMouseEvent *event);
    int nearestStepIndex(double step) const;
    QString unitLabel() const;
    double dataLower() const;
    double dataUpper() const;

    ExpertLoadData data_;
    std::vector<int> dead_all_;    // [S] dead experts summed over layers
    std::vector<int> dead_layer_;  // [S, L]

    int layer_ = 0;
    LoadUnit unit_ = LoadUnit::Tokens;
    Bucket bucket_ = Bucket::Mean;
    DeadScope dead_scope_ = DeadScope::AllLayers;
    int step_ = 0;
    int preview_ = -1;
    double steps_per_column_ = 1;
    int columns_ = 0;
    bool syncing_ = false;
    bool bias_dirty_ = true;   // the bias tab is filled when shown
    bool lines_folded_ = false;

    QComboBox *layer_combo_ = nullptr;
    QComboBox *unit_combo_ = nullptr;
    QComboBox *bucket_combo_ = nullptr;
    QComboBox *dead_combo_ = nullptr;
    QSlider *slider_ = nullptr;
    QSpinBox *spin_ = nullptr;
    QTabWidget *tabs_ = nullptr;
    QLabel *ranks_label_ = nullptr;                   // which rank holds which experts
    std::vector<QCPItemStraightLine *> rank_lines_;  // their boundaries in the bar chart
    QTimer *rebuild_timer_ = nullptr;

    HeatmapPlot *load_training_ = nullptr;
    HeatmapPlot *load_step_ = nullptr;
    HeatmapPlot *bias_training_ = nullptr;
    HeatmapPlot *bias_step_ = nullptr;
    QCustomPlot *bar_plot_ = nullptr;
    QCustomPlot *maxvio_plot_ = nullptr;
    QCustomPlot *dead_plot_ = nullptr;
    QCPBars *bars_ = nullptr;
    QCPItemStraightLine *mean_line_ = nullptr;
    QCPGraph *dead_graph_ = nullptr;
    std::vector<QCPGraph *> maxvio_graphs_;
    std::vector<QCPItemStraightLine *> cursors_;  // one per training plot
    std::vector<QCPItemRect *> row_outlines_;     // chosen layer in the layers x experts maps
};

}  // namespace moe::views
