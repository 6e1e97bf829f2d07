#include "communication_view.h"

#include <QLabel>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include <functional>

#include "colormap.h"
#include "heatmap_plot.h"
#include "plot_export.h"

namespace moe::views {

namespace {

QCustomPlot* make_plot(const QString& title, const QString& y_label) {
    auto* plot = new QCustomPlot;
    style_training_plot(plot, title, y_label);
    plot->legend->setVisible(true);
    plot->legend->setFont(QFont(plot->font().family(), 8));
    plot->setMinimumHeight(200);
    return plot;
}

// One series per rank of a column, optionally scaled (bytes to MB).
std::vector<Series> per_rank(const CommunicationData& d, const std::vector<double>& column,
                             const QString& what, double scale = 1.0) {
    std::vector<Series> out;
    for (int r = 0; r < d.ranks; ++r) {
        Series s{QString("%1, rank %2").arg(what).arg(r), d.steps,
                 std::vector<double>(d.steps.size())};
        for (int i = 0; i < d.rows(); ++i) s.y[size_t(i)] = d.at(column, i, r) * scale;
        out.push_back(std::move(s));
    }
    return out;
}

void draw(QCustomPlot* plot, const std::vector<Series>& series, int ranks) {
    plot->clearGraphs();
    for (size_t i = 0; i < series.size(); ++i) {
        QCPGraph* g = plot->addGraph();
        g->setName(series[i].name);
        // A color per rank; the second kind of series of a plot dashed.
        QPen pen(category_color(int(i) % std::max(ranks, 1)), 1.6);
        if (int(i) >= ranks) pen.setStyle(Qt::DashLine);
        g->setPen(pen);
        g->setData(QVector<double>(series[i].x.begin(), series[i].x.end()),
                   QVector<double>(series[i].y.begin(), series[i].y.end()), true);
        g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCircle, 3));
    }
    plot->rescaleAxes();
    plot->yAxis->setRange(0, plot->yAxis->range().upper * 1.15);  // room above the top line
    plot->replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace

CommunicationView::CommunicationView(QWidget* parent) : QWidget(parent) {
    auto* root = new QVBoxLayout(this);
    note_ = new QLabel;
    note_->setWordWrap(true);
    root->addWidget(note_);
    bytes_plot_ = make_plot("Bytes sent per step", "MB");
    time_plot_ = make_plot("Time per step", "seconds");
    tokens_plot_ = make_plot("Token copies sent to other ranks' experts", "tokens per step");
    bytes_plot_->setToolTip(
        "Solid: gradient sums (all-reduce), dashed: expert dispatch and combine (all-to-all), "
        "forward and backward, per training step since the previous logged row");
    time_plot_->setToolTip(
        "Solid: the rank's step time, dashed: its time in collectives (waiting for slower "
        "ranks included)");
    for (QCustomPlot* p : {bytes_plot_, time_plot_, tokens_plot_}) root->addWidget(p, 1);
    add_export_actions(this, bytes_plot_, [this] {
        CsvContent c{"step", per_rank(data_, data_.all_reduce_bytes, "all-reduce MB", 1e-6), {}};
        for (auto& s : per_rank(data_, data_.all_to_all_bytes, "all-to-all MB", 1e-6))
            c.series.push_back(std::move(s));
        return c;
    });
    add_export_actions(this, time_plot_, [this] {
        CsvContent c{"step", per_rank(data_, data_.step_s, "step s"), {}};
        for (auto& s : per_rank(data_, data_.all_reduce_s, "all-reduce s"))
            c.series.push_back(std::move(s));
        for (auto& s : per_rank(data_, data_.all_to_all_s, "all-to-all s"))
            c.series.push_back(std::move(s));
        return c;
    });
    add_export_actions(this, tokens_plot_, [this] {
        return CsvContent{"step", per_rank(data_, data_.tokens_sent, "sent"), {}};
    });
    setData({});
}

void CommunicationView::setData(CommunicationData data) {
    data_ = data.valid() ? std::move(data) : CommunicationData{};
    const bool several = data_.ranks > 1 || !data_.layout.isEmpty();
    if (data_.rows() == 0) {
        note_->setText(
            several
                ? tr("%1 ranks (%2): no communication figures yet; a row comes with every logged "
                     "step.")
                      .arg(data_.ranks)
                      .arg(data_.layout)
                : tr("This run has one process: nothing is communicated. Several processes: "
                     "<tt>mpirun -np N moe-train PROJECT --parallel ep=E,dp=D</tt> "
                     "(docs/parallelism.md)."));
    } else {
        note_->setText(
            tr("%1 ranks (%2). Per training step, each rank: what it sent and how long it spent "
               "sending and waiting, against its step time.")
                .arg(data_.ranks)
                .arg(data_.layout));
    }
    if (data_.rows() == 0) {
        for (QCustomPlot* p : {bytes_plot_, time_plot_, tokens_plot_}) {
            p->clearGraphs();
            p->replot(QCustomPlot::rpQueuedReplot);
        }
        return;
    }
    std::vector<Series> bytes = per_rank(data_, data_.all_reduce_bytes, "all-reduce", 1e-6);
    for (auto& s : per_rank(data_, data_.all_to_all_bytes, "all-to-all", 1e-6))
        bytes.push_back(std::move(s));
    draw(bytes_plot_, bytes, data_.ranks);
    // Time in collectives: the sum of both kinds.
    CommunicationData summed = data_;
    for (size_t i = 0; i < summed.all_reduce_s.size(); ++i)
        summed.all_reduce_s[i] += summed.all_to_all_s[i];
    std::vector<Series> time = per_rank(data_, data_.step_s, "step");
    for (auto& s : per_rank(summed, summed.all_reduce_s, "communication"))
        time.push_back(std::move(s));
    draw(time_plot_, time, data_.ranks);
    draw(tokens_plot_, per_rank(data_, data_.tokens_sent, "sent"), data_.ranks);
}

}  // namespace moe::views
