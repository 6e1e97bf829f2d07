#include "workbench/lessons_panel.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QStyle>
#include <QTextBrowser>
#include <QVBoxLayout>

#include "elided_label.h"
#include "workbench/lesson_runner.h"

namespace moe::workbench {

LessonsPanel::LessonsPanel(LessonRunner* runner, QWidget* parent)
    : QWidget(parent), runner_(runner) {
    auto* top = new QVBoxLayout(this);
    auto* pick = new QHBoxLayout;
    box_ = new QComboBox;
    box_->setObjectName("lessonBox");
    box_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    box_->setMinimumContentsLength(16);
    start_ = new QPushButton(tr("Start"));
    start_->setObjectName("lessonStart");
    start_->setToolTip(tr("Start the lesson at its first step"));
    pick->addWidget(box_, 1);
    pick->addWidget(start_);
    top->addLayout(pick);

    summary_ = new QLabel;
    summary_->setObjectName("lessonSummary");
    summary_->setWordWrap(true);
    summary_->setTextFormat(Qt::RichText);
    top->addWidget(summary_);

    step_title_ = new QLabel;
    step_title_->setObjectName("lessonStepTitle");
    step_title_->setWordWrap(true);
    QFont f = step_title_->font();
    f.setBold(true);
    f.setPointSizeF(f.pointSizeF() * 1.15);
    step_title_->setFont(f);
    top->addWidget(step_title_);

    text_ = new QTextBrowser;
    text_->setObjectName("lessonText");
    text_->setOpenExternalLinks(true);
    top->addWidget(text_, 1);

    status_ = new QLabel;
    status_->setObjectName("lessonStatus");
    status_->setWordWrap(true);
    status_->setStyleSheet("color: #555; font-style: italic;");
    top->addWidget(status_);
    problem_ = new QLabel;
    problem_->setObjectName("lessonProblem");
    problem_->setWordWrap(true);
    problem_->setStyleSheet("color: #b00020;");
    problem_->hide();
    top->addWidget(problem_);

    auto* nav = new QHBoxLayout;
    back_ = new QPushButton(style()->standardIcon(QStyle::SP_ArrowBack), tr("Back"));
    back_->setObjectName("lessonBack");
    back_->setToolTip(tr("The previous step (Page Up)"));
    next_ = new QPushButton(style()->standardIcon(QStyle::SP_ArrowForward), tr("Next"));
    next_->setObjectName("lessonNext");
    next_->setToolTip(tr("The next step (Page Down)"));
    nav->addWidget(back_);
    nav->addStretch(1);
    nav->addWidget(next_);
    top->addLayout(nav);

    errors_label_ = new QLabel;
    errors_label_->setObjectName("lessonErrors");
    errors_label_->setWordWrap(true);
    errors_label_->setStyleSheet("color: #b00020;");
    errors_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    errors_label_->hide();
    top->addWidget(errors_label_);
    runs_folder_ = new views::ElidedLabel;
    runs_folder_->setEnabled(false);
    top->addWidget(runs_folder_);

    connect(start_, &QPushButton::clicked, this, [this] {
        const int i = box_->currentIndex();
        if (i >= 0 && i < int(lessons_.size())) runner_->open(lessons_[size_t(i)]);
    });
    connect(box_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this](int i) {
        if (i < 0 || i >= int(lessons_.size())) return summary_->clear();
        const Lesson& l = lessons_[size_t(i)];
        QString s = QString::fromStdString(l.summary);
        if (l.minutes > 0)
            s += tr(" <i>(%1 min of training the first time, on 2 CPU cores)</i>").arg(l.minutes);
        summary_->setText(s);
    });
    connect(next_, &QPushButton::clicked, runner_, &LessonRunner::next);
    connect(back_, &QPushButton::clicked, runner_, &LessonRunner::back);
    connect(runner_, &LessonRunner::step_shown, this, &LessonsPanel::show_step);
    connect(runner_, &LessonRunner::status_changed, this, [this](const QString& s) {
        status_->setText(s);
        status_->setVisible(!s.isEmpty());
    });
    connect(runner_, &LessonRunner::step_ready, this,
            [this](int, bool found, const QString& missing) {
                problem_->setVisible(!found);
                problem_->setText(found ? QString() : tr("Not found in the view: %1").arg(missing));
            });
    connect(runner_, &LessonRunner::action_failed, this, [this](int, const QString& message) {
        problem_->setVisible(true);
        problem_->setText(message);
    });
    status_->hide();
    update_buttons();
}

void LessonsPanel::load(const QString& dir, const QString& presets_dir) {
    std::vector<std::string> errors;
    std::vector<Lesson> lessons =
        load_lessons(dir.toStdString(), presets_dir.toStdString(), &errors);
    set_lessons(std::move(lessons), errors);
    runs_folder_->setText(tr("Runs kept in %1").arg(runner_->runs_root()));
}

void LessonsPanel::set_lessons(std::vector<Lesson> lessons,
                               const std::vector<std::string>& errors) {
    lessons_ = std::move(lessons);
    errors_.clear();
    for (const std::string& e : errors) errors_ << QString::fromStdString(e);
    box_->clear();
    for (const Lesson& l : lessons_)
        box_->addItem(QString::fromStdString(l.title), QString::fromStdString(l.id));
    errors_label_->setVisible(!errors_.isEmpty());
    errors_label_->setText(tr("Lessons not loaded:\n%1").arg(errors_.join("\n")));
    update_buttons();
}

bool LessonsPanel::start(const QString& id) {
    const int i = box_->findData(id);
    if (i < 0) return false;
    box_->setCurrentIndex(i);
    start_->click();
    return true;
}

void LessonsPanel::show_step(int step) {
    const Lesson* l = runner_->lesson();
    if (!l || step < 0 || step >= int(l->steps.size())) return;
    const LessonStep& s = l->steps[size_t(step)];
    step_title_->setText(tr("%1 · step %2 of %3: %4")
                             .arg(QString::fromStdString(l->title))
                             .arg(step + 1)
                             .arg(l->steps.size())
                             .arg(QString::fromStdString(s.title)));
    text_->setHtml(QString::fromStdString(s.text));
    problem_->hide();
    update_buttons();
}

void LessonsPanel::update_buttons() {
    const bool open = runner_->lesson() != nullptr;
    start_->setEnabled(!lessons_.empty());
    back_->setEnabled(open && runner_->step() > 0);
    next_->setEnabled(open && runner_->step() + 1 < runner_->step_count());
}

}  // namespace moe::workbench
