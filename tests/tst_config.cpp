// ModelConfig (JSON I/O and every validation rule) and Project files, presets included.
#include <QtTest>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_fields.h"
#include "core/json_text.h"
#include "model/config.h"
#include "store/project.h"
#include "test_support.h"

using nlohmann::json;
using namespace moe;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

// The published DeepSeek-V3 config.json (YaRN rope scaling to 163,840 positions included).
const char* kDeepSeekV3Config = R"({
  "architectures": ["DeepseekV3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "auto_map": {
    "AutoConfig": "configuration_deepseek.DeepseekV3Config",
    "AutoModel": "modeling_deepseek.DeepseekV3Model",
    "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM"
  },
  "aux_loss_alpha": 0.001,
  "bos_token_id": 0,
  "eos_token_id": 1,
  "ep_size": 1,
  "first_k_dense_replace": 3,
  "hidden_act": "silu",
  "hidden_size": 7168,
  "initializer_range": 0.02,
  "intermediate_size": 18432,
  "kv_lora_rank": 512,
  "max_position_embeddings": 163840,
  "model_type": "deepseek_v3",
  "moe_intermediate_size": 2048,
  "moe_layer_freq": 1,
  "n_group": 8,
  "n_routed_experts": 256,
  "n_shared_experts": 1,
  "norm_topk_prob": true,
  "num_attention_heads": 128,
  "num_experts_per_tok": 8,
  "num_hidden_layers": 61,
  "num_key_value_heads": 128,
  "num_nextn_predict_layers": 1,
  "pretraining_tp": 1,
  "q_lora_rank": 1536,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "quantization_config": {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "weight_block_size": [128, 128]
  },
  "rms_norm_eps": 1e-06,
  "rope_scaling": {
    "beta_fast": 32,
    "beta_slow": 1,
    "factor": 40,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
    "original_max_position_embeddings": 4096,
    "type": "yarn"
  },
  "rope_theta": 10000,
  "routed_scaling_factor": 2.5,
  "scoring_func": "sigmoid",
  "seq_aux": true,
  "tie_word_embeddings": false,
  "topk_group": 4,
  "topk_method": "noaux_tc",
  "torch_dtype": "bfloat16",
  "transformers_version": "4.33.1",
  "use_cache": true,
  "v_head_dim": 128,
  "vocab_size": 129280
})";

// Runs `f`, expecting a ConfigError whose field() is `field` and whose message names the field
// and contains every string of `parts` (the offending value at least).
template <typename F>
QString expect_config_error(F&& f, const std::string& field, const std::vector<std::string>& parts) {
    try {
        f();
    } catch (const ConfigError& e) {
        const std::string what = e.what();
        if (e.field() != field)
            return QString::fromStdString("field() is \"" + e.field() + "\", expected \"" + field +
                                          "\": " + what);
        if (!contains(what, field))
            return QString::fromStdString("message lacks the field name: " + what);
        for (const auto& part : parts)
            if (!contains(what, part))
                return QString::fromStdString("message lacks \"" + part + "\": " + what);
        return {};
    } catch (const std::exception& e) {
        return QString("wrong exception type: ") + e.what();
    }
    return "no exception";
}

struct Rule {
    const char* description;
    std::function<void(ModelConfig&)> mutate;
    std::string field;
    std::vector<std::string> parts;  // the value, and key words of the explanation
};

}  // namespace

class TestConfig : public QObject {
    Q_OBJECT

private slots:
    void defaults_are_valid() {
        ModelConfig c;
        c.validate();
        QCOMPARE(c.qk_head_dim(), int64_t(32));
        QCOMPARE(c.num_moe_layers(), int64_t(3));
        QVERIFY(std::fabs(c.attention_scale() - 1.0 / std::sqrt(32.0)) < 1e-15);
        c.n_routed_experts = 0;
        QCOMPARE(c.num_moe_layers(), int64_t(0));
        QVERIFY(!c.is_moe_layer(3));
    }

