#pragma once
// ProjectForm: every setting of a Project as a form, grouped the way a researcher thinks about
// them (model shape, MoE, MLA, MTP, balancing, optimizer, data, logging, precision). Editors
// accept any value; the engine's own Project::validate() decides what is valid, and its
// ConfigError is shown next to the field it names. The form never keeps a second set of rules.
#include <QString>
#include <QWidget>

#include <functional>
#include <vector>

#include "store/project.h"

class QFormLayout;
class QLabel;
class QVBoxLayout;

namespace moe::workbench {

class ProjectForm : public QWidget {
    Q_OBJECT

public:
    explicit ProjectForm(QWidget* parent = nullptr);

    void set_project(const Project& project);
    // The project as edited. Fields whose text does not parse keep their last good value and
    // are reported by error().
    Project project() const { return project_; }
    bool valid() const { return error_.isEmpty(); }
    QString error() const { return error_; }          // "" when valid
    QString error_field() const { return error_field_; }

    // The editor of a field ("hidden_size", "training.steps"), for tests and focus.
    QWidget* editor(const QString& field) const;

signals:
    void changed();  // after every edit, once validated

private:
    struct Binding {
        QString field;  // the name ConfigError::field() uses
        QWidget* editor = nullptr;
        QLabel* error = nullptr;
        std::function<void()> load;  // project_ -> editor
        bool parse_error = false;
    };

    QFormLayout* add_group(const QString& title);
    void add_int(QFormLayout* form, const QString& label, const QString& field,
                 std::function<int64_t&(Project&)> ref, const QString& tip = {});
    void add_real(QFormLayout* form, const QString& label, const QString& field,
                  std::function<double&(Project&)> ref, const QString& tip = {});
    void add_choice(QFormLayout* form, const QString& label, const QString& field,
                    const QStringList& choices, std::function<std::string&(Project&)> ref,
                    const QString& tip = {});
    void add_text(QFormLayout* form, const QString& label, const QString& field,
                  std::function<std::string&(Project&)> ref, const QString& tip = {});
    void add_bool(QFormLayout* form, const QString& label, const QString& field,
                  std::function<bool&(Project&)> ref, const QString& tip = {});
    void add_row(QFormLayout* form, const QString& label, Binding b, const QString& tip);
    void edited();
    void validate();

    Project project_;
    std::vector<Binding> bindings_;
    QVBoxLayout* groups_ = nullptr;
    QLabel* summary_error_ = nullptr;
    QString error_, error_field_;
    bool loading_ = false;
};

}  // namespace moe::workbench
