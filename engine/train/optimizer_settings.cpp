#include "train/optimizer_settings.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_fields.h"
#include "model/config.h"

namespace moe {

namespace {

using json = nlohmann::json;
using json_fields::format_number;

// One row per JSON field of a settings struct; one table drives from_json, to_json and the
// "did you mean" list, as in ModelConfig.
template <class S>
struct Field {
    const char* name;
    std::variant<int64_t S::*, double S::*, std::string S::*> member;
};

template <class S>
std::vector<std::string> names_of(const std::vector<Field<S>>& table) {
    std::vector<std::string> out;
    for (const auto& f : table) out.emplace_back(f.name);
    return out;
}

// Unknown field: the error names the full path ("training.optimizer.lrr") and suggests the
// closest known field.
[[noreturn]] void reject(const std::string& prefix, const std::string& name,
                         const std::vector<std::string>& known) {
    try {
        json_fields::reject_unknown(name, known, prefix);
    } catch (const ConfigError& e) {
        const std::string what = e.what();
        throw ConfigError(prefix + "." + name, what.substr(e.field().size() + 2));
    }
    throw ConfigError(prefix + "." + name, "unknown field");  // not reached
}

// Reads the table's fields from object j; `extra` names fields the caller reads itself.
template <class S>
void read_fields(const json& j, const std::string& prefix, const std::vector<Field<S>>& table,
                 const std::vector<std::string>& extra, S& s) {
    json_fields::require_object(j, prefix);
    std::vector<std::string> known = names_of(table);
    known.insert(known.end(), extra.begin(), extra.end());
    for (const auto& [name, value] : j.items()) {
        const auto it = std::find_if(table.begin(), table.end(),
                                     [&name = name](const Field<S>& f) { return name == f.name; });
        if (it == table.end()) {
            if (std::find(extra.begin(), extra.end(), name) == extra.end())
                reject(prefix, name, known);
            continue;
        }
        const std::string field = prefix + "." + name;
        std::visit(
            [&, &value = value](auto member) {
                using T = std::remove_reference_t<decltype(s.*member)>;
                if constexpr (std::is_same_v<T, int64_t>)
                    s.*member = json_fields::get_int(value, field);
                else if constexpr (std::is_same_v<T, double>)
                    s.*member = json_fields::get_double(value, field);
                else
                    s.*member = json_fields::get_string(value, field);
            },
            it->member);
    }
}

template <class S>
json write_fields(const std::vector<Field<S>>& table, const S& s) {
    json j = json::object();
    for (const auto& f : table) std::visit([&](auto member) { j[f.name] = s.*member; }, f.member);
    return j;
}

// Range checks: `ok` false throws ConfigError(field, "<rule>, got <value>").
void check(bool ok, const std::string& prefix, const char* name, const std::string& rule,
           double value) {
    if (!ok) throw ConfigError(prefix + "." + name, rule + ", got " + format_number(value));
}

void check_kind(const std::string& value, const std::vector<std::string>& allowed,
                const std::string& field) {
    if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return;
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "\"" : ", \"") + a + "\"";
    throw ConfigError(field, "must be one of " + list + ", got \"" + value + "\"");
}

const std::vector<std::string> kScheduleKinds = {"constant", "warmup_constant", "cosine", "wsd"};
const std::vector<std::string> kBalanceModes = {"aux_free", "seq_aux", "batch_aux", "none"};

const std::vector<Field<LrSchedule>>& schedule_fields() {
    static const std::vector<Field<LrSchedule>> t = {
        {"kind", &LrSchedule::kind},
        {"warmup_steps", &LrSchedule::warmup_steps},
        {"total_steps", &LrSchedule::total_steps},
        {"min_lr_ratio", &LrSchedule::min_lr_ratio},
        {"decay_fraction", &LrSchedule::decay_fraction},
    };
    return t;
}

const std::vector<Field<OptimizerSettings>>& optimizer_fields() {
    static const std::vector<Field<OptimizerSettings>> t = {
        {"lr", &OptimizerSettings::lr},
        {"beta1", &OptimizerSettings::beta1},
        {"beta2", &OptimizerSettings::beta2},
        {"eps", &OptimizerSettings::eps},
        {"weight_decay", &OptimizerSettings::weight_decay},
        {"grad_clip", &OptimizerSettings::grad_clip},
        {"grad_accum", &OptimizerSettings::grad_accum},
    };
    return t;
}

const std::vector<Field<BalanceSettings>>& balance_fields() {
    static const std::vector<Field<BalanceSettings>> t = {
        {"mode", &BalanceSettings::mode},
        {"gamma", &BalanceSettings::gamma},
        {"alpha", &BalanceSettings::alpha},
    };
    return t;
}

const std::vector<Field<MtpSchedule>>& mtp_fields() {
    static const std::vector<Field<MtpSchedule>> t = {
        {"lambda", &MtpSchedule::lambda},
        {"late_lambda", &MtpSchedule::late_lambda},
        {"switch_fraction", &MtpSchedule::switch_fraction},
    };
    return t;
}

bool finite(double x) { return std::isfinite(x); }

}  // namespace