    void every_validation_rule_rejects() {
        const std::vector<Rule> rules = {
            {"model_type", [](ModelConfig& c) { c.model_type = "deepseek_v2"; }, "model_type",
             {"\"deepseek_v2\"", "deepseek_v3"}},
            {"vocab_size", [](ModelConfig& c) { c.vocab_size = 0; }, "vocab_size", {"> 0", "got 0"}},
            {"hidden_size", [](ModelConfig& c) { c.hidden_size = -1; }, "hidden_size", {"got -1"}},
            {"num_hidden_layers", [](ModelConfig& c) { c.num_hidden_layers = 0; },
             "num_hidden_layers", {"got 0"}},
            {"num_attention_heads",
             [](ModelConfig& c) { c.num_attention_heads = c.num_key_value_heads = 0; },
             "num_attention_heads", {"got 0"}},
            {"num_key_value_heads", [](ModelConfig& c) { c.num_key_value_heads = 2; },
             "num_key_value_heads", {"got 2", "num_attention_heads"}},
            {"q_lora_rank", [](ModelConfig& c) { c.q_lora_rank = -1; }, "q_lora_rank", {"got -1"}},
            {"kv_lora_rank", [](ModelConfig& c) { c.kv_lora_rank = 0; }, "kv_lora_rank",
             {"must be > 0, got 0"}},
            {"qk_nope_head_dim", [](ModelConfig& c) { c.qk_nope_head_dim = -3; },
             "qk_nope_head_dim", {"got -3"}},
            {"qk_rope_head_dim zero", [](ModelConfig& c) { c.qk_rope_head_dim = 0; },
             "qk_rope_head_dim", {"got 0", "even"}},
            {"qk_rope_head_dim odd", [](ModelConfig& c) { c.qk_rope_head_dim = 15; },
             "qk_rope_head_dim", {"got 15", "even"}},
            {"v_head_dim", [](ModelConfig& c) { c.v_head_dim = 0; }, "v_head_dim", {"got 0"}},
            {"max_position_embeddings", [](ModelConfig& c) { c.max_position_embeddings = 0; },
             "max_position_embeddings", {"got 0"}},
            {"sliding_window", [](ModelConfig& c) { c.sliding_window = -5; }, "sliding_window",
             {">= 0", "got -5"}},
            {"first_k_dense_replace negative", [](ModelConfig& c) { c.first_k_dense_replace = -1; },
             "first_k_dense_replace", {"got -1", "num_hidden_layers"}},
            {"first_k_dense_replace too large", [](ModelConfig& c) { c.first_k_dense_replace = 5; },
             "first_k_dense_replace", {"got 5", "[0, num_hidden_layers = 4]"}},
            {"moe_layer_freq", [](ModelConfig& c) { c.moe_layer_freq = 2; }, "moe_layer_freq",
             {"got 2", "only 1"}},
            {"n_routed_experts", [](ModelConfig& c) { c.n_routed_experts = -4; },
             "n_routed_experts", {"got -4"}},
            {"n_shared_experts", [](ModelConfig& c) { c.n_shared_experts = -1; },
             "n_shared_experts", {"got -1"}},
            {"intermediate_size with a dense layer", [](ModelConfig& c) { c.intermediate_size = 0; },
             "intermediate_size", {"got 0", "dense"}},
            {"moe_intermediate_size with experts",
             [](ModelConfig& c) { c.moe_intermediate_size = 0; }, "moe_intermediate_size",
             {"got 0", "experts"}},
            {"num_nextn_predict_layers", [](ModelConfig& c) { c.num_nextn_predict_layers = -1; },
             "num_nextn_predict_layers", {"got -1"}},
            {"scoring_func", [](ModelConfig& c) { c.scoring_func = "relu"; }, "scoring_func",
             {"\"relu\"", "sigmoid", "softmax"}},
            {"topk_method", [](ModelConfig& c) { c.topk_method = "aux"; }, "topk_method",
             {"\"aux\"", "noaux_tc", "greedy", "group_limited_greedy"}},
            {"noaux_tc needs sigmoid", [](ModelConfig& c) { c.scoring_func = "softmax"; },
             "topk_method", {"\"noaux_tc\"", "sigmoid", "\"softmax\""}},
            {"n_group zero", [](ModelConfig& c) { c.n_group = 0; }, "n_group", {"got 0", ">= 1"}},
            {"n_group divides", [](ModelConfig& c) { c.n_group = 3; }, "n_group",
             {"got 3", "divide", "16"}},
            {"topk_group zero", [](ModelConfig& c) { c.topk_group = 0; }, "topk_group",
             {"got 0", "[1, n_group = 4]"}},
            {"topk_group above n_group", [](ModelConfig& c) { c.topk_group = 5; }, "topk_group",
             {"got 5"}},
            {"top-k zero", [](ModelConfig& c) { c.num_experts_per_tok = 0; },
             "num_experts_per_tok", {"got 0", "[1, n_routed_experts = 16]"}},
            {"top-k above experts", [](ModelConfig& c) { c.num_experts_per_tok = 17; },
             "num_experts_per_tok", {"got 17"}},
            {"top-k above group limit", [](ModelConfig& c) { c.num_experts_per_tok = 9; },
             "num_experts_per_tok",
             {"got 9", "top-k larger than the experts allowed by topk_group", "= 8"}},
            {"noaux_tc groups need 2 experts",
             [](ModelConfig& c) {
                 c.n_group = 16;
                 c.topk_group = 8;
             },
             "n_group", {"got 16", "top-2", "1 expert"}},
            {"routed_scaling_factor zero", [](ModelConfig& c) { c.routed_scaling_factor = 0; },
             "routed_scaling_factor", {"got 0"}},
            {"routed_scaling_factor nan", [](ModelConfig& c) { c.routed_scaling_factor = NAN; },
             "routed_scaling_factor", {"got nan"}},
            {"aux_loss_alpha", [](ModelConfig& c) { c.aux_loss_alpha = -0.1; }, "aux_loss_alpha",
             {"got -0.1", ">= 0"}},
            {"rms_norm_eps", [](ModelConfig& c) { c.rms_norm_eps = 0; }, "rms_norm_eps",
             {"got 0"}},
            {"rope_theta", [](ModelConfig& c) { c.rope_theta = -1; }, "rope_theta", {"got -1"}},
            {"initializer_range", [](ModelConfig& c) { c.initializer_range = 0; },
             "initializer_range", {"got 0"}},
            {"hidden_act", [](ModelConfig& c) { c.hidden_act = "gelu"; }, "hidden_act",
             {"\"gelu\"", "silu"}},
            {"tie_word_embeddings", [](ModelConfig& c) { c.tie_word_embeddings = true; },
             "tie_word_embeddings", {"got true", "untied"}},
        };
        for (const Rule& rule : rules) {
            ModelConfig c;
            rule.mutate(c);
            const QString failure =
                expect_config_error([&] { c.validate(); }, rule.field, rule.parts);
            QVERIFY2(failure.isEmpty(),
                     qPrintable(QString(rule.description) + ": " + failure));
        }
    }

