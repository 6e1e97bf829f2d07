#pragma once
// Sparsity at a glance: which experts each token chose (routing mask), the causal attention
// pattern of one layer and head (with the sliding-window mask beside it when the model has a
// window), and how sparse routing and FFN activations get over training.
#include "sparsity_data.h"

#include <QWidget>

class QCustomPlot;
class QCPItemText;
class QGridLayout;
class QLabel;
class QSpinBox;
class QWidget;

namespace moe::views {

class HeatmapPlot;

class SparsityView : public QWidget {
    Q_OBJECT
public:
    explicit SparsityView(QWidget *parent = nullptr);

    void setRoutingMask(RoutingMaskData data);
    void setAttention(AttentionData data);
    void setSparsityOverTraining(SparsityOverTraining data);

    // A note drawn across the near-zero panel (e.g. why it is empty); empty hides it.
    void setNearZeroNote(const QString &note);
    QString nearZeroNote() const;

    void setAttentionHead(int layer, int head);
    int attentionLayer() const { return layer_; }
    int attentionHead() const { return head_; }

    // Token labels are written on the axes up to this many tokens; beyond, token indices.
    static constexpr int kMaxTokenLabels = 48;

    HeatmapPlot *maskPlot() const { return mask_plot_; }
    HeatmapPlot *attentionPlot() const { return attention_plot_; }
    // The sliding-window mask (query x key, one of the three values below) and its caption;
    // shown only when AttentionData::window > 0.
    HeatmapPlot *windowPlot() const { return window_plot_; }
    QWidget *windowPanel() const { return window_panel_; }
    QString windowCaption() const;
    static constexpr double kVisible = 0, kOutsideWindow = 1, kFuture = 2;
    QCustomPlot *neverChosenPlot() const { return never_plot_; }
    QCustomPlot *nearZeroPlot() const { return near_zero_plot_; }

    // How token text appears on an axis: spaces and newlines made visible, long ones cut.
    static QString displayToken(const QString &token);

private:
    void updateAttention();
    void updateWindowMask();
    void fillLines(QCustomPlot *plot, const std::vector<Series> &series);

    RoutingMaskData mask_;
    AttentionData attention_;
    SparsityOverTraining over_training_;
    int layer_ = 0;
    int head_ = 0;

    QSpinBox *layer_spin_ = nullptr;
    QSpinBox *head_spin_ = nullptr;
    HeatmapPlot *mask_plot_ = nullptr;
    HeatmapPlot *attention_plot_ = nullptr;
    QWidget *window_panel_ = nullptr;
    HeatmapPlot *window_plot_ = nullptr;
    QLabel *window_caption_ = nullptr;
    QGridLayout *grid_ = nullptr;
    QCustomPlot *never_plot_ = nullptr;
    QCustomPlot *near_zero_plot_ = nullptr;
    QCPItemText *near_zero_note_ = nullptr;
};

}  // namespace moe::views
