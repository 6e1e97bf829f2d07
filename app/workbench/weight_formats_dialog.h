#pragma once
// "Evaluate quantized weights": a checkpoint's validation loss and routing with its projection
// weights in fp8 / int8 / int4 (engine/inspect/weight_quantization.h), as a table. The engine
// runs off the GUI thread; the dialog is not modal, so training and the views go on meanwhile.
#include <QDialog>
#include <QFutureWatcher>
#include <QString>

#include <string>
#include <vector>

class QLabel;
class QTableWidget;

namespace moe::workbench {

class WeightFormatsDialog : public QDialog {
    Q_OBJECT
public:
    explicit WeightFormatsDialog(QWidget* parent = nullptr);

    // Starts the evaluation of a step-* checkpoint folder (ignored while one runs).
    void evaluate(const QString& checkpoint_dir);
    bool busy() const { return watcher_.isRunning(); }
    QTableWidget* table() const { return table_; }
    QLabel* status() const { return status_; }

signals:
    void finished_evaluation();

private:
    struct Outcome {
        std::string error;
        long long step = 0, eval_batches = 0, probe_tokens = 0;
        std::vector<std::vector<QString>> rows;
    };
    void show_outcome();

    QLabel* status_ = nullptr;
    QTableWidget* table_ = nullptr;
    QString checkpoint_;
    QFutureWatcher<Outcome> watcher_;
};

}  // namespace moe::workbench
