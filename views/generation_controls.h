#pragma once
// GenerationControls: the routing inspector's "continue the text" row - how many tokens, the
// sampling temperature (0 = greedy), and one button that reads Generate, then Stop while the
// engine writes. Plain widget: it asks (generateRequested, stopRequested) and is told
// (setRunning); the workbench's GenerationController does the work.
#include <QWidget>

class QCheckBox;
class QDoubleSpinBox;
class QPushButton;
class QSpinBox;

namespace moe::views {

class GenerationControls : public QWidget {
    Q_OBJECT
public:
    explicit GenerationControls(QWidget* parent = nullptr);

    int newTokens() const;
    double temperature() const;
    // MTP speculative decoding (greedy).
    bool speculative() const;
    bool running() const { return running_; }
    QPushButton* button() const { return button_; }
    QSpinBox* tokensBox() const { return tokens_; }
    QDoubleSpinBox* temperatureBox() const { return temperature_; }
    QCheckBox* speculativeBox() const { return speculative_; }

signals:
    void generateRequested(int new_tokens, double temperature);
    void stopRequested();

public slots:
    void setRunning(bool running);
    void setAvailable(bool available);  // a checkpoint to generate with exists

private:
    QSpinBox* tokens_ = nullptr;
    QDoubleSpinBox* temperature_ = nullptr;
    QPushButton* button_ = nullptr;
    QCheckBox* speculative_ = nullptr;
    bool running_ = false;
    bool available_ = false;
};

}  // namespace moe::views
