#pragma once
// RoutingInspectorView: type or pick a text, choose a checkpoint (and optionally a second one),
// press Inspect; then see, per MoE layer, the gate's scores with the chosen experts and the
// bias, the text coloured by each token's first expert, the experts of every layer for the
// token under the mouse, the tokens a chosen expert takes most, a label x expert
// specialization matrix, and how much of the routing two checkpoints share.
//
// The view only asks (inspectRequested) and shows (setInspection): the controller runs the
// engine off the GUI thread and converts its Inspection into RoutingInspectionData.
#include <QPair>
#include <QString>
#include <QStringList>
#include <QWidget>

#include <qcustomplot.h>

#include "routing_inspection_data.h"

class QComboBox;
class QLabel;
class QPlainTextEdit;
class QPushButton;
class QScrollArea;
class QSpinBox;
class QTableWidget;

namespace moe::views {

class GenerationControls;
class RoutingHeatmap;
class RoutingStrips;
class TokenFlowWidget;

class RoutingInspectorView : public QWidget {
    Q_OBJECT
public:
    explicit RoutingInspectorView(QWidget* parent = nullptr);

    // Samples for the "pick sample" box: (name, text), e.g. ("probe text", ...), ("task: add", ...).
    void setSamples(const QList<QPair<QString, QString>>& samples);
    // Checkpoints the user may pick (names as the controller wants them back, e.g. directories
    // "step-00000400"); the newest is selected first, the comparison box starts at "none".
    void setCheckpoints(const QStringList& checkpoints);
    void setText(const QString& text);
    QString text() const;

    const RoutingInspectionData& data() const { return data_; }
    int currentLayer() const { return layer_; }
    int currentExpert() const { return expert_; }
    int hoveredToken() const { return hovered_; }

    // Parts, for tests and for the main window's export menu.
    RoutingHeatmap* heatmap() const { return heat_[0]; }
    RoutingHeatmap* comparisonHeatmap() const { return heat_[1]; }
    TokenFlowWidget* tokenFlow() const { return flow_[0]; }
    TokenFlowWidget* comparisonTokenFlow() const { return flow_[1]; }
    QCustomPlot* specializationPlot() const { return spec_plot_; }
    QCPColorMap* specializationMap() const { return spec_map_; }
    QTableWidget* hoverTable() const { return hover_table_; }
    QTableWidget* topTokensTable() const { return top_table_; }
    QLabel* agreementLabel() const { return agreement_; }
    QLabel* statusLabel() const { return status_; }  // busy text, errors and results
    QComboBox* checkpointBox() const { return checkpoint_box_; }
    QComboBox* comparisonBox() const { return compare_box_; }
    QComboBox* sampleBox() const { return sample_box_; }
    QComboBox* layerBox() const { return layer_box_; }
    QPushButton* inspectButton() const { return inspect_button_; }
    GenerationControls* generationControls() const { return generation_; }
    RoutingStrips* strips() const { return strips_; }

    // Expert colour of the categorical palette used for top-1 colouring and the legend.
    static QColor expertColor(int expert);

protected:
    void resizeEvent(QResizeEvent* event) override;

signals:
    // compareCheckpoint is empty when no comparison is wanted.
    void inspectRequested(const QString& text, const QString& checkpoint,
                          const QString& compareCheckpoint);
    // Continue the text with the checkpoint (the controller streams inspections back while it
    // writes, through setInspection), and stop it.
    void generateRequested(const QString& text, const QString& checkpoint, int newTokens,
                           double temperature);
    void stopGenerationRequested();

public slots:
    void setInspection(const RoutingInspectionData& data);
    void clearInspection();
    // While the engine works: disables Inspect and shows a message.
    void setBusy(bool busy, const QString& message = QString());
    void setError(const QString& message);
    void setLayer(int layer);
    void setExpert(int expert);
    // The token whose experts the side table lists (-1 clears); called on hover.
    void showTokenRouting(int token);
    void requestInspection();  // what the Inspect button does

private:
    void buildUi();
    void fitFlows();  // each text area as tall as its text, up to a limit, then it scrolls
    void setStatus(const QString& html);  // hidden when empty
    void refreshLayer();          // heatmaps, colouring, top tokens, specialization for layer_
    void refreshAgreement();
    void refreshTopTokens();
    void refreshSpecialization();
    void refreshLegend();
    void colourFlow(TokenFlowWidget* flow, const RoutingSnapshot& snap);
    QString routingCell(const RoutingSnapshot& snap, int layer, int token) const;

    RoutingInspectionData data_;
    int layer_ = 0;
    int expert_ = 0;
    int hovered_ = -1;

    QPlainTextEdit* text_edit_ = nullptr;
    QComboBox* sample_box_ = nullptr;
    QComboBox* checkpoint_box_ = nullptr;
    QComboBox* compare_box_ = nullptr;
    QPushButton* inspect_button_ = nullptr;
    GenerationControls* generation_ = nullptr;
    RoutingStrips* strips_ = nullptr;
    QScrollArea* strips_scroll_ = nullptr;
    QLabel* status_ = nullptr;
    QLabel* agreement_ = nullptr;
    QComboBox* layer_box_ = nullptr;
    QLabel* legend_ = nullptr;
    RoutingHeatmap* heat_[2] = {nullptr, nullptr};
    TokenFlowWidget* flow_[2] = {nullptr, nullptr};
    QLabel* flow_title_[2] = {nullptr, nullptr};
    QScrollArea* flow_scroll_[2] = {nullptr, nullptr};
    QWidget* compare_column_ = nullptr;
    QLabel* hover_title_ = nullptr;
    QTableWidget* hover_table_ = nullptr;
    QSpinBox* expert_spin_ = nullptr;
    QTableWidget* top_table_ = nullptr;
    QCustomPlot* spec_plot_ = nullptr;
    QCPColorMap* spec_map_ = nullptr;
    QCPColorScale* spec_scale_ = nullptr;
};

}  // namespace moe::views
