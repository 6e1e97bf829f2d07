#pragma once
// Teaching tooltips: every metric and control can explain itself in two or three sentences.
// Header-only so any view (or the main window) can use it without a new link dependency.
#include <QString>
#include <QWidget>

namespace moe::views {

// One concept: a short title and a plain-language explanation (may contain simple HTML).
struct Concept {
    const char* title;
    const char* text;
};

// Rich-text tooltip: bold title, then the text; the <qt> wrapper makes Qt word-wrap it.
inline QString explained_html(const QString& title, const QString& text) {
    return QStringLiteral("<qt><p style='margin:0'><b>%1</b></p><p style='margin-top:4px'>%2</p></qt>")
        .arg(title.toHtmlEscaped(), text);
}
inline QString explained_html(const Concept& c) {
    return explained_html(QString::fromUtf8(c.title), QString::fromUtf8(c.text));
}

inline void set_explained(QWidget* widget, const QString& title, const QString& text) {
    if (widget) widget->setToolTip(explained_html(title, text));
}
inline void set_explained(QWidget* widget, const Concept& c) {
    if (widget) widget->setToolTip(explained_html(c));
}

// The texts, shared by all views so a concept is explained the same way everywhere.
namespace explain {

inline constexpr Concept kLoss{
    "Training loss",
    "Cross-entropy of the next-token prediction on the training batch, in nats per token. "
    "Lower is better; ln(vocabulary size) is the loss of uniform guessing."};
inline constexpr Concept kMtpLoss{
    "MTP loss",
    "Multi-token prediction: extra modules predict the token after next (and further) from the "
    "main model's hidden states. Its loss is added to the main loss with a small weight (lambda); it "
    "densifies the training signal and can be used for speculative decoding. Plotted before that "
    "weight, so it compares directly with the main loss and does not jump when lambda changes."};
inline constexpr Concept kAuxLoss{
    "Auxiliary balance loss",
    "A small sequence-wise loss that grows when a few experts receive most tokens of a sequence. "
    "DeepSeek-V3 keeps it tiny and balances mainly with the bias; here it shows how much "
    "imbalance remains."};
inline constexpr Concept kEvalLoss{
    "Evaluation loss",
    "Loss on held-out text the model never trains on, overall and per data label (task or "
    "language). A gap between train and eval loss that widens means over-fitting."};
inline constexpr Concept kLearningRate{
    "Learning rate",
    "Step size of the optimizer (AdamW). Typically a short linear warm-up, then a constant or "
    "cosine decay. Loss spikes often follow a rate that is too high."};
inline constexpr Concept kGradNorm{
    "Gradient norm",
    "Global L2 norm of all gradients before clipping. Spikes warn of instability; a norm "
    "pinned at the clip threshold means clipping is active on most steps."};
inline constexpr Concept kTokensPerSecond{
    "Throughput",
    "Training tokens processed per second of wall time, including forward, backward and the "
    "optimizer step."};
inline constexpr Concept kMaxVio{
    "MaxVio (maximal violation)",
    "How overloaded the busiest expert is: (max load - mean load) / mean load, per layer. "
    "0 means perfectly balanced; 1 means the busiest expert gets twice its fair share."};
inline constexpr Concept kBias{
    "Aux-loss-free balancing bias",
    "A per-expert number added to the gate scores only when choosing the top-k experts (not when "
    "weighting their outputs). After each step it moves down by a small rate for overloaded "
    "experts and up for underloaded ones, so load evens out without a loss term that fights the "
    "language-modelling objective."};
inline constexpr Concept kTopK{
    "Top-k routing",
    "For every token the gate scores all routed experts (sigmoid affinities) and sends the token "
    "to the k highest, optionally only within the best few expert groups. The chosen scores, "
    "normalised, weight the experts' outputs."};
inline constexpr Concept kExpertLoad{
    "Expert load",
    "Fraction of the tokens routed to each expert in a step. With E experts and perfect balance "
    "every expert gets 1/E of the token slots."};
inline constexpr Concept kSmoothing{
    "Smoothing",
    "Exponential moving average with de-biasing, as in TensorBoard: 0 shows raw values, 0.99 "
    "averages over roughly the last hundred points. The raw curve stays visible, faint, behind "
    "the smoothed one."};
inline constexpr Concept kLogScale{
    "Logarithmic axis",
    "Equal distances mean equal ratios. Loss curves that flatten on a linear axis keep showing "
    "progress on a log axis; values <= 0 cannot be drawn."};
inline constexpr Concept kFollowLive{
    "Follow live",
    "Keep the newest data in view while a run is training. Zooming or panning by hand turns it "
    "off; tick it again to catch up."};
inline constexpr Concept kXAxis{
    "X axis",
    "Optimizer steps, training tokens seen, or wall-clock time. Runs with different batch sizes "
    "compare fairly by tokens; runs on different hardware by time."};
inline constexpr Concept kDownsampling{
    "Drawing long runs",
    "Long runs are reduced to about two points per screen pixel before drawing; every bucket "
    "keeps its minimum and maximum, so no spike disappears. Zoom in to see every point."};

}  // namespace explain
}  // namespace moe::views
