#pragma once
// Reads moe-prune's pruning.json (and the config.json beside it, for the MTP layers' names)
// into the pruning view's plain data.
#include <QDialog>
#include <QString>

#include "pruning_data.h"

namespace moe::views {
class PruningView;
}

namespace moe::workbench {

// `dir` is a pruned checkpoint folder (or the pruning.json itself). On failure returns kind
// None and sets *error to a message naming the file and what is wrong.
views::PruningData load_pruning_report(const QString& dir, QString* error);

// A window holding a PruningView over one report (Run > Open pruning report...).
class PruningWindow : public QDialog {
    Q_OBJECT
public:
    explicit PruningWindow(QWidget* parent = nullptr);
    bool open(const QString& dir);  // false (and a message box) when the report cannot be read
    views::PruningView* view() const { return view_; }

private:
    views::PruningView* view_ = nullptr;
};

}  // namespace moe::workbench
