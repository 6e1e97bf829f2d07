#include "workbench/run_browser.h"

#include <QFileDialog>
#include <QFileSystemModel>
#include <QHBoxLayout>
#include <QLabel>
#include <QListView>
#include <QPushButton>
#include <QVBoxLayout>

#include "elided_label.h"

namespace moe::workbench {

RunBrowser::RunBrowser(QWidget* parent) : QWidget(parent) {
    auto* top = new QVBoxLayout(this);
    auto* bar = new QHBoxLayout;
    folder_label_ = new views::ElidedLabel;
    folder_label_->setObjectName("runsFolder");
    auto* choose = new QPushButton(tr("Folder…"));
    choose->setObjectName("chooseRunsFolder");
    bar->addWidget(folder_label_, 1);
    bar->addWidget(choose);
    top->addLayout(bar);

    model_ = new QFileSystemModel(this);
    model_->setFilter(QDir::Files);
    model_->setNameFilters({"*.h5"});
    model_->setNameFilterDisables(false);  // hide, not grey, the other files
    view_ = new QListView;
    view_->setObjectName("runList");
    view_->setModel(model_);
    view_->setSelectionMode(QAbstractItemView::ExtendedSelection);
    top->addWidget(view_, 1);
    connect(view_->selectionModel(), &QItemSelectionModel::selectionChanged, this,
            [this] { emit selection_changed(selected_runs()); });
    auto* hint = new QLabel(tr("Select several runs (Ctrl/Shift) to overlay their curves."));
    hint->setWordWrap(true);
    hint->setEnabled(false);
    top->addWidget(hint);

    connect(choose, &QPushButton::clicked, this, [this] {
        const QString d = QFileDialog::getExistingDirectory(this, tr("Runs folder"), folder_);
        if (!d.isEmpty()) set_folder(d);
    });
}

void RunBrowser::set_folder(const QString& dir) {
    folder_ = dir;
    QDir().mkpath(dir);
    folder_label_->setText(QDir::toNativeSeparators(dir));
    view_->setRootIndex(model_->setRootPath(dir));
    emit folder_changed(dir);
}

QStringList RunBrowser::selected_runs() const {
    QStringList out;
    if (!view_->selectionModel()) return out;
    for (const QModelIndex& i : view_->selectionModel()->selectedIndexes()) out << model_->filePath(i);
    out.sort();
    return out;
}

void RunBrowser::select_runs(const QStringList& paths) {
    view_->selectionModel()->clearSelection();
    for (const QString& p : paths) {
        const QModelIndex i = model_->index(p);
        if (i.isValid()) view_->selectionModel()->select(i, QItemSelectionModel::Select);
    }
}

}  // namespace moe::workbench