    void conditional_rules_accept() {
        // No dense layer: intermediate_size is unused.
        ModelConfig a;
        a.first_k_dense_replace = 0;
        a.intermediate_size = 0;
        a.validate();
        // No experts: the MoE sizes are unused (a dense model).
        ModelConfig b;
        b.n_routed_experts = 0;
        b.moe_intermediate_size = 0;
        b.num_experts_per_tok = 0;
        b.validate();
        QCOMPARE(b.num_moe_layers(), int64_t(0));
        // One expert per group is fine without the bias (group score = max).
        ModelConfig d;
        d.scoring_func = "softmax";
        d.topk_method = "group_limited_greedy";
        d.n_group = 16;
        d.topk_group = 8;
        d.validate();
        // All layers dense but experts configured (only the MTP block would be MoE).
        ModelConfig e;
        e.first_k_dense_replace = e.num_hidden_layers;
        e.validate();
        QCOMPARE(e.num_moe_layers(), int64_t(0));
        // q_lora_rank 0 is the plain q projection; qk_nope_head_dim 0 is allowed.
        ModelConfig f;
        f.q_lora_rank = 0;
        f.qk_nope_head_dim = 0;
        f.validate();
    }

    void from_json_keeps_defaults_for_missing_fields() {
        QVERIFY(ModelConfig::from_json(json::object()) == ModelConfig{});
        const ModelConfig c = ModelConfig::from_json(json{{"vocab_size", 512}});
        QCOMPARE(c.vocab_size, int64_t(512));
        QCOMPARE(c.hidden_size, ModelConfig{}.hidden_size);
        // An integer where a real is expected is fine.
        QCOMPARE(ModelConfig::from_json(json{{"rope_theta", 50000}}).rope_theta, 50000.0);
    }

