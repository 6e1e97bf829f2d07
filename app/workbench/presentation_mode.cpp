#include "workbench/presentation_mode.h"

#include <QAction>
#include <QApplication>
#include <QDockWidget>
#include <QStatusBar>
#include <QToolBar>

#include "plot_style.h"
#include "workbench/main_window.h"

namespace moe::workbench {

PresentationMode::PresentationMode(MainWindow* window) : QObject(window), window_(window) {
    toggle_ = new QAction(tr("Presentation"), window);
    toggle_->setObjectName("actionPresentation");
    toggle_->setCheckable(true);
    toggle_->setShortcut(Qt::Key_F11);
    toggle_->setToolTip(tr("Full screen, one view, large text and lines, for a projector (F11)"));
    connect(toggle_, &QAction::toggled, this, &PresentationMode::set_active);
    window->addAction(toggle_);  // its shortcut works with the menu bar hidden too

    auto add = [&](const QString& name, const QKeySequence& key, auto slot) {
        auto* a = new QAction(name, window);
        a->setShortcut(key);
        a->setShortcutContext(Qt::WindowShortcut);
        connect(a, &QAction::triggered, this, slot);
        window->addAction(a);
        return a;
    };
    add(tr("Next view"), QKeySequence(Qt::CTRL | Qt::Key_PageDown), &PresentationMode::next_view)
        ->setObjectName("actionNextView");
    add(tr("Previous view"), QKeySequence(Qt::CTRL | Qt::Key_PageUp),
        &PresentationMode::previous_view)
        ->setObjectName("actionPreviousView");
    for (int i = 0; i < int(view_docks().size()); ++i) {
        auto* a = new QAction(window);
        a->setShortcut(QKeySequence(Qt::ALT | Qt::Key(Qt::Key_1 + i)));
        connect(a, &QAction::triggered, this, [this, i] { show_view(i); });
        window->addAction(a);
    }
}

const QStringList& PresentationMode::view_docks() {
    static const QStringList docks = {"curvesDock", "expertLoadDock", "routingDock", "sparsityDock",
                                      "quantDock",  "commDock",       "modelDock"};
    return docks;
}

QString PresentationMode::current_view() const {
    // The tabified analysis dock that is on top: visible and not hidden behind another tab.
    for (const QString& name : view_docks()) {
        auto* d = window_->findChild<QDockWidget*>(name);
        if (d && d->isVisible() && !d->visibleRegion().isEmpty()) return name;
    }
    for (const QString& name : view_docks()) {
        auto* d = window_->findChild<QDockWidget*>(name);
        if (d && d->isVisible()) return name;
    }
    return {};
}

void PresentationMode::show_view(int index) {
    if (index < 0 || index >= int(view_docks().size())) return;
    window_->raise_view(view_docks()[index]);
}

void PresentationMode::next_view() {
    const int i = int(view_docks().indexOf(current_view()));
    show_view((i + 1) % int(view_docks().size()));
}

void PresentationMode::previous_view() {
    const int i = int(view_docks().indexOf(current_view()));
    const int n = int(view_docks().size());
    show_view(((i < 0 ? 0 : i) - 1 + n) % n);
}

void PresentationMode::set_active(bool on) {
    if (on == active_) return;
    const QString view = current_view();
    if (on) {
        saved_state_ = window_->saveState();
        saved_geometry_ = window_->saveGeometry();
        was_fullscreen_ = window_->isFullScreen();
        was_maximized_ = window_->isMaximized();
        saved_font_ = QApplication::font();
        active_ = true;
        for (const char* name : {"launcherDock", "browserDock", "logDock"})
            if (auto* d = window_->findChild<QDockWidget*>(name)) d->hide();
        if (auto* d = window_->findChild<QDockWidget*>("lessonsDock"))
            d->setVisible(window_->lesson_open());
        for (QToolBar* t : window_->findChildren<QToolBar*>()) t->hide();
        QFont f = saved_font_;
        f.setPointSizeF(std::max(16.0, f.pointSizeF() * 1.5));
        QApplication::setFont(f);
        views::apply_plot_style_all(window_, views::PlotStyle::presentation());
        window_->showFullScreen();
    } else {
        active_ = false;
        QApplication::setFont(saved_font_);
        views::apply_plot_style_all(window_, views::PlotStyle::normal());
        if (!was_fullscreen_) window_->showNormal();
        if (was_maximized_) window_->showMaximized();
        window_->restoreGeometry(saved_geometry_);
        window_->restoreState(saved_state_);
    }
    if (!view.isEmpty()) window_->raise_view(view);
    if (toggle_->isChecked() != on) toggle_->setChecked(on);
    emit toggled(on);
}

}  // namespace moe::workbench
