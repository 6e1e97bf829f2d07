#pragma once
// CommunicationView: how the ranks of a run of several processes spend a training step
// (docs/parallelism.md): bytes each rank puts into gradient sums and expert all-to-alls, the
// time it spends there against its step time, and the token copies it sends to other ranks'
// experts; one line per rank. A run of one process shows a note instead.
#include <QWidget>

#include "communication_data.h"

class QCustomPlot;
class QLabel;

namespace moe::views {

class CommunicationView : public QWidget {
    Q_OBJECT
public:
    explicit CommunicationView(QWidget* parent = nullptr);

    void setData(CommunicationData data);
    const CommunicationData& data() const { return data_; }

    QLabel* noteLabel() const { return note_; }
    QCustomPlot* bytesPlot() const { return bytes_plot_; }
    QCustomPlot* timePlot() const { return time_plot_; }
    QCustomPlot* tokensPlot() const { return tokens_plot_; }

private:
    CommunicationData data_;
    QLabel* note_ = nullptr;
    QCustomPlot *bytes_plot_ = nullptr, *time_plot_ = nullptr, *tokens_plot_ = nullptr;
};

}  // namespace moe::views
