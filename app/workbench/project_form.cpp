#include "workbench/project_form.h"

#include <QCheckBox>
#include <QComboBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QLabel>
#include <QLineEdit>
#include <QSpinBox>
#include <QVBoxLayout>

#include <climits>

#include "core/error.h"

namespace moe::workbench {

namespace {

QLabel* make_error_label() {
    auto* l = new QLabel;
    l->setWordWrap(true);
    l->setStyleSheet("color: #b00020;");
    l->setVisible(false);
    return l;
}

}  // namespace

ProjectForm::ProjectForm(QWidget* parent) : QWidget(parent) {
    groups_ = new QVBoxLayout(this);
    groups_->setContentsMargins(0, 0, 0, 0);
    summary_error_ = make_error_label();
    summary_error_->setObjectName("projectError");
    groups_->addWidget(summary_error_);

    QFormLayout* f = add_group(tr("Model shape"));
    add_int(f, tr("Vocabulary"), "vocab_size", [](Project& p) -> int64_t& { return p.model.vocab_size; });
    add_int(f, tr("Hidden size"), "hidden_size", [](Project& p) -> int64_t& { return p.model.hidden_size; },
            tr("d_model: the width of the residual stream"));
    add_int(f, tr("Layers"), "num_hidden_layers", [](Project& p) -> int64_t& { return p.model.num_hidden_layers; });
    add_int(f, tr("Dense layers first"), "first_k_dense_replace",
            [](Project& p) -> int64_t& { return p.model.first_k_dense_replace; },
            tr("Layers [0, k) use a dense FFN, the rest MoE"));
    add_int(f, tr("Dense FFN width"), "intermediate_size", [](Project& p) -> int64_t& { return p.model.intermediate_size; });
    add_int(f, tr("Attention heads"), "num_attention_heads",
            [](Project& p) -> int64_t& { return p.model.num_attention_heads; });
    add_int(f, tr("KV heads"), "num_key_value_heads", [](Project& p) -> int64_t& { return p.model.num_key_value_heads; },
            tr("MLA has no GQA: equal to the attention heads"));
    add_int(f, tr("Max positions"), "max_position_embeddings",
            [](Project& p) -> int64_t& { return p.model.max_position_embeddings; });
    add_real(f, tr("RoPE theta"), "rope_theta", [](Project& p) -> double& { return p.model.rope_theta; });

    f = add_group(tr("MoE"));
    add_int(f, tr("Routed experts"), "n_routed_experts", [](Project& p) -> int64_t& { return p.model.n_routed_experts; });
    add_int(f, tr("Shared experts"), "n_shared_experts", [](Project& p) -> int64_t& { return p.model.n_shared_experts; });
    add_int(f, tr("Experts per token (top-k)"), "num_experts_per_tok",
            [](Project& p) -> int64_t& { return p.model.num_experts_per_tok; });
    add_int(f, tr("Expert groups"), "n_group", [](Project& p) -> int64_t& { return p.model.n_group; });
    add_int(f, tr("Groups kept"), "topk_group", [](Project& p) -> int64_t& { return p.model.topk_group; },
            tr("Group-limited routing: each token picks its experts from this many groups"));
    add_int(f, tr("Expert width"), "moe_intermediate_size",
            [](Project& p) -> int64_t& { return p.model.moe_intermediate_size; });
    add_real(f, tr("Routed scaling"), "routed_scaling_factor",
             [](Project& p) -> double& { return p.model.routed_scaling_factor; });
    add_choice(f, tr("Scoring"), "scoring_func", {"sigmoid", "softmax"},
               [](Project& p) -> std::string& { return p.model.scoring_func; });
    add_choice(f, tr("Top-k method"), "topk_method", {"noaux_tc", "greedy", "group_limited_greedy"},
               [](Project& p) -> std::string& { return p.model.topk_method; });
    add_bool(f, tr("Renormalize top-k"), "norm_topk_prob", [](Project& p) -> bool& { return p.model.norm_topk_prob; });

    f = add_group(tr("MLA"));
    add_int(f, tr("q LoRA rank"), "q_lora_rank", [](Project& p) -> int64_t& { return p.model.q_lora_rank; },
            tr("0: a plain q projection"));
    add_int(f, tr("KV LoRA rank"), "kv_lora_rank", [](Project& p) -> int64_t& { return p.model.kv_lora_rank; });
    add_int(f, tr("qk nope head dim"), "qk_nope_head_dim", [](Project& p) -> int64_t& { return p.model.qk_nope_head_dim; });
    add_int(f, tr("qk rope head dim"), "qk_rope_head_dim", [](Project& p) -> int64_t& { return p.model.qk_rope_head_dim; });
    add_int(f, tr("v head dim"), "v_head_dim", [](Project& p) -> int64_t& { return p.model.v_head_dim; });
    add_int(f, tr("Sliding window"), "sliding_window", [](Project& p) -> int64_t& { return p.model.sliding_window; },
            tr("0 = off: full causal attention. W > 0: each query attends only to its W most recent "
               "tokens, itself included, so attention costs O(T·W) instead of O(T²) "
               "(sliding_window, as in Mistral and Qwen2 configs)"));
    add_int(f, tr("Top-k keys"), "index_topk", [](Project& p) -> int64_t& { return p.model.index_topk; },
            tr("0 = off. K > 0: dynamic sparse attention (DeepSeek-V3.2): a small learned indexer "
               "scores every earlier token and each query attends only to its K best, so the "
               "attention itself costs O(T·K); trained toward the dense attention (index_topk)"));
    add_int(f, tr("Indexer heads"), "index_n_heads", [](Project& p) -> int64_t& { return p.model.index_n_heads; },
            tr("Heads of the sparse attention indexer (index_n_heads)"));
    add_int(f, tr("Indexer head dim"), "index_head_dim", [](Project& p) -> int64_t& { return p.model.index_head_dim; },
            tr("Width of an indexer head, at least the qk rope head dim (index_head_dim)"));
    add_int(f, tr("Dense warm-up steps"), "training.index_warmup_steps",
            [](Project& p) -> int64_t& { return p.training.index_warmup_steps; },
            tr("With top-k keys: the first steps attend densely while the indexer learns from "
               "every key (training.index_warmup_steps)"));

    f = add_group(tr("MTP"));
    add_int(f, tr("MTP depth"), "num_nextn_predict_layers",
            [](Project& p) -> int64_t& { return p.model.num_nextn_predict_layers; });
    add_real(f, tr("λ"), "training.mtp.lambda", [](Project& p) -> double& { return p.training.mtp.lambda; });
    add_real(f, tr("Late λ"), "training.mtp.late_lambda", [](Project& p) -> double& { return p.training.mtp.late_lambda; });
    add_real(f, tr("Switch at fraction"), "training.mtp.switch_fraction",
             [](Project& p) -> double& { return p.training.mtp.switch_fraction; });

    f = add_group(tr("Balancing"));
    add_choice(f, tr("Mode"), "training.balance.mode", {"aux_free", "seq_aux", "batch_aux", "none"},
               [](Project& p) -> std::string& { return p.training.balance.mode; },
               tr("aux_free: bias updates (V3); seq_aux / batch_aux: balance loss; none: baseline"));
    add_real(f, tr("Bias speed γ"), "training.balance.gamma", [](Project& p) -> double& { return p.training.balance.gamma; });
    add_real(f, tr("Loss weight α"), "training.balance.alpha", [](Project& p) -> double& { return p.training.balance.alpha; });

    f = add_group(tr("Optimizer"));
    add_int(f, tr("Steps"), "training.steps", [](Project& p) -> int64_t& { return p.training.steps; });
    add_real(f, tr("Peak LR"), "training.optimizer.lr", [](Project& p) -> double& { return p.training.optimizer.lr; });
    add_choice(f, tr("Schedule"), "training.optimizer.schedule.kind", {"constant", "warmup_constant", "cosine", "wsd"},
               [](Project& p) -> std::string& { return p.training.optimizer.schedule.kind; });
    add_int(f, tr("Warmup steps"), "training.optimizer.schedule.warmup_steps",
            [](Project& p) -> int64_t& { return p.training.optimizer.schedule.warmup_steps; });
    add_real(f, tr("Min LR ratio"), "training.optimizer.schedule.min_lr_ratio",
             [](Project& p) -> double& { return p.training.optimizer.schedule.min_lr_ratio; });
    add_real(f, tr("β1"), "training.optimizer.beta1", [](Project& p) -> double& { return p.training.optimizer.beta1; });
    add_real(f, tr("β2"), "training.optimizer.beta2", [](Project& p) -> double& { return p.training.optimizer.beta2; });
    add_real(f, tr("Weight decay"), "training.optimizer.weight_decay",
             [](Project& p) -> double& { return p.training.optimizer.weight_decay; });
    add_real(f, tr("Gradient clip"), "training.optimizer.grad_clip",
             [](Project& p) -> double& { return p.training.optimizer.grad_clip; }, tr("0 = off"));
    add_int(f, tr("Accumulation"), "training.optimizer.grad_accum",
            [](Project& p) -> int64_t& { return p.training.optimizer.grad_accum; });

    f = add_group(tr("Data"));
    add_choice(f, tr("Source"), "training.data.source", {"synthetic", "text", "fortunes"},
               [](Project& p) -> std::string& { return p.training.data.source; });
    add_text(f, tr("Path"), "training.data.path", [](Project& p) -> std::string& { return p.training.data.path; },
             tr("text: a file or folder; fortunes: the fortunes folder (empty: Debian's)"));
    add_int(f, tr("Batch size"), "training.batch_size", [](Project& p) -> int64_t& { return p.training.batch_size; });
    add_int(f, tr("Sequence length"), "training.seq_len", [](Project& p) -> int64_t& { return p.training.seq_len; });
    add_int(f, tr("Seed"), "training.seed", [](Project& p) -> int64_t& { return p.training.seed; });
    add_real(f, tr("Validation fraction"), "training.data.validation_fraction",
             [](Project& p) -> double& { return p.training.data.validation_fraction; });

    f = add_group(tr("Logging and checkpoints"));
    add_int(f, tr("Log every"), "training.log_every", [](Project& p) -> int64_t& { return p.training.log_every; },
            tr("Steps between expert-load rows in the run file"));
    add_int(f, tr("Evaluate every"), "training.eval_every", [](Project& p) -> int64_t& { return p.training.eval_every; });
    add_int(f, tr("Eval batches"), "training.eval_batches", [](Project& p) -> int64_t& { return p.training.eval_batches; });
    add_int(f, tr("Routing snapshot every"), "training.routing_every",
            [](Project& p) -> int64_t& { return p.training.routing_every; });
    add_int(f, tr("Checkpoint every"), "training.checkpoint_every",
            [](Project& p) -> int64_t& { return p.training.checkpoint_every; });
    add_int(f, tr("Keep checkpoints"), "training.keep_checkpoints",
            [](Project& p) -> int64_t& { return p.training.keep_checkpoints; });

    // Precision of the projection GEMMs (model/linear_precision.h); master weights stay fp32.
    f = add_group(tr("Precision"));
    add_choice(f, tr("Training precision"), "training.precision.mode", {"fp32", "bf16", "fp16", "fp8"},
               [](Project& p) -> std::string& { return p.training.precision.mode; },
               tr("Format of the linear layers' GEMM inputs: fp32; bf16; fp16 with dynamic loss scaling; "
                  "fp8 E4M3 with DeepSeek's fine-grained scales. Embedding, head, gate and norms stay fp32."));
    add_choice(f, tr("FP8 scaling"), "training.precision.scaling", {"tile", "tensor"},
               [](Project& p) -> std::string& { return p.training.precision.scaling; },
               tr("tile: 1x128 activation tiles and 128x128 weight blocks (DeepSeek-V3); "
                  "tensor: one scale per tensor, the comparison that shows why tiles matter"));
    add_choice(f, tr("Scale rounding"), "training.precision.scale_rounding", {"exact", "pow2"},
               [](Project& p) -> std::string& { return p.training.precision.scale_rounding; },
               tr("exact: amax / 448; pow2: rounded up to a power of two, so scaling is exact"));
    add_int(f, tr("Record quantization every"), "training.precision.record_every",
            [](Project& p) -> int64_t& { return p.training.precision.record_every; },
            tr("Steps between quantization-error rows in the run file (0 = never)"));
    add_real(f, tr("Initial loss scale"), "training.precision.loss_scale.initial",
             [](Project& p) -> double& { return p.training.precision.loss_scale.initial; },
             tr("fp16 only: the loss is multiplied by this before backward; halves on overflow"));
    // Quantization-aware training (docs/precision.md): INT4/INT8 weights in every pass.
    add_int(f, tr("QAT weight bits"), "training.precision.qat.bits",
            [](Project& p) -> int64_t& { return p.training.precision.qat.bits; },
            tr("Quantization-aware training: 0 = off; 2, 3, 4 or 8 = the projection weights are "
               "fake-quantized to INT2 / INT3 / INT4 / INT8 in every pass, gradients straight through (with "
               "training precision fp32)"));
    add_int(f, tr("QAT group size"), "training.precision.qat.group_size",
            [](Project& p) -> int64_t& { return p.training.precision.qat.group_size; },
            tr("0 = one scale per output channel; else per group of this many input columns"));
    add_choice(f, tr("QAT scheme"), "training.precision.qat.scheme", {"symmetric", "asymmetric"},
               [](Project& p) -> std::string& { return p.training.precision.qat.scheme; },
               tr("symmetric: w = q * scale; asymmetric: w = (q - zero) * scale"));
    add_int(f, tr("QAT from step"), "training.precision.qat.start_step",
            [](Project& p) -> int64_t& { return p.training.precision.qat.start_step; },
            tr("The step QAT starts at: fine-tune a run trained in fp32"));
    add_real(f, tr("QAT scale learning"), "training.precision.qat.scale_lr",
             [](Project& p) -> double& { return p.training.precision.qat.scale_lr; },
             tr("0: each group's scale from its range. > 0: learned scales - each group's clip "
                "follows LSQ's step-size gradient by this step (e.g. 0.001); symmetric only"));
    groups_->addStretch(1);
}

QFormLayout* ProjectForm::add_group(const QString& title) {
    auto* box = new QGroupBox(title);
    auto* form = new QFormLayout(box);
    form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
    groups_->addWidget(box);
    return form;
}

void ProjectForm::add_row(QFormLayout* form, const QString& label, Binding b, const QString& tip) {
    // The editor with its error line under it, so a message sits next to its field.
    auto* cell = new QWidget;
    auto* v = new QVBoxLayout(cell);
    v->setContentsMargins(0, 0, 0, 0);
    v->setSpacing(1);
    b.editor->setObjectName(b.field);
    if (!tip.isEmpty()) b.editor->setToolTip(tip);
    b.error = make_error_label();
    v->addWidget(b.editor);
    v->addWidget(b.error);
    auto* l = new QLabel(label);
    if (!tip.isEmpty()) l->setToolTip(tip);
    form->addRow(l, cell);
    bindings_.push_back(std::move(b));
}

void ProjectForm::add_int(QFormLayout* form, const QString& label, const QString& field,
                          std::function<int64_t&(Project&)> ref, const QString& tip) {
    // Wide ranges: the engine, not the spin box, says what is valid.
    auto* spin = new QSpinBox;
    spin->setRange(-1, INT_MAX);
    spin->setKeyboardTracking(true);
    Binding b;
    b.field = field;
    b.editor = spin;
    b.load = [this, spin, ref] { spin->setValue(static_cast<int>(ref(project_))); };
    connect(spin, &QSpinBox::valueChanged, this, [this, ref, field](int v) {
        if (loading_) return;
        ref(project_) = v;
        // The LR schedule's length is the run's length unless a project says otherwise.
        if (field == "training.steps") project_.training.optimizer.schedule.total_steps = v;
        edited();
    });
    add_row(form, label, std::move(b), tip);
}

void ProjectForm::add_real(QFormLayout* form, const QString& label, const QString& field,
                           std::function<double&(Project&)> ref, const QString& tip) {
    auto* edit = new QLineEdit;
    Binding b;
    b.field = field;
    b.editor = edit;
    b.load = [this, edit, ref] { edit->setText(QString::number(ref(project_), 'g', 10)); };
    const size_t index = bindings_.size();
    connect(edit, &QLineEdit::textEdited, this, [this, ref, index](const QString& text) {
        bool ok = false;
        const double v = QLocale::c().toDouble(text.trimmed(), &ok);
        bindings_[index].parse_error = !ok;
        if (ok) ref(project_) = v;
        edited();
    });
    add_row(form, label, std::move(b), tip);
}

void ProjectForm::add_choice(QFormLayout* form, const QString& label, const QString& field,
                             const QStringList& choices, std::function<std::string&(Project&)> ref,
                             const QString& tip) {
    auto* combo = new QComboBox;
    combo->addItems(choices);
    Binding b;
    b.field = field;
    b.editor = combo;
    b.load = [this, combo, ref] {
        const QString v = QString::fromStdString(ref(project_));
        if (combo->findText(v) < 0) combo->addItem(v);  // keep values this build does not list
        combo->setCurrentText(v);
    };
    connect(combo, &QComboBox::currentTextChanged, this, [this, ref](const QString& text) {
        if (loading_) return;
        ref(project_) = text.toStdString();
        edited();
    });
    add_row(form, label, std::move(b), tip);
}

void ProjectForm::add_text(QFormLayout* form, const QString& label, const QString& field,
                           std::function<std::string&(Project&)> ref, const QString& tip) {
    auto* edit = new QLineEdit;
    Binding b;
    b.field = field;
    b.editor = edit;
    b.load = [this, edit, ref] { edit->setText(QString::fromStdString(ref(project_))); };
    connect(edit, &QLineEdit::textEdited, this, [this, ref](const QString& text) {
        ref(project_) = text.toStdString();
        edited();
    });
    add_row(form, label, std::move(b), tip);
}

void ProjectForm::add_bool(QFormLayout* form, const QString& label, const QString& field,
                           std::function<bool&(Project&)> ref, const QString& tip) {
    auto* box = new QCheckBox;
    Binding b;
    b.field = field;
    b.editor = box;
    b.load = [this, box, ref] { box->setChecked(ref(project_)); };
    connect(box, &QCheckBox::toggled, this, [this, ref](bool on) {
        if (loading_) return;
        ref(project_) = on;
        edited();
    });
    add_row(form, label, std::move(b), tip);
}

void ProjectForm::set_project(const Project& project) {
    project_ = project;
    loading_ = true;
    for (Binding& b : bindings_) {
        b.parse_error = false;
        b.load();
    }
    loading_ = false;
    validate();
    emit changed();
}

QWidget* ProjectForm::editor(const QString& field) const {
    for (const Binding& b : bindings_)
        if (b.field == field) return b.editor;
    return nullptr;
}

void ProjectForm::edited() {
    validate();
    emit changed();
}

void ProjectForm::validate() {
    error_.clear();
    error_field_.clear();
    for (const Binding& b : bindings_)
        if (b.parse_error) {
            error_field_ = b.field;
            error_ = b.field + ": " + tr("not a number");
            break;
        }
    if (error_.isEmpty()) {
        try {
            project_.validate();
        } catch (const ConfigError& e) {
            error_field_ = QString::fromStdString(e.field());
            error_ = QString::fromStdString(e.what());
        } catch (const std::exception& e) {
            error_ = QString::fromStdString(e.what());
        }
    }
    bool shown = false;
    for (Binding& b : bindings_) {
        const bool here = !error_.isEmpty() && b.field == error_field_;
        b.error->setText(here ? error_ : QString());
        b.error->setVisible(here);
        shown = shown || here;
    }
    // Errors about derived quantities (qk_head_dim, ...) have no editor: show them on top.
    summary_error_->setText(error_);
    summary_error_->setVisible(!error_.isEmpty() && !shown);
}

}  // namespace moe::workbench
