// Checkpoint weights: round trip with MTP aliases, strict name/shape checks, FP8 (block-scaled) checkpoints,
// BF16 checkpoints, the sharded layout, and error messages that name the file and the tensor.
// Needs only ParameterStore (config.json is the caller's business).
#include <QtTest>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/parameters.h"
#include "quant/block_scaling.h"
#include "store/checkpoint.h"
#include "store/safetensors.h"
#include "test_support.h"

using namespace moe;
namespace fs = std::filesystem;

namespace {

// A miniature of the model's layout: embedding, one layer with a buffer, head, an MTP layer.
void build_store(ParameterStore& s, uint64_t seed, int64_t vocab = 8) {
    s.add("model.embed_tokens.weight", {vocab, 4});
    s.add("model.layers.0.input_layernorm.weight", {4});
    s.add("model.layers.0.mlp.gate.weight", {3, 4});
    s.add("model.layers.0.mlp.gate.e_score_correction_bias", {3}, /*trainable=*/false);
    s.add("model.norm.weight", {4});
    s.add("lm_head.weight", {vocab, 4});
    s.add("model.layers.1.enorm.weight", {4});
    s.add("model.layers.1.eh_proj.weight", {4, 8});
    uint64_t k = seed;
    for (Parameter* p : s.all()) test::fill_uniform(p->value.data(), p->value.numel(), ++k);
}

const std::vector<CheckpointAlias> kAliases = {
    {"model.layers.1.embed_tokens.weight", "model.embed_tokens.weight"},
    {"model.layers.1.shared_head.head.weight", "lm_head.weight"},
};

bool same_values(const ParameterStore& a, const ParameterStore& b) {
    if (a.all().size() != b.all().size()) return false;
    for (const Parameter* p : a.all()) {
        const Parameter* q = b.find(p->name);
        if (!q || q->value.shape() != p->value.shape() ||
            std::memcmp(q->value.data(), p->value.data(), sizeof(float) * p->value.numel()) != 0)
            return false;
    }
    return true;
}

QString error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return QString::fromStdString(e.what());
    }
    return QString();
}

QString q(const std::string& s) { return QString::fromStdString(s); }

// Writes a single-file checkpoint with exactly the given tensors (fp32).
void write_tensors(const std::string& file, const std::vector<std::pair<std::string, Tensor>>& ts) {
    SafetensorsWriter w;
    for (const auto& [name, t] : ts) w.add_f32(name, t);
    w.write(file);
}

std::vector<std::pair<std::string, Tensor>> tensors_of(const ParameterStore& s) {
    std::vector<std::pair<std::string, Tensor>> out;
    for (const Parameter* p : s.all()) out.emplace_back(p->name, p->value);
    return out;
}

}  // namespace

class TestCheckpoint : public QObject {
    Q_OBJECT

private:
    QTemporaryDir tmp_;
    int counter_ = 0;
    // A fresh checkpoint directory per use.
    std::string new_dir() {
        const std::string d = tmp_.filePath(QString("ckpt%1").arg(++counter_)).toStdString();
        fs::create_directories(d);
        return d;
    }

private slots:
    void initTestCase() { QVERIFY(tmp_.isValid()); }

    void roundTripWithAliases() {
        ParameterStore saved;
        build_store(saved, 1);
        const std::string dir = tmp_.filePath("nested/new/ckpt").toStdString();  // created
        save_checkpoint_weights(dir, saved, kAliases, {{"step", "100"}});

        const std::string file = dir + "/model.safetensors";
        QVERIFY(fs::exists(file));
        QVERIFY(!fs::exists(dir + "/config.json"));  // the caller writes it
        SafetensorsReader r(file);
        QCOMPARE(r.metadata().at("format"), std::string("pt"));
        QCOMPARE(r.metadata().at("step"), std::string("100"));
        QCOMPARE(r.tensors().size(), saved.all().size() + kAliases.size());
        QVERIFY(r.contains("model.layers.0.mlp.gate.e_score_correction_bias"));  // buffer too
        for (const CheckpointAlias& a : kAliases) {
            Tensor copy = r.read_f32(a.alias);
            const Tensor& src = saved.at(a.source).value;
            QCOMPARE(copy.shape(), src.shape());
            QCOMPARE(std::memcmp(copy.data(), src.data(), sizeof(float) * src.numel()), 0);
        }

        ParameterStore loaded;
        build_store(loaded, 99);
        QVERIFY(!same_values(saved, loaded));
        // With a progress callback: one call per parameter, growing to the stored total (fp32:
        // 4 bytes per value, aliases not counted: they are not read).
        std::vector<std::pair<int64_t, int64_t>> calls;
        load_checkpoint_weights(dir, loaded, kAliases, [&](int64_t done, int64_t total) {
            calls.emplace_back(done, total);
        });
        QVERIFY(same_values(saved, loaded));
        int64_t values = 0;
        for (const Parameter* p : saved.all()) values += p->value.numel();
        QCOMPARE(int64_t(calls.size()), int64_t(saved.all().size()));
        for (size_t i = 0; i < calls.size(); ++i) {
            QCOMPARE(calls[i].second, 4 * values);
            QVERIFY(i == 0 || calls[i].first > calls[i - 1].first);
        }
        QCOMPARE(calls.back().first, 4 * values);
    }

