#include "workbench/run_launcher.h"

#include <QLineEdit>

#include "parallel/parallel_layout.h"

#include <QComboBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QPushButton>
#include <QScrollArea>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QThread>
#include <QVBoxLayout>

#include "backend_factory.h"
#include "core/driver_gpus.h"
#include "model/summary.h"
#include "workbench/project_form.h"

namespace moe::workbench {

namespace {

// NVIDIA GPUs the driver reports (Linux: one folder per GPU). Listed so users see them, greyed
// because this build cannot train on them.
QStringList nvidia_gpus() {
    QStringList out;
    for (const std::string& gpu : moe::driver_gpus()) out << QString::fromStdString(gpu);
    return out;
}

QString qs(const std::string& s) { return QString::fromStdString(s); }

}  // namespace

RunLauncher::RunLauncher(QWidget* parent) : QWidget(parent) {
    auto* top = new QVBoxLayout(this);

    auto* source = new QHBoxLayout;
    presets_ = new QComboBox;
    presets_->setObjectName("presets");
    presets_->setToolTip(tr("Presets from the projects folder"));
    auto* open = new QPushButton(tr("Open…"));
    open->setObjectName("openProject");
    source->addWidget(new QLabel(tr("Preset")));
    source->addWidget(presets_, 1);
    source->addWidget(open);
    top->addLayout(source);

    summary_ = new QLabel;
    summary_->setObjectName("modelSummary");
    summary_->setTextFormat(Qt::RichText);
    summary_->setWordWrap(true);
    // Three lines whether it shows the summary or the hint, so the form does not jump.
    summary_->setMinimumHeight(summary_->fontMetrics().lineSpacing() * 3 + 4);
    summary_->setAlignment(Qt::AlignLeft | Qt::AlignTop);
    top->addWidget(summary_);

    form_ = new ProjectForm;
    auto* scroll = new QScrollArea;
    scroll->setWidget(form_);
    scroll->setWidgetResizable(true);
    scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    top->addWidget(scroll, 1);

    auto* where = new QGroupBox(tr("Where it runs"));
    auto* wf = new QFormLayout(where);
    device_ = new QComboBox;
    device_->setObjectName("device");
    // This computer's CPU and every GPU the CUDA backend can use (app/backend_factory.h).
    std::string gpu_problem;
    const std::vector<moe::app::DeviceChoice> local = moe::app::available_devices(&gpu_problem);
    for (const moe::app::DeviceChoice& d : local)
        device_->addItem(tr("This computer — %1").arg(qs(d.label)), QString("local:%1").arg(qs(d.id)));
    local_devices_ = device_->count();
    device_->setToolTip(tr("Where the run trains: this computer's CPU or GPUs, or a moe-worker's (File > "
                           "Connect to engine…)"));
    wf->addRow(tr("Device"), device_);
    connect(device_, &QComboBox::currentIndexChanged, this, [this] {
        update_processes();
        update_start();
        emit device_changed(remote_selected());
    });
    // Several processes on a worker: N GPUs (one rank each), or CPU processes.
    processes_ = new QComboBox;
    processes_->setObjectName("processes");
    processes_->setToolTip(tr("Train as several processes on the worker (mpirun): one per GPU on a GPU device"));
    layout_ = new QLineEdit;
    layout_->setObjectName("layout");
    layout_->setToolTip(tr("How the processes share the run: ep=E splits every MoE layer's experts over E of them, "
                           "dp=D gives D groups their own slices of the batch (E x D = processes); zero=1 shards "
                           "the AdamW state (docs/parallelism.md)"));
    processes_label_ = new QLabel(tr("Processes"));
    layout_label_ = new QLabel(tr("Layout"));
    wf->addRow(processes_label_, processes_);
    wf->addRow(layout_label_, layout_);
    connect(processes_, &QComboBox::currentIndexChanged, this, [this] {
        const int n = processes_->currentData().toInt();
        layout_->setText(n > 1 ? QString("ep=1,dp=%1").arg(n) : QString());
        layout_->setVisible(n > 1);
        layout_label_->setVisible(n > 1);
        update_start();
    });
    connect(layout_, &QLineEdit::textChanged, this, [this] { update_start(); });
    threads_ = new QSpinBox;
    threads_->setObjectName("threads");
    threads_->setRange(1, std::max(1, QThread::idealThreadCount()));
    threads_->setValue(std::max(1, QThread::idealThreadCount()));
    wf->addRow(tr("CPU threads"), threads_);
    gpus_ = new QListWidget;
    gpus_->setObjectName("gpus");
    gpus_->setMaximumHeight(56);
    gpus_->setWordWrap(true);  // names and reasons wrap instead of scrolling sideways
    gpus_->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    if (local.size() > 1) {
        for (size_t i = 1; i < local.size(); ++i) {
            auto* item = new QListWidgetItem(qs(local[i].label) + tr(" — choose it as the device above"));
            item->setFlags(Qt::ItemIsEnabled);
            gpus_->addItem(item);
        }
    } else {
        // No usable GPU: show what the driver reports, greyed, and why it cannot train.
        const QStringList gpus = nvidia_gpus();
        if (gpus.isEmpty()) {
            auto* item = new QListWidgetItem(tr("no GPU found"));
            item->setFlags(Qt::NoItemFlags);
            item->setToolTip(qs(gpu_problem));
            gpus_->addItem(item);
        }
        for (const QString& g : gpus) {
            auto* item = new QListWidgetItem(g + " — " + qs(gpu_problem));
            item->setFlags(Qt::NoItemFlags);  // greyed: cannot be chosen
            item->setToolTip(tr("GPU training needs a build with the CUDA backend and a working driver: %1")
                                 .arg(qs(gpu_problem)));
            gpus_->addItem(item);
        }
    }
    wf->addRow(tr("GPUs"), gpus_);
    top->addWidget(where);

    error_ = new QLabel;
    error_->setObjectName("launcherError");
    error_->setWordWrap(true);
    error_->setStyleSheet("color: #b00020;");
    top->addWidget(error_);
    start_ = new QPushButton(tr("Start training"));
    start_->setObjectName("startRun");
    start_->setDefault(true);
    top->addWidget(start_);

    connect(form_, &ProjectForm::changed, this, [this, scroll] {
        update_summary();
        update_start();
        // Bring a newly invalid field into view: its message sits under it.
        if (form_->error_field() != shown_error_field_) {
            shown_error_field_ = form_->error_field();
            if (QWidget* e = form_->editor(shown_error_field_)) scroll->ensureWidgetVisible(e, 20, 60);
        }
    });
    connect(presets_, &QComboBox::activated, this, [this](int i) {
        open_project(presets_->itemData(i).toString());
    });
    connect(open, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getOpenFileName(this, tr("Open project"), presets_dir_,
                                                          tr("Projects (*.json)"));
        if (!path.isEmpty()) open_project(path);
    });
    connect(start_, &QPushButton::clicked, this, [this] {
        if (start_->isEnabled()) emit start_requested(project(), threads());
    });
    update_processes();
    update_start();
}

