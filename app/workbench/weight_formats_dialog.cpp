#include "workbench/weight_formats_dialog.h"

#include <QHeaderView>
#include <QLabel>
#include <QTableWidget>
#include <QVBoxLayout>
#include <QtConcurrent/QtConcurrentRun>

#include "inspect/weight_quantization.h"

namespace moe::workbench {

WeightFormatsDialog::WeightFormatsDialog(QWidget* parent) : QDialog(parent) {
    setWindowTitle(tr("Quantized weights"));
    setObjectName("weightFormatsDialog");
    auto* layout = new QVBoxLayout(this);
    status_ = new QLabel(tr("Choose a checkpoint (Run > Evaluate quantized weights…)."));
    status_->setObjectName("weightFormatsStatus");
    status_->setWordWrap(true);
    layout->addWidget(status_);
    table_ = new QTableWidget(0, 7);
    table_->setObjectName("weightFormatsTable");
    table_->setHorizontalHeaderLabels({tr("Weights"), tr("Bits / weight"), tr("Weight error"),
                                       tr("Val loss"), tr("Change"), tr("Routing unchanged"),
                                       tr("Same first expert")});
    table_->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
    table_->verticalHeader()->setVisible(false);
    table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
    table_->setToolTip(tr("Every projection weight cast to the format (embedding, head, gate and norms "
                          "stay fp32), the validation loss measured, and each token's top-k experts on the "
                          "probe text compared with the fp32 model"));
    layout->addWidget(table_, 1);
    resize(760, 300);
    connect(&watcher_, &QFutureWatcher<Outcome>::finished, this, &WeightFormatsDialog::show_outcome);
}

void WeightFormatsDialog::evaluate(const QString& checkpoint_dir) {
    if (busy()) return;
    checkpoint_ = checkpoint_dir;
    table_->setRowCount(0);
    status_->setText(tr("Evaluating %1 in fp32, fp8, int8, int4 (group 128) and int4…").arg(checkpoint_dir));
    show();
    raise();
    const std::string dir = checkpoint_dir.toStdString();
    watcher_.setFuture(QtConcurrent::run([dir]() {
        Outcome o;
        try {
            // One thread: the GUI and a training run may share the cores.
            const CheckpointWeightFormats res =
                evaluate_checkpoint_weight_formats(dir, default_weight_formats(), 1);
            o.step = res.step;
            o.eval_batches = res.eval_batches;
            o.probe_tokens = res.probe_tokens;
            for (const WeightFormatResult& r : res.results)
                o.rows.push_back({QString::fromStdString(r.format), QString::number(r.bits_per_weight, 'f', 2),
                                  QString::number(100.0 * r.weight_rel_error, 'f', 2) + "%",
                                  QString::number(r.val_loss, 'f', 4),
                                  QString::asprintf("%+.2f%%", 100.0 * r.loss_change),
                                  QString::number(100.0 * r.routing.exact, 'f', 1) + "%",
                                  QString::number(100.0 * r.routing.top1, 'f', 1) + "%"});
        } catch (const std::exception& e) {
            o.error = e.what();
        }
        return o;
    }));
}

void WeightFormatsDialog::show_outcome() {
    const Outcome o = watcher_.result();
    if (!o.error.empty()) {
        status_->setText(tr("Could not evaluate %1: %2").arg(checkpoint_, QString::fromStdString(o.error)));
    } else {
        status_->setText(tr("%1 (step %2): validation loss over %3 batches, routing on %4 probe tokens, "
                            "against the fp32 weights.")
                             .arg(checkpoint_)
                             .arg(o.step)
                             .arg(o.eval_batches)
                             .arg(o.probe_tokens));
        table_->setRowCount(int(o.rows.size()));
        for (int r = 0; r < int(o.rows.size()); ++r)
            for (int c = 0; c < int(o.rows[size_t(r)].size()); ++c) {
                auto* item = new QTableWidgetItem(o.rows[size_t(r)][size_t(c)]);
                if (c > 0) item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
                table_->setItem(r, c, item);
            }
    }
    emit finished_evaluation();
}

}  // namespace moe::workbench