    void absentAliasesAreFine() {
        ParameterStore saved, loaded;
        build_store(saved, 2);
        build_store(loaded, 3);
        const std::string dir = new_dir();
        save_checkpoint_weights(dir, saved, {});
        load_checkpoint_weights(dir, loaded, kAliases);
        QVERIFY(same_values(saved, loaded));
    }

    void aliasesWithoutListAreUnexpected() {
        // A checkpoint with MTP copies read by a caller that declares no aliases.
        ParameterStore saved, loaded;
        build_store(saved, 2);
        build_store(loaded, 3);
        const std::string dir = new_dir();
        save_checkpoint_weights(dir, saved, kAliases);
        const QString msg = error_of([&] { load_checkpoint_weights(dir, loaded, {}); });
        QVERIFY2(msg.contains("model.layers.1.embed_tokens.weight") && msg.contains("unexpected"),
                 qPrintable(msg));
    }

    void aliasWithWrongShape() {
        ParameterStore saved;
        build_store(saved, 4);
        auto ts = tensors_of(saved);
        ts.emplace_back("model.layers.1.shared_head.head.weight", Tensor({7, 4}));
        const std::string dir = new_dir();
        const std::string file = dir + "/model.safetensors";
        write_tensors(file, ts);
        ParameterStore loaded;
        build_store(loaded, 5);
        const QString msg = error_of([&] { load_checkpoint_weights(dir, loaded, kAliases); });
        QVERIFY2(msg.contains(q(file)) && msg.contains("model.layers.1.shared_head.head.weight") &&
                     msg.contains("lm_head.weight") && msg.contains("[7, 4]") &&
                     msg.contains("[8, 4]"),
                 qPrintable(msg));
    }

    void badAliasSource() {
        ParameterStore s;
        build_store(s, 6);
        const std::string dir = new_dir();
        QString msg = error_of([&] { save_checkpoint_weights(dir, s, {{"copy", "nope.weight"}}); });
        QVERIFY2(msg.contains("copy") && msg.contains("nope.weight"), qPrintable(msg));
        msg = error_of(
            [&] { save_checkpoint_weights(dir, s, {{"lm_head.weight", "model.norm.weight"}}); });
        QVERIFY2(msg.contains("lm_head.weight"), qPrintable(msg));
        QVERIFY(!fs::exists(dir + "/model.safetensors"));
    }

    void missingParameters() {
        ParameterStore small;
        build_store(small, 7);
        const std::string dir = new_dir();
        save_checkpoint_weights(dir, small, {});
        ParameterStore big;
        build_store(big, 8);
        for (int i = 0; i < 12; ++i)
            big.add("model.layers.9.extra" + std::to_string(i) + ".weight", {2});
        const QString msg = error_of([&] { load_checkpoint_weights(dir, big, {}); });
        QVERIFY2(msg.contains(q(dir + "/model.safetensors")), qPrintable(msg));
        QVERIFY2(msg.contains("12 parameter(s) missing"), qPrintable(msg));
        QVERIFY2(msg.contains("'model.layers.9.extra0.weight'"), qPrintable(msg));
        QVERIFY2(msg.contains("'model.layers.9.extra9.weight'"), qPrintable(msg));
        QVERIFY2(!msg.contains("extra10"), qPrintable(msg));  // at most 10 names
        QVERIFY2(msg.contains("and 2 more"), qPrintable(msg));
    }

