#pragma once
// Training curves of one or more runs: loss (main and MTP), aux loss, evaluation loss per label,
// learning rate, gradient norm and throughput, in six linked plots sharing one x range.
// Handles live runs with millions of steps: data stays in std::vector, curves are smoothed
// incrementally and downsampled (min/max kept) to about two points per pixel before drawing,
// and redraws are coalesced to at most ~30 per second.
#include "plot_export.h"
#include "run_curves.h"
#include "series_processing.h"

#include <QTimer>
#include <QWidget>

#include <array>
#include <cmath>
#include <vector>

class QCustomPlot;
class QCPGraph;
class QCPItemStraightLine;
class QCPItemText;
class QCPItemTracer;
class QCheckBox;
class QComboBox;
class QGridLayout;
class QLabel;
class QSlider;

namespace moe::views {

class TrainingCurvesView : public QWidget {
    Q_OBJECT
public:
    // PanelLossScale is shown only while some run has a loss scale (fp16).
    enum Panel { PanelLoss, PanelEval, PanelAux, PanelLr, PanelGrad, PanelThroughput, PanelLossScale, PanelCount };

    explicit TrainingCurvesView(QWidget* parent = nullptr);
    ~TrainingCurvesView() override;

    // Replaces the shown runs. Cheap for live use: a run whose name and columns are unchanged
    // and whose rows only grew is extended (only the new rows are smoothed), not rebuilt.
    void setRuns(const std::vector<RunCurves>& runs);
    // Appends rows (metrics and/or eval) to the run named rows.run_name, adding it if new.
    void appendRows(const RunCurves& rows);
    void clear();

    void setXAxis(XAxisKind kind);
    XAxisKind xAxis() const { return x_kind_; }
    void setLogY(bool on);
    bool logY() const { return log_y_; }
    // EMA weight in [0, 0.99]; 0 shows the raw curves only.
    void setSmoothing(double weight);
    double smoothing() const { return smoothing_; }
    void setFollowLive(bool on);
    bool followLive() const { return follow_live_; }
    void fitAll();

    // Applies pending data/range changes and redraws now (normally a timer does this).
    void flush();
    double lastUpdateMs() const { return last_update_ms_; }

    // For tests and the main window.
    int runCount() const { return static_cast<int>(runs_.size()); }
    QCustomPlot* plot(Panel panel) const { return plots_[panel]; }
    // The drawn graphs of a curve; eval_label -1 = overall eval loss. nullptr when absent.
    QCPGraph* graph(int run, Metric metric, bool smoothed, int eval_label = -1) const;
    // Full-resolution data of one panel, for CSV export.
    CsvContent csvFor(Panel panel) const;

private:
    struct RunState {
        RunCurves data;
        std::vector<double> eval_tokens, eval_wall;  // eval rows placed on the other x axes
    };
    struct Curve {
        int run = 0;
        Metric metric = Metric::Loss;
        int label = -1;  // eval label, -1 = overall
        Panel panel = PanelLoss;
        QString name;
        QCPGraph* raw = nullptr;
        QCPGraph* smooth = nullptr;
        EmaState ema;
        std::vector<double> smoothed;  // empty when not smoothed (eval, or weight 0)
        QCPItemTracer* tracer = nullptr;
    };
    struct Hover {
        QCPItemStraightLine* line = nullptr;
        QCPItemText* label = nullptr;
    };

    void buildUi();
    void setupPlot(Panel panel);
    QString structureSignature(const std::vector<RunCurves>& runs) const;
    QString currentSignature() const;
    void rebuildCurves();
    void resmooth(Curve& c);
    void smoothTail(Curve& c, std::size_t old_size);
    void placeEval(RunState& r);
    bool appendInto(RunState& r, const RunCurves& more);
    void dataChanged();
    void scheduleUpdate();
    void updatePlots();
    void updateAxes();
    void applyXRange(double lo, double hi, QCustomPlot* source);
    bool dataXRange(double& lo, double& hi) const;
    void updateHover();
    void updateRunLegend();
    void updateSkippedMarks();
    // "run-a", or "run-a (fp8)" when the shown runs differ in precision.
    QString runLabel(int run) const;
    bool panelLog(int panel) const { return log_y_ || panel == PanelLossScale; }

    std::span<const double> xOf(const Curve& c) const;
    std::span<const double> rawOf(const Curve& c) const;
    std::span<const double> drawnOf(const Curve& c) const;

    bool eventFilter(QObject* watched, QEvent* event) override;

    std::vector<RunState> runs_;
    std::vector<Curve> curves_;
    QString signature_;
    std::array<QCustomPlot*, PanelCount> plots_{};
    std::array<Hover, PanelCount> hover_{};
    std::array<QCPItemText*, PanelCount> empty_note_{};
    std::vector<QCPGraph*> skipped_marks_;  // per run: skipped steps on the loss-scale panel

    XAxisKind x_kind_ = XAxisKind::Step;
    bool log_y_ = false;
    double smoothing_ = 0.6;
    bool follow_live_ = true;
    double x_lo_ = 0.0, x_hi_ = 1.0;
    bool range_set_ = false;  // false until the first data arrives: then fit everything
    bool syncing_ = false;    // guards the x-range link between plots
    double hover_x_ = std::nan("");
    double last_update_ms_ = 0.0;
    QTimer update_timer_;

    QComboBox* x_combo_ = nullptr;
    QCheckBox* log_check_ = nullptr;
    QSlider* smooth_slider_ = nullptr;
    QLabel* smooth_value_ = nullptr;
    QCheckBox* follow_check_ = nullptr;
    QLabel* run_legend_ = nullptr;
    QGridLayout* grid_ = nullptr;
};

}  // namespace moe::views