    void from_json_rejects_wrong_types() {
        struct Case {
            json j;
            std::string field;
            std::vector<std::string> parts;
        };
        const std::vector<Case> cases = {
            {{{"vocab_size", "256"}}, "vocab_size", {"expected an integer", "string \"256\""}},
            {{{"vocab_size", 1.5}}, "vocab_size", {"expected an integer", "number 1.5"}},
            {{{"norm_topk_prob", 1}}, "norm_topk_prob", {"expected true or false", "integer 1"}},
            {{{"rope_theta", "1e4"}}, "rope_theta", {"expected a number", "string"}},
            {{{"scoring_func", json::array({"sigmoid"})}}, "scoring_func",
             {"expected a string", "array"}},
            {{{"hidden_size", nullptr}}, "hidden_size", {"expected an integer", "null"}},
        };
        for (const auto& c : cases) {
            const QString failure =
                expect_config_error([&] { ModelConfig::from_json(c.j); }, c.field, c.parts);
            QVERIFY2(failure.isEmpty(), qPrintable(QString::fromStdString(c.j.dump()) + ": " + failure));
        }
        QString failure = expect_config_error([] { ModelConfig::from_json(json::array()); },
                                              "model config", {"expected a JSON object"});
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
    }

    void from_json_rejects_unknown_fields_with_suggestion() {
        QString failure = expect_config_error(
            [] { ModelConfig::from_json(json{{"vocab_sise", 5}}); }, "vocab_sise",
            {"unknown field", "did you mean \"vocab_size\"?"});
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        failure = expect_config_error([] { ModelConfig::from_json(json{{"num_experts_per_token", 4}}); },
                                      "num_experts_per_token",
                                      {"did you mean \"num_experts_per_tok\"?"});
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        try {
            ModelConfig::from_json(json{{"learning_rate", 1e-3}});
            QFAIL("unknown field accepted");
        } catch (const ConfigError& e) {
            QCOMPARE(e.field(), std::string("learning_rate"));
            QVERIFY2(!contains(e.what(), "did you mean"), e.what());
        }
        QCOMPARE(json_fields::edit_distance("kitten", "sitting"), size_t(3));
    }

    void bookkeeping_fields_round_trip() {
        const json original = json::parse(kDeepSeekV3Config);
        const ModelConfig c = ModelConfig::from_json(original);
        c.validate();
        QCOMPARE(c.num_hidden_layers, int64_t(61));
        QCOMPARE(c.q_lora_rank, int64_t(1536));
        QVERIFY(c.passthrough.count("quantization_config") == 1);
        const json written = c.to_json();
        QVERIFY2(written == original, written.dump(2).c_str());
        QVERIFY(ModelConfig::from_json(written) == c);
    }

    void bookkeeping_fields_are_checked() {
        QString failure = expect_config_error(
            [] { ModelConfig::from_json(json{{"attention_dropout", 0.1}}); }, "attention_dropout",
            {"0.1", "must be 0"});
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        failure = expect_config_error([] { ModelConfig::from_json(json{{"attention_bias", true}}); },
                                      "attention_bias", {"true", "false"});
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        // rope_scaling: YaRN loads (with DeepSeek's defaults for what is left out), other kinds
        // and unknown keys are refused by name.
        const ModelConfig y = ModelConfig::from_json(
            json{{"max_position_embeddings", 8192},
                 {"rope_scaling", {{"type", "yarn"}, {"factor", 4}, {"original_max_position_embeddings", 2048}}}});
        y.validate();
        QVERIFY(y.rope_scaling.yarn && y.rope_scaling.factor == 4.0 && y.rope_scaling.beta_fast == 32.0);
        QVERIFY(ModelConfig::from_json(y.to_json()) == y);
        failure = expect_config_error(
            [] { ModelConfig::from_json(json{{"rope_scaling", {{"type", "linear"}, {"factor", 2}}}}); },
            "rope_scaling.type", {"\"linear\"", "yarn"});
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        failure = expect_config_error(
            [] { ModelConfig::from_json(json{{"rope_scaling", {{"type", "yarn"}, {"factr", 2}}}}); },
            "factr", {"rope_scaling"});
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        failure = expect_config_error(
            [] {
                ModelConfig::from_json(json{{"rope_scaling", {{"type", "yarn"}, {"factor", 0.5}}}})
                    .validate();
            },
            "rope_scaling.factor", {"0.5", "[1, 10000]"});
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        // transformers' derived fields: accepted when consistent.
        ModelConfig::from_json(json{{"qk_head_dim", 32}, {"head_dim", 16}});
        failure = expect_config_error([] { ModelConfig::from_json(json{{"qk_head_dim", 48}}); },
                                      "qk_head_dim", {"48", "32"});
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
    }