    void unexpectedTensors() {
        ParameterStore saved;
        build_store(saved, 9);
        saved.add("model.layers.5.mlp.experts.3.up_proj.weight", {2, 2});
        const std::string dir = new_dir();
        save_checkpoint_weights(dir, saved, kAliases);
        ParameterStore loaded;
        build_store(loaded, 10);
        const QString msg = error_of([&] { load_checkpoint_weights(dir, loaded, kAliases); });
        QVERIFY2(msg.contains(q(dir + "/model.safetensors")) &&
                     msg.contains("'model.layers.5.mlp.experts.3.up_proj.weight'") &&
                     msg.contains("1 unexpected") && msg.contains("config.json"),
                 qPrintable(msg));
        QVERIFY(!same_values(saved, loaded));
    }

    void shapeMismatch() {
        ParameterStore saved;
        build_store(saved, 11, /*vocab=*/16);
        const std::string dir = new_dir();
        save_checkpoint_weights(dir, saved, kAliases);
        ParameterStore loaded;
        build_store(loaded, 12, /*vocab=*/8);
        ParameterStore before;
        build_store(before, 12, 8);
        const QString msg = error_of([&] { load_checkpoint_weights(dir, loaded, kAliases); });
        QVERIFY2(msg.contains(q(dir + "/model.safetensors")) &&
                     msg.contains("'model.embed_tokens.weight'") && msg.contains("[16, 4]") &&
                     msg.contains("[8, 4]"),
                 qPrintable(msg));
        QVERIFY(same_values(loaded, before));  // rejected before anything was written
    }

    // DeepSeek-V3's FP8 layout: a weight as F8_E4M3 codes plus <name>_scale_inv, one fp32
    // multiplier per 128x128 block. It loads as exactly decode(code) * scale.
    void fp8CheckpointDequantizes() {
        ParameterStore saved;
        build_store(saved, 13);
        Parameter& big = saved.add("model.layers.0.mlp.up_proj.weight", {200, 300});  // partial blocks
        test::fill_uniform(big.value.data(), big.value.numel(), 99, 3.0f);
        BlockQuantSpec spec;
        spec.format = ElementFormat::E4M3;
        spec.tile = kTile128x128;
        const BlockQuantized bq = quantize_blocks(big.value.data(), 200, 300, 300, spec);
        std::vector<float> expected(200 * 300);
        dequantize_blocks(bq, expected.data(), 300);

        auto write = [&](const std::string& dir, bool with_scale, Shape scale_shape) {
            SafetensorsWriter w;
            auto ts = tensors_of(saved);
            for (auto& [name, t] : ts)
                if (name != big.name) w.add_f32(name, t);
            w.add_u8(big.name, "F8_E4M3", bq.codes, {200, 300});
            std::vector<float> scales = bq.scales;
            scales.resize(static_cast<size_t>(shape_numel(scale_shape)), 1.0f);
            if (with_scale) w.add_f32(big.name + "_scale_inv", scales.data(), scale_shape);
            std::filesystem::create_directories(dir);
            w.write(dir + "/model.safetensors");
        };
        const std::string dir = new_dir();
        write(dir, true, {2, 3});
        ParameterStore loaded;
        build_store(loaded, 14);
        loaded.add(big.name, {200, 300});
        load_checkpoint_weights(dir, loaded, kAliases);
        QVERIFY(std::memcmp(loaded.at(big.name).value.data(), expected.data(), sizeof(float) * expected.size()) == 0);
        QCOMPARE(loaded.at("lm_head.weight").value[3], saved.at("lm_head.weight").value[3]);
        double err = 0, norm = 0;
        for (size_t i = 0; i < expected.size(); ++i) {
            err += std::pow(double(expected[i]) - big.value[static_cast<int64_t>(i)], 2);
            norm += std::pow(double(big.value[static_cast<int64_t>(i)]), 2);
        }
        QVERIFY(std::sqrt(err / norm) > 1e-3 && std::sqrt(err / norm) < 0.05);  // really FP8

        const std::string no_scale = new_dir();
        write(no_scale, false, {2, 3});
        QString msg = error_of([&] { load_checkpoint_weights(no_scale, loaded, kAliases); });
        QVERIFY2(msg.contains(QString::fromStdString(big.name)) && msg.contains("_scale_inv") &&
                     msg.contains("F8_E4M3"), qPrintable(msg));
        const std::string bad_grid = new_dir();
        write(bad_grid, true, {3, 3});
        msg = error_of([&] { load_checkpoint_weights(bad_grid, loaded, kAliases); });
        QVERIFY2(msg.contains("[3, 3]") && msg.contains("[2, 3]") && msg.contains("[200, 300]"), qPrintable(msg));
    }

