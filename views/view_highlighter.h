#pragma once
// Points at something inside one of the workbench's views (a lesson step's highlight): selects
// it where the view can (a layer, an expert, a token, a tensor, a table row), shades a step
// range, and frames the plot or panel that shows it. What cannot be found is named, so a lesson
// that points at nothing fails loudly instead of silently.
#include "highlight.h"

#include <QString>

class QWidget;

namespace moe::views {

// `view` is one of the workbench views (TrainingCurvesView, ExpertLoadView,
// RoutingInspectorView, SparsityView, QuantizationView, ModelView, CommunicationView).
// Clears the view's previous highlight first. Returns false, with what was not found in
// *missing, when some field of `h` points at nothing.
bool highlight_view(QWidget* view, const Highlight& h, QString* missing = nullptr);
void clear_view_highlight(QWidget* view);

}  // namespace moe::views
