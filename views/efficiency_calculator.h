#pragma once
// EfficiencyCalculator: what training a model costs (Model view). From the model's training
// FLOPs per token, a token count, a GPU's peak and an MFU: GPU-hours and days on N GPUs; the
// other way round, the MFU a reported cost implies; and the cost of a dense model of the same
// total parameters (about 6 FLOPs per parameter and token), so the MoE saving is visible.
// GPU-hours = FLOPs per token x tokens / (peak x MFU) / 3600.
#include <QGroupBox>

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QSpinBox;

namespace moe::views {

class EfficiencyCalculator : public QGroupBox {
    Q_OBJECT
public:
    explicit EfficiencyCalculator(QWidget* parent = nullptr);

    // train_flops_per_token: forward and backward (and MTP) per training token.
    void setModel(const QString& name, double train_flops_per_token, double total_params,
                  double active_params);

    // Inputs (tokens in billions, peak in TFLOP/s, MFU and reported cost as given).
    void setInputs(double tokens_billions, double peak_tflops, double mfu_percent, int gpus);
    void setReportedGpuHours(double gpu_hours);  // 0: none

    double gpuHours() const { return gpu_hours_; }
    double impliedMfuPercent() const { return implied_mfu_; }  // 0 without a reported cost
    double denseGpuHours() const { return dense_gpu_hours_; }
    QLabel* resultLabel() const { return result_; }
    QComboBox* gpuBox() const { return gpu_; }

private:
    void update();

    double flops_ = 0, total_ = 0, active_ = 0;
    double gpu_hours_ = 0, implied_mfu_ = 0, dense_gpu_hours_ = 0;
    QString name_;
    QDoubleSpinBox *tokens_ = nullptr, *peak_ = nullptr, *mfu_ = nullptr, *reported_ = nullptr;
    QSpinBox* gpus_ = nullptr;
    QComboBox* gpu_ = nullptr;
    QLabel* result_ = nullptr;
};

}  // namespace moe::views
