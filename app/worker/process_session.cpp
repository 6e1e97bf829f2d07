#include "worker/process_session.h"

#include <signal.h>

#include <QFile>
#include <QFileInfo>
#include <QProcessEnvironment>

#include "core/error.h"
#include "session_codec.h"
#include "store/run_reader.h"
#include "train/training_checkpoint.h"

namespace moe::worker {

ProcessSession::ProcessSession(QString mpirun, QString moe_train, std::string layout, int ranks,
                               QObject* parent)
    : QObject(parent),
      mpirun_(std::move(mpirun)),
      moe_train_(std::move(moe_train)),
      layout_(std::move(layout)),
      ranks_(ranks) {
    process_.setProcessChannelMode(QProcess::MergedChannels);
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    // OpenMPI as root (containers), more ranks than cores (CPU runs), no cross-process copy
    // (often forbidden in containers).
    env.insert("OMPI_ALLOW_RUN_AS_ROOT", "1");
    env.insert("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    env.insert("OMPI_MCA_rmaps_base_oversubscribe", "1");
    env.insert("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    env.insert("OMP_WAIT_POLICY", "PASSIVE");
    process_.setProcessEnvironment(env);
    connect(&process_, &QProcess::readyRead, this, &ProcessSession::on_output);
    connect(&process_, &QProcess::finished, this, &ProcessSession::on_finished);
    connect(&process_, &QProcess::errorOccurred, this, [this](QProcess::ProcessError e) {
        if (e != QProcess::FailedToStart) return;
        last_error_ =
            "cannot start " + mpirun_.toStdString() + ": " + process_.errorString().toStdString();
        moe::SessionEvent ev;
        ev.kind = moe::SessionEvent::Kind::Failed;
        ev.message = last_error_;
        set_state(moe::SessionState::Failed);
        emit_event(ev);
    });
    poll_timer_.setInterval(250);
    connect(&poll_timer_, &QTimer::timeout, this, &ProcessSession::poll);
}

ProcessSession::~ProcessSession() {
    poll_timer_.stop();
    process_.disconnect(this);
    if (process_.state() == QProcess::NotRunning) return;
    ::kill(pid_t(process_.processId()), SIGINT);  // rank 0 saves a checkpoint
    if (!process_.waitForFinished(30000)) {
        process_.kill();
        process_.waitForFinished(5000);
    }
}

void ProcessSession::start(const moe::Project& project, const moe::TrainerPaths& paths,
                           int threads) {
    if (state_ == moe::SessionState::Running || state_ == moe::SessionState::Stopping)
        throw moe::Error("a run is already active in this session");
    // The project goes next to its run file: the ranks read it from there.
    const std::string project_file = paths.run_file + ".project.json";
    project.save(project_file);
    run_file_ = paths.run_file;
    launch({QString::fromStdString(project_file), "--threads",
            QString::number(threads > 0 ? threads : 1)},
           project.training.steps);
}

void ProcessSession::resume_from(const std::string& checkpoint_dir, const moe::TrainerPaths& paths,
                                 int threads, int64_t total_steps, const std::string& device) {
    if (state_ == moe::SessionState::Running || state_ == moe::SessionState::Stopping)
        throw moe::Error("a run is already active in this session");
    const moe::TrainingState st = moe::load_training_state(checkpoint_dir);
    QStringList args{"--resume", QString::fromStdString(checkpoint_dir), "--threads",
                     QString::number(threads > 0 ? threads : 1)};
    if (total_steps > 0) args << "--steps" << QString::number(total_steps);
    if (!device.empty()) args << "--device" << QString::fromStdString(device);
    run_file_ = paths.run_file;
    launch(args, total_steps > 0 ? total_steps : st.project.training.steps);
}

void ProcessSession::launch(const QStringList& train_args, int64_t total_steps) {
    total_steps_ = total_steps;
    steps_done_ = rows_seen_ = 0;
    stop_asked_ = false;
    reader_.reset();
    QStringList args{"-np", QString::number(ranks_), moe_train_};
    args << train_args << "--parallel" << QString::fromStdString(layout_) << "--out"
         << QString::fromStdString(run_file_);
    process_.start(mpirun_, args);
    set_state(moe::SessionState::Running);
    poll_timer_.start();
}

void ProcessSession::stop() {
    if (process_.state() == QProcess::NotRunning || stop_asked_) return;
    stop_asked_ = true;
    set_state(moe::SessionState::Stopping);
    ::kill(pid_t(process_.processId()), SIGINT);  // mpirun passes Ctrl-C to every rank
}

void ProcessSession::unsupported(const char* what) {
    moe::SessionEvent e;
    e.kind = moe::SessionEvent::Kind::Log;
    e.state = state_;
    e.message = std::string("'") + what + "' is not available for a run of several processes (" +
                layout_ + "): stop it, or resume its checkpoint";
    emit_event(e);
}

void ProcessSession::poll() {
    if (!reader_) {
        if (run_file_.empty() || !QFileInfo::exists(QString::fromStdString(run_file_))) return;
        try {
            reader_ = std::make_unique<moe::RunReader>(run_file_);
        } catch (const std::exception&) {
            return;  // rank 0 is still laying the file out: next time
        }
    } else {
        try {
            reader_->refresh();
        } catch (const std::exception&) {
            return;
        }
    }
    const moe::MetricsColumns m = reader_->metrics_since(rows_seen_);
    for (int64_t i = 0; i < m.size(); ++i) {
        moe::SessionEvent e;
        e.kind = moe::SessionEvent::Kind::Step;
        e.state = state_;
        e.step = remote::step_from_row(m.row(i), total_steps_);
        steps_done_ = e.step.step;
        emit_event(e);
    }
    rows_seen_ += m.size();
}

void ProcessSession::on_output() {
    pending_output_ += process_.readAll();
    int nl;
    while ((nl = int(pending_output_.indexOf('\n'))) >= 0) {
        QString line = QString::fromUtf8(pending_output_.left(nl)).trimmed();
        pending_output_.remove(0, nl + 1);
        // The progress line rewrites itself on a terminal: keep what follows the last \r.
        line = line.section('\r', -1).remove("\x1b[K").trimmed();
        if (line.isEmpty()) continue;
        moe::SessionEvent e;
        e.state = state_;
        if (line.startsWith("checkpoint ")) {
            e.kind = moe::SessionEvent::Kind::Checkpoint;
            e.message = line.mid(11).toStdString();
        } else {
            e.kind = moe::SessionEvent::Kind::Log;
            e.message = line.toStdString();
            if (line.contains("error:")) last_error_ = e.message;
        }
        emit_event(e);
    }
}

void ProcessSession::on_finished(int code, QProcess::ExitStatus status) {
    poll_timer_.stop();
    on_output();
    poll();
    reader_.reset();
    const bool ok = status == QProcess::NormalExit && (code == 0 || (stop_asked_ && code == 130));
    if (ok) {
        set_state(moe::SessionState::Finished);
        return;
    }
    moe::SessionEvent e;
    e.kind = moe::SessionEvent::Kind::Failed;
    e.message = last_error_.empty() ? "the job of " + std::to_string(ranks_) +
                                          " processes ended with code " + std::to_string(code)
                                    : last_error_;
    set_state(moe::SessionState::Failed);
    e.state = state_;
    emit_event(e);
}

void ProcessSession::set_state(moe::SessionState s) {
    if (s == state_) return;
    state_ = s;
    moe::SessionEvent e;
    e.kind = moe::SessionEvent::Kind::StateChanged;
    e.state = s;
    emit_event(e);
}

void ProcessSession::emit_event(moe::SessionEvent e) {
    if (listener_) listener_(e);
}

}  // namespace moe::worker
