#include "generation_controls.h"

#include <QCheckBox>
#include <QDoubleSpinBox>
#include <QGridLayout>
#include <QLabel>
#include <QPushButton>
#include <QSpinBox>

#include "explained.h"

namespace moe::views {

GenerationControls::GenerationControls(QWidget* parent) : QWidget(parent) {
    auto* grid = new QGridLayout(this);
    grid->setContentsMargins(0, 0, 0, 0);
    grid->setHorizontalSpacing(4);
    grid->setVerticalSpacing(2);
    tokens_ = new QSpinBox;
    tokens_->setRange(1, 4096);
    tokens_->setValue(48);
    tokens_->setSuffix(tr(" tokens"));
    set_explained(tokens_, tr("New tokens"),
                  tr("How many tokens the model writes after the text. It stops earlier at the "
                     "model's context length."));
    temperature_ = new QDoubleSpinBox;
    temperature_->setRange(0.0, 5.0);
    temperature_->setSingleStep(0.1);
    temperature_->setDecimals(2);
    temperature_->setValue(0.0);
    temperature_->setPrefix(tr("T "));
    temperature_->setSpecialValueText(tr("greedy"));
    set_explained(temperature_, tr("Temperature"),
                  tr("0 (greedy) always takes the most likely next token; higher values sample "
                     "more freely (seed 0, so a run can be repeated)."));
    speculative_ = new QCheckBox(tr("MTP drafts"));
    speculative_->setObjectName("speculativeCheck");
    set_explained(speculative_, tr("Speculative decoding with the MTP module"),
                  tr("The multi-token-prediction module drafts the token after next and the main "
                     "model checks it in its next step: an accepted draft is a token for free. "
                     "The text is exactly greedy decoding's; the result says how many drafts "
                     "were accepted. Greedy only (the temperature is ignored)."));
    button_ = new QPushButton(tr("Generate"));
    button_->setToolTip(
        tr("Continue the text with the chosen checkpoint, token by token, and "
           "watch every MoE layer route each new token"));
    grid->addWidget(tokens_, 0, 0);
    grid->addWidget(temperature_, 0, 1);
    grid->addWidget(speculative_, 1, 0, 1, 2);
    grid->addWidget(button_, 2, 0, 1, 2);
    connect(button_, &QPushButton::clicked, this, [this] {
        if (running_)
            emit stopRequested();
        else
            emit generateRequested(newTokens(), temperature());
    });
    setAvailable(false);
}

int GenerationControls::newTokens() const {
    return tokens_->value();
}

double GenerationControls::temperature() const {
    return temperature_->value();
}

bool GenerationControls::speculative() const { return speculative_->isChecked(); }

void GenerationControls::setRunning(bool running) {
    running_ = running;
    button_->setText(running ? tr("Stop") : tr("Generate"));
    button_->setEnabled(running || available_);
    tokens_->setEnabled(!running);
    temperature_->setEnabled(!running);
    speculative_->setEnabled(!running);
}

void GenerationControls::setAvailable(bool available) {
    available_ = available;
    button_->setEnabled(running_ || available_);
}

}  // namespace moe::views