    // A block scale next to a weight that is not FP8 is a broken file, named as such.
    void strayFp8ScaleRejected() {
        ParameterStore saved;
        build_store(saved, 13);
        auto ts = tensors_of(saved);
        ts.emplace_back("model.layers.0.mlp.gate.weight_scale_inv", Tensor({1, 1}));
        const std::string dir = new_dir();
        write_tensors(dir + "/model.safetensors", ts);
        ParameterStore loaded;
        build_store(loaded, 14);
        const QString msg = error_of([&] { load_checkpoint_weights(dir, loaded, kAliases); });
        QVERIFY2(msg.contains(q(dir + "/model.safetensors")) &&
                     msg.contains("model.layers.0.mlp.gate.weight_scale_inv") &&
                     msg.contains("FP8 block scale") && msg.contains("F32"),
                 qPrintable(msg));
    }

    void bf16CheckpointConverts() {
        // Hand-made BF16 file holding exactly the store's tensors, all set to k + 0.5 (exact).
        ParameterStore loaded;
        build_store(loaded, 15);
        nlohmann::json header = nlohmann::json::object();
        std::string data;
        int k = 0;
        for (const Parameter* p : loaded.all()) {
            const float v = static_cast<float>(k++) + 0.5f;
            uint32_t bits;
            std::memcpy(&bits, &v, 4);
            const uint16_t h = static_cast<uint16_t>(bits >> 16);
            const uint64_t begin = data.size();
            for (int64_t i = 0; i < p->value.numel(); ++i)
                data.append(reinterpret_cast<const char*>(&h), 2);
            header[p->name] = {{"dtype", "BF16"},
                               {"shape", p->value.shape()},
                               {"data_offsets", {begin, data.size()}}};
        }
        const std::string text = header.dump();
        std::string len(8, '\0');
        for (int i = 0; i < 8; ++i) len[i] = static_cast<char>(text.size() >> (8 * i));
        const std::string dir = new_dir();
        std::ofstream(dir + "/model.safetensors", std::ios::binary) << len << text << data;

        load_checkpoint_weights(dir, loaded, kAliases);
        k = 0;
        for (const Parameter* p : loaded.all()) {
            const float v = static_cast<float>(k++) + 0.5f;
            for (int64_t i = 0; i < p->value.numel(); ++i) QCOMPARE(p->value[i], v);
        }
    }

    void integerWeightRejected() {
        ParameterStore saved;
        build_store(saved, 16);
        SafetensorsWriter w;
        for (const Parameter* p : saved.all())
            if (p->name != "model.norm.weight") w.add_f32(p->name, p->value);
        w.add_i32("model.norm.weight", {1, 2, 3, 4});
        const std::string dir = new_dir();
        w.write(dir + "/model.safetensors");
        const QString msg = error_of([&] { load_checkpoint_weights(dir, saved, kAliases); });
        QVERIFY2(msg.contains("'model.norm.weight'") && msg.contains("I32"), qPrintable(msg));
    }

    void truncatedCheckpoint() {
        ParameterStore saved;
        build_store(saved, 17);
        const std::string dir = new_dir();
        save_checkpoint_weights(dir, saved, kAliases);
        const std::string file = dir + "/model.safetensors";
        fs::resize_file(file, fs::file_size(file) - 10);
        ParameterStore loaded;
        build_store(loaded, 18);
        const QString msg = error_of([&] { load_checkpoint_weights(dir, loaded, kAliases); });
        // The last tensor written is the second alias: the cut falls inside it.
        QVERIFY2(msg.contains(q(file)) && msg.contains("truncated") &&
                     msg.contains("model.layers.1.shared_head.head.weight"),
                 qPrintable(msg));
    }

    void notACheckpoint() {
        ParameterStore s;
        build_store(s, 19);
        const std::string empty = new_dir();
        QString msg = error_of([&] { load_checkpoint_weights(empty, s, kAliases); });
        QVERIFY2(msg.contains(q(empty)) && msg.contains("model.safetensors") &&
                     msg.contains("model.safetensors.index.json"),
                 qPrintable(msg));
        const std::string missing = tmp_.filePath("no-such-ckpt").toStdString();
        msg = error_of([&] { load_checkpoint_weights(missing, s, kAliases); });
        QVERIFY2(msg.contains(q(missing)), qPrintable(msg));
    }

