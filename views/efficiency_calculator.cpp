#include "efficiency_calculator.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QLabel>
#include <QLocale>
#include <QSpinBox>

#include <cmath>

#include "model_view.h"

namespace moe::views {

namespace {

// Dense bf16 / fp8 peaks (TFLOP/s, without sparsity) of the usual training GPUs; the H200 row
// is what this project measured with cuBLASLt (docs/performance.md).
struct GpuPreset {
    const char* name;
    double peak;
};
constexpr GpuPreset kGpus[] = {
    {"H800 / H100 SXM, bf16 (989)", 989},
    {"H800 / H100 SXM, fp8 (1,979)", 1979},
    {"H200, bf16 measured (820)", 820},
    {"H200, fp8 block-scaled measured (1,296)", 1296},
    {"A100, bf16 (312)", 312},
    {"custom", 0},
};

// Large values grouped ("2,664,000"), small ones with 3 significant digits (a tiny model's cost).
QString number(double v, int decimals = 0) {
    if (v != 0 && std::abs(v) < 100) return QString::number(v, 'g', 3);
    return QLocale(QLocale::English).toString(v, 'f', decimals);
}

}  // namespace

EfficiencyCalculator::EfficiencyCalculator(QWidget* parent)
    : QGroupBox(tr("Training cost"), parent) {
    setObjectName("efficiencyCalculator");
    auto* form = new QFormLayout(this);
    form->setFieldGrowthPolicy(QFormLayout::FieldsStayAtSizeHint);  // compact under the table
    tokens_ = new QDoubleSpinBox;
    tokens_->setObjectName("tokens");
    tokens_->setRange(0.001, 1e7);
    tokens_->setDecimals(3);
    tokens_->setSuffix(tr(" B tokens"));
    tokens_->setValue(1000);
    gpu_ = new QComboBox;
    for (const GpuPreset& g : kGpus) gpu_->addItem(tr(g.name), g.peak);
    peak_ = new QDoubleSpinBox;
    peak_->setRange(1, 1e6);
    peak_->setSuffix(tr(" TFLOP/s peak"));
    peak_->setValue(989);
    mfu_ = new QDoubleSpinBox;
    mfu_->setRange(0.1, 100);
    mfu_->setDecimals(1);
    mfu_->setSuffix(tr(" % MFU"));
    mfu_->setValue(40);
    gpus_ = new QSpinBox;
    gpus_->setRange(1, 1000000);
    gpus_->setValue(2048);
    gpus_->setSuffix(tr(" GPUs"));
    reported_ = new QDoubleSpinBox;
    reported_->setObjectName("reportedGpuHours");
    reported_->setRange(0, 1e12);
    reported_->setDecimals(0);
    reported_->setSuffix(tr(" GPU-hours reported"));
    reported_->setSpecialValueText(tr("(a reported cost, for the MFU it implies)"));
    result_ = new QLabel;
    result_->setWordWrap(true);
    result_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    form->addRow(tr("Tokens"), tokens_);
    form->addRow(tr("GPU"), gpu_);
    form->addRow(tr("Peak"), peak_);
    form->addRow(tr("MFU"), mfu_);
    form->addRow(tr("GPUs"), gpus_);
    form->addRow(tr("Reported"), reported_);
    form->addRow(result_);
    setToolTip(
        tr("GPU-hours = training FLOPs per token x tokens / (peak x MFU) / 3600. MFU: the share of "
           "the GPU's peak the run turns into model FLOPs."));
    connect(gpu_, &QComboBox::currentIndexChanged, this, [this] {
        if (const double p = gpu_->currentData().toDouble(); p > 0) peak_->setValue(p);
    });
    for (QDoubleSpinBox* s : {tokens_, peak_, mfu_, reported_})
        connect(s, &QDoubleSpinBox::valueChanged, this, &EfficiencyCalculator::update);
    connect(gpus_, &QSpinBox::valueChanged, this, &EfficiencyCalculator::update);
    update();
}

void EfficiencyCalculator::setModel(const QString& name, double train_flops_per_token,
                                    double total_params, double active_params) {
    name_ = name;
    flops_ = train_flops_per_token;
    total_ = total_params;
    active_ = active_params;
    update();
}

void EfficiencyCalculator::setInputs(double tokens_billions, double peak_tflops, double mfu_percent,
                                     int gpus) {
    tokens_->setValue(tokens_billions);
    peak_->setValue(peak_tflops);
    mfu_->setValue(mfu_percent);
    gpus_->setValue(gpus);
}

void EfficiencyCalculator::setReportedGpuHours(double gpu_hours) {
    reported_->setValue(gpu_hours);
}

void EfficiencyCalculator::update() {
    const double tokens = tokens_->value() * 1e9, peak = peak_->value() * 1e12,
                 mfu = mfu_->value() / 100.0;
    if (!(flops_ > 0)) {
        gpu_hours_ = implied_mfu_ = dense_gpu_hours_ = 0;
        result_->setText(tr("<i>No model yet.</i>"));
        return;
    }
    gpu_hours_ = flops_ * tokens / (peak * mfu) / 3600.0;
    const double days = gpu_hours_ / double(gpus_->value()) / 24.0;
    // A dense model of the same total parameters: ~6 FLOPs per parameter and training token.
    dense_gpu_hours_ = 6.0 * total_ * tokens / (peak * mfu) / 3600.0;
    implied_mfu_ = reported_->value() > 0
                       ? 100.0 * flops_ * tokens / (reported_->value() * 3600.0 * peak)
                       : 0.0;
    QString text =
        tr("<b>%1 GPU-hours</b> (%2 per trillion tokens), <b>%3 days</b> on %4 GPUs, at %5 "
           "TFLOP/s of model FLOPs per GPU.<br>%6: %7 per training token (%8 of %9 parameters "
           "active). A dense model of all %9 parameters: about %10 GPU-hours, %11x as much.")
            .arg(number(gpu_hours_), number(gpu_hours_ / (tokens / 1e12)), number(days, 1))
            .arg(gpus_->value())
            .arg(number(peak * mfu / 1e12))
            .arg(name_.isEmpty() ? tr("The model") : name_.toHtmlEscaped())
            .arg(ModelView::humanFlops(flops_))
            .arg(ModelView::humanCount(active_), ModelView::humanCount(total_))
            .arg(number(dense_gpu_hours_))
            .arg(number(dense_gpu_hours_ / gpu_hours_, 1));
    if (implied_mfu_ > 0)
        text += tr("<br>The reported %1 GPU-hours imply an MFU of <b>%2%</b> of this peak.")
                    .arg(number(reported_->value()), number(implied_mfu_, 1));
    result_->setText(text);
}

}  // namespace moe::views