    void q_lora_rank_null_is_plain_projection() {
        const ModelConfig c = ModelConfig::from_json(json{{"q_lora_rank", nullptr}});
        QCOMPARE(c.q_lora_rank, int64_t(0));
        QVERIFY(c.to_json()["q_lora_rank"].is_null());
        QVERIFY(ModelConfig::from_json(c.to_json()) == c);
    }

    // Mistral/Qwen2 name and semantics; absent, null and 0 all mean full causal attention, and
    // a config without a window is written without the field.
    void sliding_window_round_trip() {
        QCOMPARE(ModelConfig::from_json(json::object()).sliding_window, int64_t(0));
        QCOMPARE(ModelConfig::from_json(json{{"sliding_window", nullptr}}).sliding_window, int64_t(0));
        QVERIFY(!ModelConfig{}.to_json().contains("sliding_window"));
        ModelConfig c;
        c.sliding_window = 64;
        c.validate();
        const json j = c.to_json();
        QCOMPARE(j["sliding_window"].get<int64_t>(), int64_t(64));
        QVERIFY(ModelConfig::from_json(j) == c);
        QTemporaryDir dir;
        const std::string path = dir.filePath("config.json").toStdString();
        c.save(path);
        QCOMPARE(ModelConfig::load(path).sliding_window, int64_t(64));
        // Negative windows: rejected by validate, and by load with the path in the message.
        ModelConfig bad;
        bad.sliding_window = -1;
        bad.save(path);
        const QString failure = expect_config_error([&] { ModelConfig::load(path); }, "sliding_window",
                                                    {"got -1", "config.json"});
        QVERIFY2(failure.isEmpty(), qPrintable(failure));
        const QString wrong_type = expect_config_error(
            [] { ModelConfig::from_json(json{{"sliding_window", "64"}}); }, "sliding_window", {"integer"});
        QVERIFY2(wrong_type.isEmpty(), qPrintable(wrong_type));
    }

    // DeepSeek-V3.2's field names; a dense config is written without them.
    void sparse_attention_fields() {
        const json none = ModelConfig{}.to_json();
        QVERIFY(!none.contains("index_topk") && !none.contains("index_n_heads") && !none.contains("index_head_dim"));
        ModelConfig c;
        c.index_topk = 64;
        c.index_n_heads = 2;
        c.index_head_dim = 24;
        c.validate();
        const json j = c.to_json();
        QCOMPARE(j["index_topk"].get<int64_t>(), int64_t(64));
        QCOMPARE(j["index_head_dim"].get<int64_t>(), int64_t(24));
        QVERIFY(ModelConfig::from_json(j) == c);
        struct Bad {
            std::function<void(ModelConfig&)> set;
            std::string field;
            std::vector<std::string> parts;
        };
        const std::vector<Bad> bad = {
            {[](ModelConfig& x) { x.index_topk = -2; }, "index_topk", {"got -2"}},
            {[](ModelConfig& x) { x.index_topk = 8; x.sliding_window = 16; }, "sliding_window", {"index_topk", "got 16"}},
            {[](ModelConfig& x) { x.index_topk = 8; x.index_n_heads = 0; }, "index_n_heads", {"got 0"}},
            {[](ModelConfig& x) { x.index_topk = 8; x.index_head_dim = 8; }, "index_head_dim", {"qk_rope_head_dim", "got 8"}},
        };
        for (const Bad& b : bad) {
            ModelConfig x;
            b.set(x);
            const QString failure = expect_config_error([&] { x.validate(); }, b.field, b.parts);
            QVERIFY2(failure.isEmpty(), qPrintable(failure));
        }
    }