// ---- LrSchedule

double LrSchedule::lr_at(int64_t step, double peak) const {
    step = std::max<int64_t>(step, 0);
    if (kind == "constant") return peak;
    // Divide first: peak * (step + 1) overflows for a peak near the largest double.
    if (step < warmup_steps) return peak * (double(step + 1) / double(warmup_steps));
    const double floor = min_lr_ratio * peak;
    if (kind == "cosine") {
        const int64_t span = total_steps - warmup_steps;
        if (span <= 0) return floor;
        const double progress = std::min(1.0, double(step - warmup_steps) / double(span));
        return floor + (peak - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    }
    if (kind == "wsd") {
        // The decay never eats into the warmup: with a short run it is shortened instead.
        const int64_t decay_steps = std::llround(decay_fraction * double(total_steps));
        const int64_t decay_start = std::max(warmup_steps, total_steps - decay_steps);
        if (step < decay_start) return peak;
        const int64_t span = total_steps - decay_start;
        if (span <= 0) return floor;
        const double progress = std::min(1.0, double(step - decay_start) / double(span));
        return peak + (floor - peak) * progress;
    }
    return peak;  // warmup_constant (validate() rejects unknown kinds)
}

void LrSchedule::validate(const std::string& prefix) const {
    check_kind(kind, kScheduleKinds, prefix + ".kind");
    check(warmup_steps >= 0, prefix, "warmup_steps", "must be >= 0", double(warmup_steps));
    check(total_steps >= 1, prefix, "total_steps", "must be >= 1", double(total_steps));
    if (kind == "cosine" || kind == "wsd")
        check(warmup_steps <= total_steps, prefix, "warmup_steps",
              "must be <= total_steps (" + std::to_string(total_steps) + ")",
              double(warmup_steps));
    check(finite(min_lr_ratio) && min_lr_ratio >= 0.0 && min_lr_ratio <= 1.0, prefix,
          "min_lr_ratio", "must be in [0, 1]", min_lr_ratio);
    check(finite(decay_fraction) && decay_fraction > 0.0 && decay_fraction <= 1.0, prefix,
          "decay_fraction", "must be in (0, 1]", decay_fraction);
}

LrSchedule LrSchedule::from_json(const json& j, const std::string& prefix) {
    LrSchedule s;
    read_fields(j, prefix, schedule_fields(), {}, s);
    s.validate(prefix);
    return s;
}

json LrSchedule::to_json() const { return write_fields(schedule_fields(), *this); }

// ---- OptimizerSettings

void OptimizerSettings::validate(const std::string& prefix) const {
    check(finite(lr) && lr > 0.0, prefix, "lr", "must be > 0", lr);
    check(finite(beta1) && beta1 >= 0.0 && beta1 < 1.0, prefix, "beta1", "must be in [0, 1)",
          beta1);
    check(finite(beta2) && beta2 >= 0.0 && beta2 < 1.0, prefix, "beta2", "must be in [0, 1)",
          beta2);
    check(finite(eps) && eps > 0.0, prefix, "eps", "must be > 0", eps);
    check(finite(weight_decay) && weight_decay >= 0.0, prefix, "weight_decay", "must be >= 0",
          weight_decay);
    check(finite(grad_clip) && grad_clip >= 0.0, prefix, "grad_clip", "must be >= 0 (0 = off)",
          grad_clip);
    check(grad_accum >= 1 && grad_accum <= 65536, prefix, "grad_accum", "must be in [1, 65536]",
          double(grad_accum));
    schedule.validate(prefix + ".schedule");
}

OptimizerSettings OptimizerSettings::from_json(const json& j, const std::string& prefix) {
    OptimizerSettings s;
    read_fields(j, prefix, optimizer_fields(), {"schedule"}, s);
    if (j.contains("schedule"))
        s.schedule = LrSchedule::from_json(j["schedule"], prefix + ".schedule");
    s.validate(prefix);
    return s;
}

json OptimizerSettings::to_json() const {
    json j = write_fields(optimizer_fields(), *this);
    j["schedule"] = schedule.to_json();
    return j;
}

// ---- BalanceSettings

void BalanceSettings::validate(const std::string& prefix) const {
    check_kind(mode, kBalanceModes, prefix + ".mode");
    check(finite(gamma) && gamma >= 0.0, prefix, "gamma", "must be >= 0", gamma);
    check(finite(alpha) && alpha >= 0.0, prefix, "alpha", "must be >= 0", alpha);
}

BalanceSettings BalanceSettings::from_json(const json& j, const std::string& prefix) {
    BalanceSettings s;
    read_fields(j, prefix, balance_fields(), {}, s);
    s.validate(prefix);
    return s;
}

json BalanceSettings::to_json() const { return write_fields(balance_fields(), *this); }

void apply_balance_mode(const BalanceSettings& balance, ModelConfig& cfg) {
    if (balance.mode == "aux_free") {
        if (!cfg.has_selection_bias())
            throw ConfigError("training.balance.mode",
                              "\"aux_free\" needs the selection bias (topk_method \"noaux_tc\"), "
                              "but the model's topk_method is \"" + cfg.topk_method + "\"");
        cfg.aux_loss_alpha = 0.0;
    } else if (balance.mode == "seq_aux") {
        cfg.aux_loss_alpha = balance.alpha;
        cfg.seq_aux = true;
    } else if (balance.mode == "batch_aux") {
        cfg.aux_loss_alpha = balance.alpha;
        cfg.seq_aux = false;
    } else if (balance.mode == "none") {
        cfg.aux_loss_alpha = 0.0;
    } else {
        check_kind(balance.mode, kBalanceModes, "training.balance.mode");
    }
}

// ---- MtpSchedule

double MtpSchedule::lambda_at(int64_t step, int64_t total) const {
    if (total <= 0) return lambda;
    return double(step) < switch_fraction * double(total) ? lambda : late_lambda;
}

void MtpSchedule::validate(const std::string& prefix) const {
    check(finite(lambda) && lambda >= 0.0, prefix, "lambda", "must be >= 0", lambda);
    check(finite(late_lambda) && late_lambda >= 0.0, prefix, "late_lambda", "must be >= 0",
          late_lambda);
    check(finite(switch_fraction) && switch_fraction >= 0.0 && switch_fraction <= 1.0, prefix,
          "switch_fraction", "must be in [0, 1]", switch_fraction);
}

MtpSchedule MtpSchedule::from_json(const json& j, const std::string& prefix) {
    MtpSchedule s;
    read_fields(j, prefix, mtp_fields(), {}, s);
    s.validate(prefix);
    return s;
}

json MtpSchedule::to_json() const { return write_fields(mtp_fields(), *this); }

// ---- LossScaleSettings, PrecisionSettings

namespace {

const std::vector<std::string> kScalings = {"tile", "tensor"};
const std::vector<std::string> kAttentionMaths = {"fp32", "bf16"};
const std::vector<std::string> kScaleRoundings = {"exact", "pow2"};

const std::vector<Field<LossScaleSettings>>& loss_scale_fields() {
    static const std::vector<Field<LossScaleSettings>> t = {
        {"initial", &LossScaleSettings::initial},
        {"growth_interval", &LossScaleSettings::growth_interval},
        {"backoff", &LossScaleSettings::backoff},
        {"growth", &LossScaleSettings::growth},
    };
    return t;
}

const std::vector<std::string> kQatSchemes = {"symmetric", "asymmetric"};
const std::vector<Field<QatSettings>>& qat_fields() {
    static const std::vector<Field<QatSettings>> t = {
        {"bits", &QatSettings::bits},
        {"group_size", &QatSettings::group_size},
        {"scheme", &QatSettings::scheme},
        {"start_step", &QatSettings::start_step},
        {"scale_lr", &QatSettings::scale_lr},
    };
    return t;
}
const std::vector<Field<PrecisionSettings>>& precision_fields() {
    static const std::vector<Field<PrecisionSettings>> t = {
        {"mode", &PrecisionSettings::mode},
        {"scaling", &PrecisionSettings::scaling},
        {"scale_rounding", &PrecisionSettings::scale_rounding},
        {"attention", &PrecisionSettings::attention},
        {"record_every", &PrecisionSettings::record_every},
    };
    return t;
}

}  // namespace

void LossScaleSettings::validate(const std::string& prefix) const {
    check(std::isfinite(initial) && initial >= 1.0 && initial <= 16777216.0, prefix, "initial",
          "must be in [1, 2^24]", initial);
    check(growth_interval >= 1, prefix, "growth_interval", "must be >= 1", double(growth_interval));
    check(backoff > 0.0 && backoff < 1.0, prefix, "backoff", "must be in (0, 1)", backoff);
    check(growth > 1.0 && growth <= 16.0, prefix, "growth", "must be in (1, 16]", growth);
}

LossScaleSettings LossScaleSettings::from_json(const json& j, const std::string& prefix) {
    LossScaleSettings s;
    read_fields(j, prefix, loss_scale_fields(), {}, s);
    s.validate(prefix);
    return s;
}

json LossScaleSettings::to_json() const { return write_fields(loss_scale_fields(), *this); }

LinearRecipe PrecisionSettings::recipe() const {
    LinearRecipe r;
    r.mode = parse_linear_precision(mode, "training.precision.mode");
    r.per_tensor = scaling == "tensor";
    r.pow2_scales = scale_rounding == "pow2";
    r.attention = attention == "bf16" ? AttentionMath::Bf16 : AttentionMath::Fp32;
    return r;
}

void PrecisionSettings::validate(const std::string& prefix) const {
    parse_linear_precision(mode, prefix + ".mode");
    check_kind(scaling, kScalings, prefix + ".scaling");
    check_kind(scale_rounding, kScaleRoundings, prefix + ".scale_rounding");
    check_kind(attention, kAttentionMaths, prefix + ".attention");
    check(record_every >= 0, prefix, "record_every", "must be >= 0 (0 = never)",
          double(record_every));
    loss_scale.validate(prefix + ".loss_scale");
    qat.validate(prefix + ".qat");
    if (qat.enabled() && mode != "fp32")
        throw ConfigError(prefix + ".qat.bits",
                          "quantization-aware training runs with precision mode \"fp32\" (the GEMMs "
                          "in fp32 on the fake-quantized weights), not \"" + mode + "\"");
}

IntQuantSpec QatSettings::spec() const {
    IntQuantSpec q;
    q.bits = int(bits);
    q.group_size = group_size;
    q.symmetric = scheme == "symmetric";
    return q;
}

void QatSettings::validate(const std::string& prefix) const {
    check(bits == 0 || bits == 2 || bits == 3 || bits == 4 || bits == 8, prefix, "bits",
          "must be 0 (off), 2, 3, 4 or 8", double(bits));
    check(group_size >= 0 && group_size <= (int64_t(1) << 20), prefix, "group_size",
          "must be 0 (per output channel) or a group width", double(group_size));
    check_kind(scheme, kQatSchemes, prefix + ".scheme");
    check(start_step >= 0, prefix, "start_step", "must be >= 0", double(start_step));
    check(std::isfinite(scale_lr) && scale_lr >= 0.0 && scale_lr <= 1.0, prefix, "scale_lr",
          "must be in [0, 1] (0: scales from each group's range)", scale_lr);
    if (scale_lr > 0.0 && scheme != "symmetric")
        throw ConfigError(prefix + ".scale_lr",
                          "learned scales need scheme \"symmetric\" (an asymmetric group's zero "
                          "point would move with its range), got scheme \"" + scheme + "\"");
}

QatSettings QatSettings::from_json(const json& j, const std::string& prefix) {
    QatSettings s;
    read_fields(j, prefix, qat_fields(), {}, s);
    s.validate(prefix);
    return s;
}

json QatSettings::to_json() const { return write_fields(qat_fields(), *this); }

PrecisionSettings PrecisionSettings::from_json(const json& j, const std::string& prefix) {
    PrecisionSettings s;
    read_fields(j, prefix, precision_fields(), {"loss_scale", "qat"}, s);
    if (j.contains("loss_scale"))
        s.loss_scale = LossScaleSettings::from_json(j["loss_scale"], prefix + ".loss_scale");
    if (j.contains("qat")) s.qat = QatSettings::from_json(j["qat"], prefix + ".qat");
    s.validate(prefix);
    return s;
}

json PrecisionSettings::to_json() const {
    json j = write_fields(precision_fields(), *this);
    j["loss_scale"] = loss_scale.to_json();
    if (qat.enabled()) j["qat"] = qat.to_json();  // projects without QAT keep their JSON
    return j;
}

}  // namespace moe
