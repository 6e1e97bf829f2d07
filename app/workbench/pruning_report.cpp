#include "pruning_report.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QMessageBox>
#include <QVBoxLayout>

#include <nlohmann/json.hpp>

#include "pruning_view.h"

namespace moe::workbench {

namespace {

nlohmann::json read_json(const QString& path) {
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        throw std::runtime_error(path.toStdString() +
                                 ": cannot open: " + f.errorString().toStdString());
    const QByteArray bytes = f.readAll();
    return nlohmann::json::parse(bytes.begin(), bytes.end());
}

QString layer_name(int64_t hf, int64_t main_layers) {
    return main_layers > 0 && hf >= main_layers ? QString("MTP %1").arg(hf - main_layers + 1)
                                                : QString("layer %1").arg(hf);
}

QString summary_text(const nlohmann::json& s) {
    if (!s.is_object()) return {};
    const auto num = [&](const char* k) { return s.contains(k) ? s[k].get<double>() : NAN; };
    QString t = QString("Validation loss %1 before, %2 pruned")
                    .arg(num("val_loss_before"), 0, 'f', 4)
                    .arg(num("val_loss_pruned"), 0, 'f', 4);
    if (s.contains("val_loss_finetuned"))
        t += QString(", %1 after %2 fine-tuning steps (%3 s)")
                 .arg(num("val_loss_finetuned"), 0, 'f', 4)
                 .arg(s["finetune_steps"].get<long long>())
                 .arg(num("finetune_s"), 0, 'f', 1);
    if (s.contains("before") && s.contains("after")) {
        const auto total = [](const nlohmann::json& x) {
            return x["total_params"].get<double>() + x["mtp_params"].get<double>();
        };
        const double p0 = total(s["before"]), p1 = total(s["after"]);
        const double f0 = s["before"]["forward_flops_per_token"].get<double>();
        const double f1 = s["after"]["forward_flops_per_token"].get<double>();
        t += QString(". Parameters %1 -> %2 (-%3%), forward FLOPs per token -%4%.")
                 .arg(p0, 0, 'f', 0)
                 .arg(p1, 0, 'f', 0)
                 .arg(100.0 * (1.0 - p1 / p0), 0, 'f', 1)
                 .arg(100.0 * (1.0 - f1 / f0), 0, 'f', 1);
    }
    return t;
}

}  // namespace

views::PruningData load_pruning_report(const QString& dir, QString* error) {
    views::PruningData d;
    QString file = dir;
    if (QFileInfo(dir).isDir()) file = dir + "/pruning.json";
    try {
        const nlohmann::json j = read_json(file);
        if (j.value("format", "") != "moe-pruning")
            throw std::runtime_error(
                file.toStdString() +
                ": not a moe-prune report (\"format\" is not \"moe-pruning\")");
        int64_t main_layers = 0;
        const QString config = QFileInfo(file).dir().filePath("config.json");
        if (QFileInfo::exists(config))
            main_layers = read_json(config).value("num_hidden_layers", int64_t(0));
        const std::string kind = j.at("kind").get<std::string>();
        d.summary = summary_text(j.value("summary", nlohmann::json()));
        if (kind == "experts") {
            d.kind = views::PruningData::Kind::Experts;
            d.criterion = QString::fromStdString(j.at("criterion").get<std::string>());
            d.summary = QString("Removed %1 of every group's experts by %2. ")
                            .arg(j.at("per_group").get<long long>())
                            .arg(d.criterion) +
                        d.summary;
            for (const auto& l : j.at("layers")) {
                views::PruningExpertLayer pl;
                pl.name = layer_name(l.at("layer").get<int64_t>(), main_layers);
                for (const char* c : {"load", "gate_mass", "masked_loss"})
                    if (l.contains(c)) pl.scores[c] = l[c].get<std::vector<double>>();
                const size_t E = pl.scores["load"].size();
                pl.removed.assign(E, false);
                for (int64_t e : l.at("removed").get<std::vector<int64_t>>())
                    if (e >= 0 && size_t(e) < E) pl.removed[size_t(e)] = true;
                d.expert_layers.push_back(std::move(pl));
            }
        } else if (kind == "channels") {
            d.kind = views::PruningData::Kind::Channels;
            d.summary = QString("Removed %1 channels of every expert, %2 of every dense FFN. ")
                            .arg(j.at("expert_removed").get<long long>())
                            .arg(j.at("dense_removed").get<long long>()) +
                        d.summary;
            for (const auto& f : j.at("ffns")) {
                const QString name = layer_name(f.at("layer").get<int64_t>(), main_layers);
                if (d.channel_layers.empty() || d.channel_layers.back().name != name)
                    d.channel_layers.push_back({name, {}, {}, {}});
                views::PruningChannelLayer& pl = d.channel_layers.back();
                const std::string k = f.at("kind").get<std::string>();
                pl.rows << (k == "routed"
                                ? QString("expert %1").arg(f.at("expert").get<long long>())
                                : QString::fromStdString(k));
                pl.saliency.push_back(f.at("saliency").get<std::vector<double>>());
                std::vector<int> removed;
                for (int64_t c : f.at("removed").get<std::vector<int64_t>>())
                    removed.push_back(static_cast<int>(c));
                pl.removed.push_back(std::move(removed));
            }
        } else {
            throw std::runtime_error(file.toStdString() + ": unknown \"kind\" '" + kind + "'");
        }
    } catch (const std::exception& e) {
        if (error)
            *error = QString::fromStdString(e.what()).startsWith(file)
                         ? QString::fromStdString(e.what())
                         : file + ": " + QString::fromStdString(e.what());
        return {};
    }
    return d;
}

PruningWindow::PruningWindow(QWidget* parent) : QDialog(parent) {
    setObjectName("pruningWindow");
    setWindowTitle(tr("Pruning report"));
    auto* layout = new QVBoxLayout(this);
    view_ = new views::PruningView;
    layout->addWidget(view_);
    resize(1000, 720);
}

bool PruningWindow::open(const QString& dir) {
    QString error;
    views::PruningData d = load_pruning_report(dir, &error);
    if (d.kind == views::PruningData::Kind::None) {
        QMessageBox::warning(this, tr("Pruning report"), error);
        return false;
    }
    setWindowTitle(tr("Pruning report - %1").arg(QFileInfo(dir).fileName()));
    view_->setData(std::move(d));
    show();
    raise();
    return true;
}

}  // namespace moe::workbench
