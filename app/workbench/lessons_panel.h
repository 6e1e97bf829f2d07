#pragma once
// LessonsPanel: the Lessons dock. Pick a lesson, read each step, go Next / Back (Page Down /
// Page Up, what a presenter's clicker sends); the LessonRunner does each step's action and
// highlight. Lesson files that do not load are listed with the message naming file, step and
// field.
#include <QWidget>

#include <string>
#include <vector>

#include "workbench/lesson.h"

class QComboBox;
class QLabel;
class QPushButton;
class QTextBrowser;

namespace moe::views {
class ElidedLabel;
}

namespace moe::workbench {

class LessonRunner;

class LessonsPanel : public QWidget {
    Q_OBJECT
public:
    explicit LessonsPanel(LessonRunner* runner, QWidget* parent = nullptr);

    // Reads every lesson in dir (presets from presets_dir).
    void load(const QString& dir, const QString& presets_dir);
    void set_lessons(std::vector<Lesson> lessons, const std::vector<std::string>& errors);
    const std::vector<Lesson>& lessons() const { return lessons_; }
    QStringList load_errors() const { return errors_; }
    // Starts the lesson with this id (file stem); false when there is none.
    bool start(const QString& id);

    QPushButton* next_button() const { return next_; }
    QPushButton* back_button() const { return back_; }
    QPushButton* start_button() const { return start_; }
    QComboBox* lesson_box() const { return box_; }
    QTextBrowser* text_view() const { return text_; }
    QLabel* status_label() const { return status_; }
    QLabel* problem_label() const { return problem_; }

private:
    void show_step(int step);
    void update_buttons();

    LessonRunner* runner_;
    std::vector<Lesson> lessons_;
    QStringList errors_;
    QComboBox* box_ = nullptr;
    QPushButton *start_ = nullptr, *next_ = nullptr, *back_ = nullptr;
    QLabel *summary_ = nullptr, *step_title_ = nullptr, *status_ = nullptr, *problem_ = nullptr,
           *errors_label_ = nullptr;
    QTextBrowser* text_ = nullptr;
    views::ElidedLabel* runs_folder_ = nullptr;
};

}  // namespace moe::workbench