void RunLauncher::set_presets_dir(const QString& dir, const QString& select) {
    presets_dir_ = dir;
    presets_->clear();
    const QDir d(dir);
    for (const QFileInfo& f : d.entryInfoList({"*.json"}, QDir::Files, QDir::Name))
        presets_->addItem(f.completeBaseName(), f.absoluteFilePath());
    const int i = presets_->findText(select);
    if (i >= 0) {
        presets_->setCurrentIndex(i);
        open_project(presets_->itemData(i).toString());
    }
}

bool RunLauncher::open_project(const QString& path) {
    try {
        const Project p = Project::load(path.toStdString());
        project_path_ = path;
        set_project(p);
        const int i = presets_->findData(QFileInfo(path).absoluteFilePath());
        if (i >= 0) presets_->setCurrentIndex(i);
        emit project_opened(path);
        return true;
    } catch (const std::exception& e) {
        error_->setText(qs(e.what()));
        emit message(tr("cannot open project: %1").arg(qs(e.what())));
        return false;
    }
}

void RunLauncher::set_project(const Project& project) { form_->set_project(project); }

Project RunLauncher::project() const {
    Project p = form_->project();
    p.training.device = device_id().toStdString();
    return p;
}

QString RunLauncher::device_id() const {
    // "local:<id>" or "remote:<index>:<id>": the id is the engine's device name.
    const QString data = device_->currentData().toString();
    if (data.startsWith("local:")) return data.mid(6);
    const int second = data.indexOf(':', 7);
    return second > 0 ? data.mid(second + 1) : QString("cpu");
}

int RunLauncher::threads() const { return threads_->value(); }

QString RunLauncher::parallel_layout() const {
    return remote_selected() && processes_->currentData().toInt() > 1 ? layout_->text().trimmed() : QString();
}