    void round_trip_to_json_from_json() {
        ModelConfig c;
        c.vocab_size = 1000;
        c.scoring_func = "softmax";
        c.topk_method = "greedy";
        c.norm_topk_prob = false;
        c.routed_scaling_factor = 1.0;
        c.rms_norm_eps = 1e-5;
        c.aux_loss_alpha = 0.003;
        c.seq_aux = false;
        c.num_nextn_predict_layers = 2;
        c.validate();
        const ModelConfig back = ModelConfig::from_json(c.to_json());
        QVERIFY(back == c);
        QVERIFY(ModelConfig::from_json(ModelConfig{}.to_json()) == ModelConfig{});
    }

    void save_and_load() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const std::string path = dir.path().toStdString() + "/sub/config.json";
        ModelConfig c = ModelConfig::from_json(json::parse(kDeepSeekV3Config));
        c.save(path);
        QVERIFY(!std::filesystem::exists(path + ".tmp"));
        QVERIFY(ModelConfig::load(path) == c);
        // Pretty JSON with indent 2.
        std::ifstream in(path);
        std::string first, second;
        std::getline(in, first);
        std::getline(in, second);
        QCOMPARE(first, std::string("{"));
        QVERIFY2(second.rfind("  \"", 0) == 0, second.c_str());
    }

    void load_errors_name_the_path() {
        QTemporaryDir dir;
        const std::string missing = dir.path().toStdString() + "/missing.json";
        try {
            ModelConfig::load(missing);
            QFAIL("missing file loaded");
        } catch (const FileError& e) {
            QCOMPARE(e.path(), missing);
            QVERIFY(contains(e.what(), missing));
        }
        const std::string broken = dir.path().toStdString() + "/broken.json";
        {
            std::ofstream out(broken);
            out << "{\n  \"vocab_size\": 256,\n  \"hidden_size\": \n}\n";
        }
        try {
            ModelConfig::load(broken);
            QFAIL("invalid JSON loaded");
        } catch (const FileError& e) {
            QVERIFY2(contains(e.what(), broken) && contains(e.what(), "line 4"), e.what());
        }
        const std::string bad = dir.path().toStdString() + "/bad.json";
        {
            std::ofstream out(bad);
            out << R"({"kv_lora_rank": 0})";
        }
        try {
            ModelConfig::load(bad);
            QFAIL("invalid config loaded");
        } catch (const ConfigError& e) {
            QCOMPARE(e.field(), std::string("kv_lora_rank"));
            QCOMPARE(std::string(e.what()), bad + ": kv_lora_rank: must be > 0, got 0");
        }
    }

    void presets_load_and_validate() {
        // Every preset shipped in projects/.
        std::vector<std::string> names;
        for (const auto& f : std::filesystem::directory_iterator(moe::test::source_path("projects")))
            if (f.path().extension() == ".json") names.push_back(f.path().stem().string());
        QVERIFY(names.size() >= 9);
        for (const auto& name : names) {
            const std::string path = moe::test::source_path("projects/" + name + ".json");
            Project p;
            try {
                p = Project::load(path);
            } catch (const std::exception& e) {
                QFAIL(e.what());
            }
            QCOMPARE(p.name, name);
            QVERIFY2(!p.description.empty(), name.c_str());
            // Saving and loading again keeps everything.
            QTemporaryDir dir;
            const std::string copy = dir.path().toStdString() + "/" + name + ".json";
            p.save(copy);
            QVERIFY(Project::load(copy) == p);
        }
        const Project tiny = Project::load(moe::test::source_path("projects/tiny-tasks.json"));
        QCOMPARE(tiny.model.num_nextn_predict_layers, int64_t(1));
        QCOMPARE(tiny.model.hidden_size, int64_t(128));
        QCOMPARE(tiny.training.batch_size, int64_t(16));
        QCOMPARE(tiny.training.seq_len, int64_t(128));
        const Project v3 = Project::load(moe::test::source_path("projects/deepseek-v3-671b.json"));
        QCOMPARE(v3.model.vocab_size, int64_t(129280));
        QCOMPARE(v3.training.seq_len, int64_t(4096));
        const Project v2 = Project::load(moe::test::source_path("projects/deepseek-v2-lite-16b.json"));
        QCOMPARE(v2.model.q_lora_rank, int64_t(0));
        QCOMPARE(v2.model.scoring_func, std::string("softmax"));
    }

    void project_accepts_bare_hf_config() {
        QTemporaryDir dir;
        const std::string path = dir.path().toStdString() + "/my-model.json";
        ModelConfig c;
        c.vocab_size = 300;
        c.save(path);
        const Project p = Project::load(path);
        QCOMPARE(p.name, std::string("my-model"));
        QVERIFY(p.model == c);
        QVERIFY(p.training == TrainingSettings{});
    }

    // Sizes that used to pass validation and overflow later (negative totals in --summary,
    // "routed experts 0", malloc(): invalid size in the worker).
    void absurd_sizes_are_refused_naming_the_field() {
        struct Case {
            std::function<void(ModelConfig&)> mutate;
            std::string field;
            std::vector<std::string> parts;
        };
        const std::vector<Case> cases = {
            {[](ModelConfig& c) { c.hidden_size = INT64_MAX; }, "hidden_size",
             {"9223372036854775807", "size limit"}},
            {[](ModelConfig& c) { c.hidden_size = 1000000000; }, "hidden_size", {"1000000000"}},
            {[](ModelConfig& c) { c.n_routed_experts = 100000; c.n_group = 1; c.topk_group = 1; },
             "n_routed_experts", {"100000"}},
            {[](ModelConfig& c) { c.vocab_size = int64_t(1) << 40; }, "vocab_size", {"1099511627776"}},
            {[](ModelConfig& c) { c.num_hidden_layers = 1 << 20; }, "num_hidden_layers", {"1048576"}},
            // Each field within its bound, the model as a whole not: the parameter limit, and
            // the field that makes it large.
            {[](ModelConfig& c) {
                 c.hidden_size = 1 << 20;
                 c.n_routed_experts = 65536;
                 c.n_group = 1;
                 c.topk_group = 1;
                 c.moe_intermediate_size = 1 << 22;
             },
             "moe_intermediate_size", {"parameters, more than the 1e+13", "4194304"}},
        };
        for (const auto& c : cases) {
            ModelConfig cfg;
            c.mutate(cfg);
            const QString failure = expect_config_error([&] { cfg.validate(); }, c.field, c.parts);
            QVERIFY2(failure.isEmpty(), qPrintable(failure));
        }
        // The largest published shape still validates (DeepSeek-V3: 671B parameters).
        ModelConfig v3 = ModelConfig::from_json(json::parse(kDeepSeekV3Config));
        v3.validate();
        QVERIFY(ModelConfig::size_limit("hidden_size") > v3.hidden_size);
    }

    // Deep nesting, duplicate keys and oversized files are refused with a message, never a crash
    // (a 100,000-deep array overflowed the stack while the error message was being written).
    void hostile_json_files_are_refused() {
        QTemporaryDir dir;
        auto write = [&](const std::string& name, const std::string& text) {
            const std::string path = dir.path().toStdString() + "/" + name;
            std::ofstream(path, std::ios::binary) << text;
            return path;
        };
        auto load_error = [](const std::string& path) -> std::string {
            try {
                Project::load(path);
            } catch (const FileError& e) {
                return e.what();
            } catch (const std::exception& e) {
                return std::string("wrong exception: ") + e.what();
            }
            return "loaded";
        };
        const std::string deep =
            write("deep.json", std::string(100000, '[') + std::string(100000, ']'));
        std::string what = load_error(deep);
        QVERIFY2(contains(what, deep) && contains(what, "nested deeper than 64 levels"), what.c_str());
        const std::string deep_obj = write("deep-obj.json", [] {
            std::string t;
            for (int i = 0; i < 5000; ++i) t += "{\"a\":";
            t += "1";
            for (int i = 0; i < 5000; ++i) t += "}";
            return t;
        }());
        what = load_error(deep_obj);
        QVERIFY2(contains(what, "nested deeper"), what.c_str());
        // 64 levels is fine for the parser (the project then names the wrong type).
        QCOMPARE(json_nesting_depth(std::string(64, '[') + std::string(64, ']')), 64);
        QCOMPARE(json_nesting_depth("[\"[[[[\", {\"a\": [1]}]"), 3);  // brackets in strings skipped

        const std::string dup = write("dup.json", R"({"name": "a", "training": {"optimizer":
            {"lr": 0.001, "lr": 0.1}}})");
        what = load_error(dup);
        QVERIFY2(contains(what, dup) && contains(what, "duplicate key \"lr\" in training.optimizer"),
                 what.c_str());
        what = load_error(write("dup-top.json", R"({"name": "a", "name": "b"})"));
        QVERIFY2(contains(what, "duplicate key \"name\" at the top level"), what.c_str());

        // Larger than any config: refused from its size, before it is read.
        const std::string big = dir.path().toStdString() + "/big.json";
        {
            std::ofstream out(big, std::ios::binary);
            out << "[\"";
            const std::string chunk(1 << 20, 'x');
            for (size_t i = 0; i <= kMaxJsonBytes >> 20; ++i) out << chunk;
            out << "\"]";
        }
        what = load_error(big);
        QVERIFY2(contains(what, "more than the"), what.c_str());
        QVERIFY2(contains(load_error(dir.path().toStdString()), "is a folder"),
                 load_error(dir.path().toStdString()).c_str());
    }

    void project_validation() {
        auto project_json = [] {
            Project p;
            p.name = "x";
            return p.to_json();
        };
        struct Case {
            std::function<void(json&)> mutate;
            std::string field;
            std::vector<std::string> parts;
        };
        const std::vector<Case> cases = {
            {[](json& j) { j["trainng"] = json::object(); }, "trainng",
             {"unknown field", "did you mean \"training\"?"}},
            {[](json& j) { j["training"]["batchsize"] = 4; }, "batchsize",
             {"did you mean \"batch_size\"?"}},
            {[](json& j) { j["training"]["batch_size"] = 0; }, "training.batch_size", {"got 0"}},
            {[](json& j) { j["training"]["seq_len"] = -5; }, "training.seq_len", {"got -5"}},
            {[](json& j) { j["training"]["seq_len"] = 2048; }, "training.seq_len",
             {"got 2048", "max_position_embeddings (1024)"}},
            {[](json& j) { j["training"]["mtp"] = {{"lambda", -0.5}}; }, "training.mtp.lambda",
             {"got -0.5"}},
            {[](json& j) { j["training"]["threads"] = -1; }, "training.threads", {"got -1"}},
            {[](json& j) { j["training"]["seed"] = "abc"; }, "training.seed",
             {"expected an integer"}},
            {[](json& j) { j["model"]["kv_lora_rank"] = 0; }, "kv_lora_rank", {"got 0"}},
            {[](json& j) { j["name"] = 3; }, "name", {"expected a string"}},
            // Hardening: sizes and thread counts have upper bounds; names are not paths.
            {[](json& j) { j["training"]["threads"] = 100000; }, "training.threads",
             {"got 100000", "1024"}},
            {[](json& j) { j["training"]["batch_size"] = 1000000000; }, "training.batch_size",
             {"got 1000000000", "size limit"}},
            {[](json& j) { j["training"]["batch_size"] = 1 << 20; j["training"]["seq_len"] = 1024; },
             "training.batch_size", {"1048576 x 1024", "tokens per micro-batch"}},
            {[](json& j) { j["training"]["optimizer"] = {{"grad_accum", 1 << 20}}; },
             "training.optimizer.grad_accum", {"1048576"}},
            {[](json& j) { j["name"] = "runs/../../outside"; }, "name", {"'/'", "runs/../../outside"}},
            {[](json& j) { j["name"] = "/tmp/abs"; }, "name", {"'/'"}},
            {[](json& j) { j["name"] = ".."; }, "name", {"not a folder"}},
            {[](json& j) { j["name"] = ".hidden"; }, "name", {"'.'"}},
        };
        for (const auto& c : cases) {
            json j = project_json();
            c.mutate(j);
            const QString failure = expect_config_error(
                [&] { Project::from_json(j).validate(); }, c.field, c.parts);
            QVERIFY2(failure.isEmpty(), qPrintable(QString::fromStdString(j.dump()) + ": " + failure));
        }
        // A valid project round-trips through JSON.
        Project p;
        p.name = "demo";
        p.description = "d";
        p.training.mtp.lambda = 0.1;
        p.training.threads = 2;
        p.training.data = DataSpec::from_json("corpus.txt");
        p.validate();
        QVERIFY(Project::from_json(p.to_json()) == p);
    }
};

QTEST_APPLESS_MAIN(TestConfig)
#include "tst_config.moc"
