#include "plot_style.h"

#include <qcustomplot.h>
#include <QVariant>
#include <QWidget>

#include <algorithm>
#include <cmath>
#include <functional>

namespace moe::views {

namespace {

const char* const kHooked = "moeStyleHooked";

// One remembered attribute: "<name>Base" is the element's own value, "<name>Applied" what the
// style last set. A value that differs from Applied was changed by the view: it is the new base.
template <class T, class Get, class Set, class Make>
void restyle(QObject* o, const char* name, Get get, Set set, Make make) {
    const QByteArray base_key = QByteArray(name) + "Base",
                     applied_key = QByteArray(name) + "Applied";
    const T current = get();
    T base = current;
    const QVariant applied = o->property(applied_key.constData());
    if (applied.isValid() && applied.value<T>() == current)
        base = o->property(base_key.constData()).value<T>();
    const T wanted = make(base);
    o->setProperty(base_key.constData(), QVariant::fromValue(base));
    o->setProperty(applied_key.constData(), QVariant::fromValue(wanted));
    if (!(wanted == current)) set(wanted);
}

QFont scaled_font(QFont f, const PlotStyle& s) {
    if (f.pointSizeF() > 0) {
        f.setPointSizeF(std::max(f.pointSizeF() * s.font_scale, s.min_point_size));
    } else if (f.pixelSize() > 0) {
        // 1 pt = 4/3 px at 96 dpi
        f.setPixelSize(
            int(std::max(f.pixelSize() * s.font_scale, s.min_point_size * 4.0 / 3.0) + 0.5));
    }
    return f;
}

QPen scaled_pen(QPen p, double scale) {
    if (scale != 1.0 && p.style() != Qt::NoPen) p.setWidthF(std::max(1.0, p.widthF()) * scale);
    return p;
}

void style_font(QObject* o, const char* name, std::function<QFont()> get,
                std::function<void(const QFont&)> set, const PlotStyle& s) {
    restyle<QFont>(o, name, get, set, [&](const QFont& base) { return scaled_font(base, s); });
}

void style_pen(QObject* o, const char* name, std::function<QPen()> get,
               std::function<void(const QPen&)> set, double scale) {
    restyle<QPen>(o, name, get, set, [&](const QPen& base) { return scaled_pen(base, scale); });
}

// Legends stay compact: they grow less than the axes' text, or they cover the curves.
PlotStyle legend_style(const PlotStyle& s) {
    return {std::sqrt(s.font_scale), s.line_scale,
            std::min(s.min_point_size, std::max(9.0, 0.8 * s.min_point_size))};
}

void style_legend(QCPLegend* g, const PlotStyle& s) {
    const PlotStyle ls = legend_style(s);
    style_font(
        g, "font", [g] { return g->font(); }, [g](const QFont& f) { g->setFont(f); }, ls);
    for (int i = 0; i < g->itemCount(); ++i)
        if (auto* it = g->item(i))
            style_font(
                it, "font", [it] { return it->font(); }, [it](const QFont& f) { it->setFont(f); },
                ls);
}

void style_axis(QCPAxis* a, const PlotStyle& s) {
    // Larger tick labels need fewer ticks, or they run into each other.
    if (QSharedPointer<QCPAxisTicker> t = a->ticker()) {
        const QVariant base = a->property("moeTickCount");
        const int count = base.isValid() ? base.toInt() : t->tickCount();
        a->setProperty("moeTickCount", count);
        const int wanted =
            s.font_scale > 1.0 ? std::max(3, int(count / s.font_scale + 0.5)) : count;
        if (t->tickCount() != wanted) t->setTickCount(wanted);
    }
    style_font(
        a, "tickFont", [a] { return a->tickLabelFont(); },
        [a](const QFont& f) { a->setTickLabelFont(f); }, s);
    style_font(
        a, "labelFont", [a] { return a->labelFont(); }, [a](const QFont& f) { a->setLabelFont(f); },
        s);
    style_pen(
        a, "basePen", [a] { return a->basePen(); }, [a](const QPen& p) { a->setBasePen(p); },
        std::sqrt(s.line_scale));
    style_pen(
        a, "tickPen", [a] { return a->tickPen(); }, [a](const QPen& p) { a->setTickPen(p); },
        std::sqrt(s.line_scale));
}

void restyle_plot(QCustomPlot* plot) {
    const QVariant v = plot->property("moeStyle");
    if (!v.isValid()) return;
    const QList<QVariant> l = v.toList();
    const PlotStyle s{l.value(0).toDouble(), l.value(1).toDouble(), l.value(2).toDouble()};
    for (QCPLayoutElement* e : plot->plotLayout()->elements(true)) {
        if (auto* t = qobject_cast<QCPTextElement*>(e))
            style_font(
                t, "font", [t] { return t->font(); }, [t](const QFont& f) { t->setFont(f); }, s);
        if (auto* r = qobject_cast<QCPAxisRect*>(e))
            for (QCPAxis* a : r->axes()) style_axis(a, s);
        if (auto* c = qobject_cast<QCPColorScale*>(e)) style_axis(c->axis(), s);
        if (auto* g = qobject_cast<QCPLegend*>(e)) style_legend(g, s);
        // Axis rects hold their inset legends outside elements(true).
        if (auto* r = qobject_cast<QCPAxisRect*>(e))
            for (QCPLayoutElement* inset : r->insetLayout()->elements(false))
                if (auto* g = qobject_cast<QCPLegend*>(inset)) style_legend(g, s);
    }
    for (int i = 0; i < plot->plottableCount(); ++i) {
        QCPAbstractPlottable* p = plot->plottable(i);
        if (qobject_cast<QCPGraph*>(p) || qobject_cast<QCPCurve*>(p))
            style_pen(
                p, "pen", [p] { return p->pen(); }, [p](const QPen& q) { p->setPen(q); },
                s.line_scale);
    }
    for (int i = 0; i < plot->itemCount(); ++i) {
        QCPAbstractItem* it = plot->item(i);
        if (auto* t = qobject_cast<QCPItemText*>(it))
            style_font(
                t, "font", [t] { return t->font(); }, [t](const QFont& f) { t->setFont(f); }, s);
        else if (auto* ln = qobject_cast<QCPItemStraightLine*>(it))
            style_pen(
                ln, "pen", [ln] { return ln->pen(); }, [ln](const QPen& q) { ln->setPen(q); },
                std::sqrt(s.line_scale));
    }
}

}  // namespace

void apply_plot_style(QCustomPlot* plot, const PlotStyle& style) {
    if (!plot) return;
    plot->setProperty("moeStyle",
                      QVariantList{style.font_scale, style.line_scale, style.min_point_size});
    if (!plot->property(kHooked).toBool()) {
        plot->setProperty(kHooked, true);
        QObject::connect(plot, &QCustomPlot::beforeReplot, plot, [plot] { restyle_plot(plot); });
    }
    restyle_plot(plot);
    plot->replot(QCustomPlot::rpQueuedReplot);
}

void apply_plot_style_all(QWidget* root, const PlotStyle& style) {
    if (!root) return;
    if (auto* p = qobject_cast<QCustomPlot*>(root)) apply_plot_style(p, style);
    for (QCustomPlot* p : root->findChildren<QCustomPlot*>()) apply_plot_style(p, style);
}

PlotStyle plot_style(const QCustomPlot* plot) {
    const QVariant v = plot ? plot->property("moeStyle") : QVariant();
    if (!v.isValid()) return PlotStyle::normal();
    const QList<QVariant> l = v.toList();
    return {l.value(0).toDouble(), l.value(1).toDouble(), l.value(2).toDouble()};
}

}  // namespace moe::views