void RunLauncher::update_processes() {
    const bool remote = remote_selected();
    const bool gpu = remote && device_id().startsWith("cuda");
    const QSignalBlocker block(processes_);
    processes_->clear();
    processes_->addItem(tr("1 process"), 1);
    if (remote) {
        if (gpu) {
            for (int n = 2; n <= remote_gpus_; n *= 2) processes_->addItem(tr("%1 GPUs (one process each)").arg(n), n);
            if (remote_gpus_ > 1 && (remote_gpus_ & (remote_gpus_ - 1)) != 0)
                processes_->addItem(tr("%1 GPUs (one process each)").arg(remote_gpus_), remote_gpus_);
        } else {
            for (int n : {2, 4}) processes_->addItem(tr("%1 CPU processes").arg(n), n);
        }
    }
    processes_->setCurrentIndex(0);
    processes_->setVisible(remote);
    processes_label_->setVisible(remote);
    layout_->clear();
    layout_->setVisible(false);
    layout_label_->setVisible(false);
}

void RunLauncher::set_run_active(bool active) {
    run_active_ = active;
    update_start();
}

void RunLauncher::set_remote_devices(const QString& server, const QStringList& names, const QList<bool>& available,
                                     const QStringList& reasons, const QStringList& ids) {
    const bool was_remote = remote_selected();
    for (int i = device_->count() - 1; i >= local_devices_; --i) device_->removeItem(i);
    for (int i = 0; i < names.size(); ++i) {
        const bool ok = i < available.size() && available[i];
        const QString reason = i < reasons.size() ? reasons[i] : QString();
        const QString id = i < ids.size() ? ids[i] : QString("cpu");
        device_->addItem(tr("%1 — %2").arg(server, names[i]) + (ok ? QString() : " (" + reason + ")"),
                         QString("remote:%1:%2").arg(i).arg(id));
        if (!ok) {
            // Greyed: listed so users see the worker's GPUs, but it cannot train on them.
            if (auto* model = qobject_cast<QStandardItemModel*>(device_->model()))
                if (QStandardItem* item = model->item(device_->count() - 1)) item->setEnabled(false);
        }
    }
    remote_gpus_ = 0;
    for (int i = 0; i < ids.size(); ++i)
        remote_gpus_ += ids[i].startsWith("cuda") && i < available.size() && available[i];
    if (was_remote && !remote_selected()) device_->setCurrentIndex(0);
    // A fresh connection: its first usable device becomes the choice.
    if (!server.isEmpty() && !was_remote)
        for (int i = local_devices_; i < device_->count(); ++i)
            if (i - local_devices_ < available.size() && available[i - local_devices_]) {
                device_->setCurrentIndex(i);
                break;
            }
    update_processes();
    update_start();
}

bool RunLauncher::remote_selected() const {
    return device_->currentData().toString().startsWith("remote:");
}

void RunLauncher::update_summary() {
    if (!form_->valid()) {
        summary_->setText(tr("<i>Model summary: fix the highlighted field.</i>"));
        return;
    }
    const Project p = form_->project();
    const ModelSummary s = summarize(p.model, p.training.seq_len);
    summary_->setText(
        tr("<b>%1</b> parameters, <b>%2</b> active per token (%3 MTP)<br>"
           "%4 per token forward, %5 per training token<br>"
           "memory: weights %6 (fp32), training state %7")
            .arg(qs(format_count(double(s.total_params))), qs(format_count(double(s.active_params))),
                 qs(format_count(double(s.mtp_params))), qs(format_flops(s.forward_flops_per_token)),
                 qs(format_flops(s.train_flops_per_token)), qs(format_bytes(s.weights_fp32_bytes)),
                 qs(format_bytes(s.training_bytes))) +
        (s.sliding_window > 0 || s.index_topk > 0 ? "<br>" + qs(format_attention_saving(s)).toHtmlEscaped()
                                                  : QString()));
}

void RunLauncher::update_start() {
    // Several processes: the layout must parse and use exactly that many.
    QString layout_error;
    const int n = processes_ && remote_selected() ? processes_->currentData().toInt() : 1;
    if (n > 1) {
        try {
            const ParallelLayout l = ParallelLayout::parse(layout_->text().trimmed().toStdString(), "layout");
            if (l.world() != n)
                layout_error = tr("layout %1 uses %2 processes, %3 are chosen")
                                   .arg(QString::fromStdString(l.to_string()))
                                   .arg(l.world())
                                   .arg(n);
        } catch (const std::exception& e) {
            layout_error = QString::fromStdString(e.what());
        }
    }
    const bool ok = form_->valid() && layout_error.isEmpty();
    start_->setEnabled(ok && !run_active_);
    error_->setText(!form_->valid() ? form_->error() : layout_error);
    start_->setToolTip(ok ? tr("Train this project on %1").arg(device_->currentText())
                          : tr("Fix the project first: %1").arg(form_->valid() ? layout_error : form_->error()));
}

}  // namespace moe::workbench
