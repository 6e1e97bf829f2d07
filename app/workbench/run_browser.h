#pragma once
// RunBrowser: the run files (*.h5) of a folder. Selecting several overlays them in the curves.
#include <QStringList>
#include <QWidget>

class QFileSystemModel;
namespace moe::views {
class ElidedLabel;
}
class QListView;

namespace moe::workbench {

class RunBrowser : public QWidget {
    Q_OBJECT

public:
    explicit RunBrowser(QWidget* parent = nullptr);

    void set_folder(const QString& dir);
    QString folder() const { return folder_; }
    QStringList selected_runs() const;
    // Selects these files (when they are in the folder), replacing the selection.
    void select_runs(const QStringList& paths);
    QListView* view() const { return view_; }

signals:
    void selection_changed(const QStringList& paths);
    void folder_changed(const QString& dir);

private:
    QFileSystemModel* model_ = nullptr;
    QListView* view_ = nullptr;
    views::ElidedLabel* folder_label_ = nullptr;
    QString folder_;
};

}  // namespace moe::workbench
