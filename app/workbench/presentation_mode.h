#pragma once
// PresentationMode (View > Presentation, F11): the window full screen with one view filling it,
// the launcher, runs and log hidden (the Lessons dock stays while a lesson is open), larger
// fonts everywhere and larger text and thicker lines in every plot. Ctrl+Page Down / Ctrl+Page
// Up go to the next / previous view, Alt+1..7 to a view directly; leaving restores the window
// exactly as it was.
#include <QByteArray>
#include <QFont>
#include <QObject>
#include <QStringList>

class QAction;

namespace moe::workbench {

class MainWindow;

class PresentationMode : public QObject {
    Q_OBJECT
public:
    explicit PresentationMode(MainWindow* window);

    bool active() const { return active_; }
    QAction* toggle_action() const { return toggle_; }
    // The analysis docks in navigation order, and the one shown now.
    static const QStringList& view_docks();
    QString current_view() const;

public slots:
    void set_active(bool on);
    void next_view();
    void previous_view();
    void show_view(int index);

signals:
    void toggled(bool on);

private:
    MainWindow* window_;
    QAction* toggle_ = nullptr;
    bool active_ = false;
    QByteArray saved_state_, saved_geometry_;
    bool was_fullscreen_ = false, was_maximized_ = false;
    QFont saved_font_;
};

}  // namespace moe::workbench
