#include "view_highlighter.h"

#include <qcustomplot.h>
#include <QStringList>

#include "expert_load_view.h"
#include "heatmap_plot.h"
#include "highlight_frame.h"
#include "model_view.h"
#include "quantization_view.h"
#include "routing_inspector_view.h"
#include "sparsity_view.h"
#include "token_flow_widget.h"
#include "training_curves_view.h"

namespace moe::views {

namespace {

// Plot items a highlight adds carry this name, so clearing finds them again.
const char* const kItemName = "lessonHighlight";

// A band over [from, to] on the x axis, the axis rect's full height: shaded for a step range,
// outlined for one bar.
void add_band(QCustomPlot* plot, double from, double to, bool shaded) {
    if (!plot) return;
    auto* rect = new QCPItemRect(plot);
    rect->setObjectName(kItemName);
    for (QCPItemPosition* p : {rect->topLeft, rect->bottomRight}) {
        p->setTypeX(QCPItemPosition::ptPlotCoords);
        p->setTypeY(QCPItemPosition::ptAxisRectRatio);
    }
    rect->topLeft->setCoords(from, 0.0);
    rect->bottomRight->setCoords(to, 1.0);
    QColor fill = HighlightFrame::color();
    fill.setAlpha(45);
    rect->setBrush(shaded ? QBrush(fill) : QBrush(Qt::NoBrush));
    rect->setPen(shaded ? QPen(HighlightFrame::color(), 1.5, Qt::DashLine)
                        : QPen(HighlightFrame::color(), 2.5));
    rect->setSelectable(false);
    plot->replot(QCustomPlot::rpQueuedReplot);
}

void shade_steps(QCustomPlot* plot, double from, double to) {
    add_band(plot, from, to, true);
}

// Selects "layer N" (HF index) among a view's layer names; reports it when absent.
template <class View>
void select_layer(View* v, const QStringList& names, int hf_layer, QStringList& lost) {
    if (hf_layer < 0) return;
    const int l = int(names.indexOf(QStringLiteral("layer %1").arg(hf_layer)));
    if (l >= 0)
        v->setLayer(l);
    else
        lost << QStringLiteral("layer %1").arg(hf_layer);
}

void frame_part(QWidget* view, const QString& part, QStringList& lost) {
    if (part.isEmpty()) return;
    auto* w = view->findChild<QWidget*>(part);
    if (w)
        HighlightFrame::show(w);
    else
        lost << QStringLiteral("part '%1'").arg(part);
}

int curve_panel(const QString& curve) {
    using V = TrainingCurvesView;
    static const std::pair<const char*, int> names[] = {{"loss", V::PanelLoss},
                                                        {"mtp", V::PanelLoss},
                                                        {"eval", V::PanelEval},
                                                        {"aux", V::PanelAux},
                                                        {"lr", V::PanelLr},
                                                        {"grad_norm", V::PanelGrad},
                                                        {"throughput", V::PanelThroughput}};
    for (const auto& [name, panel] : names)
        if (curve == QLatin1String(name)) return panel;
    return -1;
}

void highlight_curves(TrainingCurvesView* v, const Highlight& h, QStringList& lost) {
    if (!h.curve.isEmpty()) {
        const int panel = curve_panel(h.curve);
        bool found = panel >= 0 && v->runCount() > 0;
        if (found && h.curve == QLatin1String("mtp")) {
            found = false;
            for (int r = 0; r < v->runCount(); ++r)
                found = found || v->graph(r, Metric::MtpLoss, true);
        }
        if (found) {
            QCustomPlot* plot = v->plot(TrainingCurvesView::Panel(panel));
            HighlightFrame::show(plot);
        } else {
            lost << QStringLiteral("curve '%1'").arg(h.curve);
        }
    }
    if (h.hasSteps()) {
        for (int p = 0; p < TrainingCurvesView::PanelCount; ++p)
            if (!v->plot(TrainingCurvesView::Panel(p))->isHidden())
                shade_steps(v->plot(TrainingCurvesView::Panel(p)), h.step_from, h.step_to);
    }
}

void highlight_experts(ExpertLoadView* v, const Highlight& h, QStringList& lost) {
    const ExpertLoadData& d = v->data();
    select_layer(v, d.layer_names, h.layer, lost);
    if (h.hasSteps() && !d.steps.empty()) {
        // The step shown: the logged step nearest the range's end.
        int best = 0;
        for (int i = 0; i < int(d.steps.size()); ++i)
            if (std::abs(d.steps[size_t(i)] - h.step_to) <
                std::abs(d.steps[size_t(best)] - h.step_to))
                best = i;
        v->setStepIndex(best);
        shade_steps(v->maxVioPlot(), h.step_from, h.step_to);
        shade_steps(v->deadPlot(), h.step_from, h.step_to);
    } else if (h.hasSteps()) {
        lost << QStringLiteral("steps (no expert rows yet)");
    }
    if (h.expert >= 0) {
        if (h.expert < d.experts) {
            add_band(v->barPlot(), h.expert - 0.5, h.expert + 0.5, false);
            HighlightFrame::show(v->barPlot(), QStringLiteral("expert %1").arg(h.expert));
        } else {
            lost << QStringLiteral("expert %1 (the run has %2)").arg(h.expert).arg(d.experts);
        }
    }
}

void highlight_routing(RoutingInspectorView* v, const Highlight& h, QStringList& lost) {
    const RoutingInspectionData& d = v->data();
    select_layer(v, d.layer_names, h.layer, lost);
    if (h.expert >= 0) {
        if (h.expert < d.experts) {
            v->setExpert(h.expert);
            HighlightFrame::show(v->specializationPlot(),
                                 QStringLiteral("expert %1").arg(h.expert));
        } else {
            lost << QStringLiteral("expert %1").arg(h.expert);
        }
    }
    if (h.token >= 0) {
        if (h.token < d.n_tokens()) {
            v->showTokenRouting(h.token);
            HighlightFrame::show(v->tokenFlow());
        } else {
            lost << QStringLiteral("token %1 (the text has %2)").arg(h.token).arg(d.n_tokens());
        }
    }
}

void highlight_sparsity(SparsityView* v, const Highlight& h, QStringList& lost) {
    if (h.layer >= 0 || h.head >= 0) {
        const int layer = std::max(0, h.layer), head = std::max(0, h.head);
        v->setAttentionHead(layer, head);
        if (v->attentionLayer() == layer && v->attentionHead() == head)
            HighlightFrame::show(v->attentionPlot());
        else
            lost << QStringLiteral("attention of layer %1, head %2").arg(layer).arg(head);
    }
}

void highlight_quant(QuantizationView* v, const Highlight& h, QStringList& lost) {
    if (h.tensor.isEmpty()) return;
    const QuantizationData& d = v->data();
    QString key;
    if (v->run() >= 0 && v->run() < int(d.runs.size()))
        for (const QuantTensor& t : d.runs[size_t(v->run())].tensors)
            if (t.key == h.tensor || (key.isEmpty() && t.key.contains(h.tensor))) key = t.key;
    if (key.isEmpty()) {
        lost << QStringLiteral("tensor '%1'").arg(h.tensor);
        return;
    }
    v->selectTensor(key);
    HighlightFrame::show(v->histogramPlot());  // the view names the tensor above the plot
}

}  // namespace

bool highlight_view(QWidget* view, const Highlight& h, QString* missing) {
    clear_view_highlight(view);
    QStringList lost;
    if (!view)
        lost << QStringLiteral("the view");
    else if (auto* v = qobject_cast<ModelView*>(view)) {
        QString m;
        if (!v->setHighlight(h, &m)) lost << m;
    } else {
        if (auto* c = qobject_cast<TrainingCurvesView*>(view))
            highlight_curves(c, h, lost);
        else if (auto* e = qobject_cast<ExpertLoadView*>(view))
            highlight_experts(e, h, lost);
        else if (auto* r = qobject_cast<RoutingInspectorView*>(view))
            highlight_routing(r, h, lost);
        else if (auto* s = qobject_cast<SparsityView*>(view))
            highlight_sparsity(s, h, lost);
        else if (auto* q = qobject_cast<QuantizationView*>(view))
            highlight_quant(q, h, lost);
        frame_part(view, h.part, lost);
    }
    if (missing) *missing = lost.join(QStringLiteral(", "));
    return lost.isEmpty();
}

void clear_view_highlight(QWidget* view) {
    if (!view) return;
    if (auto* v = qobject_cast<ModelView*>(view)) v->clearHighlight();
    HighlightFrame::clearAll(view);
    for (QCustomPlot* plot : view->findChildren<QCustomPlot*>()) {
        bool removed = false;
        for (int i = plot->itemCount() - 1; i >= 0; --i)
            if (plot->item(i)->objectName() == QLatin1String(kItemName)) {
                plot->removeItem(i);
                removed = true;
            }
        if (removed) plot->replot(QCustomPlot::rpQueuedReplot);
    }
}

}  // namespace moe::views
