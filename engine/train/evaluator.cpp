#include "train/evaluator.h"

#include <cmath>

namespace moe {

EvalReport evaluate(Model& model, DataLoader& data, int64_t batches, double mtp_lambda) {
    EvalReport r;
    r.labels = data.label_names();
    const size_t L = r.labels.size();
    std::vector<double> loss_sum(L, 0.0), hit(L, 0.0), answers(L, 0.0), all_hit(L, 0.0);
    std::vector<int64_t> count(L, 0);
    double total = 0.0;
    int64_t total_count = 0;

    const std::vector<Batch>& val = data.validation_batches(batches);
    const auto& labels = data.validation_labels();
    const auto& masks = data.validation_answer_masks();
    ForwardOptions opt;
    opt.mtp_lambda = mtp_lambda;
    const int64_t V = model.config().vocab_size;
    for (size_t i = 0; i < val.size(); ++i) {
        const Batch& b = val[i];
        model.forward(b, opt);
        // Read back to the host (the model may live on a device).
        const std::vector<float> host_losses = model.token_losses().to_host();
        const std::vector<float> host_logits = model.logits().to_host();
        const float* losses = host_losses.data();
        const float* logits = host_logits.data();
        const int64_t T = b.seq_len;
        for (int64_t s = 0; s < b.batch; ++s)
            for (int64_t t = 0; t < T; ++t) {
                const int64_t row = s * T + t;
                const size_t tgt = static_cast<size_t>(s * (T + 1) + t + 1);  // the target token
                const int32_t label = labels[i][tgt];
                const double l = losses[row];
                total += l;
                ++total_count;
                if (label < 0 || static_cast<size_t>(label) >= L) continue;
                const float* lg = logits + row * V;
                int64_t best = 0;
                for (int64_t v = 1; v < V; ++v)
                    if (lg[v] > lg[best]) best = v;
                const bool correct = best == b.tokens[tgt];
                loss_sum[label] += l;
                ++count[label];
                all_hit[label] += correct;
                if (masks[i][tgt]) {
                    answers[label] += 1;
                    hit[label] += correct;
                }
            }
    }
    r.loss = total_count ? total / double(total_count) : NAN;
    r.label_loss.resize(L);
    r.label_accuracy.resize(L);
    for (size_t l = 0; l < L; ++l) {
        r.label_loss[l] = count[l] ? loss_sum[l] / double(count[l]) : NAN;
        r.label_accuracy[l] = answers[l] > 0 ? hit[l] / answers[l]
                              : count[l]     ? all_hit[l] / double(count[l])
                                             : NAN;
    }
    return r;
}

}  // namespace moe
