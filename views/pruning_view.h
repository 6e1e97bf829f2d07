#pragma once
// What a pruning removed and why. Experts: a layers x experts heatmap of the chosen criterion
// (load, gate mass or masked-loss increase) with the removed experts crossed out, and the chosen
// layer's experts ranked in a bar chart, removed ones in orange. Channels: the chosen layer's
// experts x hidden channels saliency heatmap (log scale, each row sorted from the most to the
// least salient channel, a line where the removed ones begin) and the summed saliency per FFN.
#include "pruning_data.h"

#include <QWidget>

class QComboBox;
class QCustomPlot;
class QCPBars;
class QLabel;

namespace moe::views {

class HeatmapPlot;

class PruningView : public QWidget {
    Q_OBJECT
public:
    explicit PruningView(QWidget* parent = nullptr);

    void setData(PruningData data);
    const PruningData& data() const { return data_; }

    void setLayer(int index);  // index into the data's layers
    int layer() const { return layer_; }
    void setCriterion(const QString& criterion);  // experts: which score the plots show
    QString criterion() const { return criterion_; }

    HeatmapPlot* heatmap() const { return heatmap_; }
    QCustomPlot* barPlot() const { return bar_plot_; }
    QCPBars* keptBars() const { return kept_bars_; }
    QCPBars* removedBars() const { return removed_bars_; }
    QLabel* summaryLabel() const { return summary_; }

private:
    void refresh();
    void showExperts();
    void showChannels();

    PruningData data_;
    int layer_ = 0;
    QString criterion_;

    QLabel* summary_ = nullptr;
    QComboBox* layer_box_ = nullptr;
    QComboBox* criterion_box_ = nullptr;
    QLabel* criterion_text_ = nullptr;  // the score box and its label show for experts only
    HeatmapPlot* heatmap_ = nullptr;
    QCustomPlot* bar_plot_ = nullptr;
    QCPBars* kept_bars_ = nullptr;
    QCPBars* removed_bars_ = nullptr;
};

}  // namespace moe::views