    void saveIntoBlockedDirectory() {
        // A regular file where the directory should be: FileError naming it, nothing written.
        const std::string blocker = tmp_.filePath("blocker").toStdString();
        std::ofstream(blocker) << "x";
        ParameterStore s;
        build_store(s, 20);
        const QString msg = error_of([&] { save_checkpoint_weights(blocker + "/ckpt", s, {}); });
        QVERIFY2(msg.contains(q(blocker)), qPrintable(msg));
    }

    void shardedRead() {
        ParameterStore saved;
        build_store(saved, 21);
        const std::string dir = new_dir();
        const std::string shard1 = "model-00001-of-00002.safetensors";
        const std::string shard2 = "model-00002-of-00002.safetensors";
        SafetensorsWriter w1, w2;
        nlohmann::json weight_map = nlohmann::json::object();
        size_t i = 0;
        for (const Parameter* p : saved.all()) {
            const bool first = i++ < saved.all().size() / 2;
            (first ? w1 : w2).add_f32(p->name, p->value);
            weight_map[p->name] = first ? shard1 : shard2;
        }
        w2.add_f32(kAliases[1].alias, saved.at(kAliases[1].source).value);
        weight_map[kAliases[1].alias] = shard2;
        w1.write(dir + "/" + shard1);
        w2.write(dir + "/" + shard2);
        const nlohmann::json index = {{"metadata", {{"total_size", 1234}}},
                                      {"weight_map", weight_map}};
        std::ofstream(dir + "/model.safetensors.index.json") << index.dump(2);

        ParameterStore loaded;
        build_store(loaded, 22);
        load_checkpoint_weights(dir, loaded, kAliases);
        QVERIFY(same_values(saved, loaded));

        // Unexpected tensors name the shard they live in.
        ParameterStore fewer;
        fewer.add("model.embed_tokens.weight", {8, 4});
        QString msg = error_of([&] { load_checkpoint_weights(dir, fewer, {}); });
        QVERIFY2(msg.contains(q(dir + "/model.safetensors.index.json")) &&
                     msg.contains("'lm_head.weight' (in " + q(shard2) + ")"),
                 qPrintable(msg));

        // The index points a tensor at the wrong shard.
        nlohmann::json bad = index;
        bad["weight_map"]["lm_head.weight"] = shard1;
        std::ofstream(dir + "/model.safetensors.index.json") << bad.dump(2);
        msg = error_of([&] { load_checkpoint_weights(dir, loaded, kAliases); });
        QVERIFY2(msg.contains(q(dir + "/" + shard1)) && msg.contains("'lm_head.weight'"),
                 qPrintable(msg));

        // A shard file is missing.
        bad = index;
        bad["weight_map"]["lm_head.weight"] = "model-00003-of-00002.safetensors";
        std::ofstream(dir + "/model.safetensors.index.json") << bad.dump(2);
        msg = error_of([&] { load_checkpoint_weights(dir, loaded, kAliases); });
        QVERIFY2(msg.contains(q(dir + "/model-00003-of-00002.safetensors")), qPrintable(msg));

        // The index is not JSON.
        std::ofstream(dir + "/model.safetensors.index.json") << "{\"weight_map\": ";
        msg = error_of([&] { load_checkpoint_weights(dir, loaded, kAliases); });
        QVERIFY2(msg.contains(q(dir + "/model.safetensors.index.json")) &&
                     msg.contains("not valid JSON"),
                 qPrintable(msg));
    }

    void singleFileWinsOverIndex() {
        // Saving into a directory that held a sharded checkpoint: the new single file is read.
        ParameterStore saved;
        build_store(saved, 23);
        const std::string dir = new_dir();
        std::ofstream(dir + "/model.safetensors.index.json") << "not json";
        save_checkpoint_weights(dir, saved, kAliases);
        ParameterStore loaded;
        build_store(loaded, 24);
        load_checkpoint_weights(dir, loaded, kAliases);
        QVERIFY(same_values(saved, loaded));
    }
};

QTEST_APPLESS_MAIN(TestCheckpoint)
#include "tst_checkpoint.moc"
