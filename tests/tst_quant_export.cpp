// Checkpoints with integer-quantized projection weights (store/int_weights.h, moe-train
// --export-quantized): the layout as documented (codes, scales, zeros, metadata,
// quantization_config), a loaded export equals the in-memory post-training quantization of the
// same format bit for bit (weights, validation loss), packed INT4 / INT3 codes round-trip
// exactly, damaged quantized tensors are FileErrors naming the file and the tensor, and an
// existing folder is only replaced when asked.
#include <QtTest>

#include <QTemporaryDir>

#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "core/json_file.h"
#include "inspect/weight_quantization.h"
#include "model/linear_precision.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "quant/int_quant.h"
#include "store/int_weights.h"
#include "store/model_checkpoint.h"
#include "store/safetensors.h"
#include "test_support.h"
#include "train/trainer.h"

using namespace moe;
namespace fs = std::filesystem;

namespace {

QString thrown(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return QString::fromStdString(e.what());
    }
    return "nothing thrown";
}

std::unique_ptr<Model> load_model(const std::string& dir, Backend& be) {
    auto m = std::make_unique<Model>(load_checkpoint_config(dir), be);
    load_model_weights(dir, *m);
    return m;
}

// A copy of a safetensors file, tensor by tensor, with `edit` applied to the list first (dtype,
// shape, bytes, order, metadata): damaged files made from a real export.
struct StoredTensor {
    std::string name, dtype;
    Shape shape;
    std::vector<float> f32;
    std::vector<uint8_t> bytes;
};
struct StoredFile {
    std::vector<StoredTensor> tensors;
    std::map<std::string, std::string> metadata;
    StoredTensor& at(const std::string& name) {
        for (StoredTensor& t : tensors)
            if (t.name == name) return t;
        throw Error("test: no tensor " + name);
    }
    void erase(const std::string& name) {
        std::erase_if(tensors, [&](const StoredTensor& t) { return t.name == name; });
    }
};
StoredFile read_stored(const std::string& path) {
    const SafetensorsReader r(path);
    StoredFile f;
    f.metadata = r.metadata();
    for (const SafetensorsEntry& e : r.tensors()) {
        StoredTensor t{e.name, e.dtype, e.shape, {}, {}};
        if (e.dtype == "F32") {
            t.f32.resize(size_t(e.numel()));
            r.read_f32_into(e.name, t.f32.data(), e.numel());
        } else {
            t.bytes = r.read_bytes_u8(e.name);
        }
        f.tensors.push_back(std::move(t));
    }
    return f;
}
void write_stored(const StoredFile& f, const std::string& path) {
    SafetensorsWriter w;
    for (const StoredTensor& t : f.tensors) {
        if (t.dtype == "F32")
            w.add_f32(t.name, t.f32.data(), t.shape);
        else
            w.add_u8(t.name, t.dtype, t.bytes, t.shape);
    }
    for (const auto& [k, v] : f.metadata) w.set_metadata(k, v);
    w.write(path);
}

}  // namespace

class TestQuantExport : public QObject {
    Q_OBJECT
    QTemporaryDir dir_;
    std::string ckpt_;  // a trained run's checkpoint
    const std::string weight_ = "model.layers.1.mlp.experts.0.up_proj.weight";

    std::string path(const std::string& name) const {
        return dir_.filePath(QString::fromStdString(name)).toStdString();
    }

    std::string exported(const std::string& format) {
        const std::string out = path("export-" + format);
        if (!fs::exists(out)) export_quantized_checkpoint(ckpt_, out, WeightFormat::parse(format));
        return out;
    }

private slots:
    void initTestCase() {
        Project p = test::shrunk_tiny_tasks(40);
        p.model.moe_intermediate_size = 24;  // an odd half-width would not divide; 24 and 32 do
        Trainer t(p, {path("run.h5"), path("ckpt")}, 1);
        while (!t.finished()) t.step();
        ckpt_ = t.save_checkpoint();
        QVERIFY(!ckpt_.empty());
    }

    // The file holds what docs/precision.md says: no fp32 copy of a projection weight, its codes
    // (U8 nibbles for int4, I8 for int8 symmetric), F32 scales [out, groups], U8 zeros when
    // asymmetric, the metadata and config.json's quantization_config; the rest stays F32.
    void layout() {
        const std::string out = exported("int4-g8-asym");
        const SafetensorsReader r((fs::path(out) / kCheckpointWeightsFile).string());
        QVERIFY(!r.contains(weight_));
        const IntWeightNames n = int_weight_names(weight_);
        QCOMPARE(n.qweight, std::string("model.layers.1.mlp.experts.0.up_proj.qweight"));
        CpuBackend be(1);
        const auto src = load_model(ckpt_, be);
        const Shape w = src->parameters().at(weight_).value.shape();  // [24, 32]
        QCOMPARE(r.entry(n.qweight).dtype, std::string("U8"));
        QCOMPARE(r.entry(n.qweight).shape, (Shape{w[0], (w[1] + 1) / 2}));
        QCOMPARE(r.entry(n.scales).dtype, std::string("F32"));
        QCOMPARE(r.entry(n.scales).shape, (Shape{w[0], w[1] / 8}));
        QCOMPARE(r.entry(n.zeros).dtype, std::string("U8"));
        QCOMPARE(r.metadata().at(kQuantBitsKey), std::string("4"));
        QCOMPARE(r.metadata().at(kQuantSchemeKey), std::string("asymmetric"));
        QCOMPARE(r.entry("model.embed_tokens.weight").dtype, std::string("F32"));
        QCOMPARE(r.entry("lm_head.weight").dtype, std::string("F32"));
        int quantized = 0;
        for (const Parameter* p : src->parameters().all())
            if (is_projection_weight(p->name, p->value.rank())) {
                QVERIFY2(r.contains(int_weight_names(p->name).qweight), p->name.c_str());
                ++quantized;
            } else {
                QVERIFY2(r.contains(p->name), p->name.c_str());
            }
        QVERIFY(quantized > 10);
        const nlohmann::json cfg = read_json_file((fs::path(out) / "config.json").string());
        QCOMPARE(cfg["quantization_config"]["bits"].get<int>(), 4);
        QCOMPARE(cfg["quantization_config"]["group_size"].get<int>(), 8);
        QCOMPARE(cfg["quantization_config"]["sym"].get<bool>(), false);
        QCOMPARE(checkpoint_quantization(out), std::string("int4-g8-asym"));
        QCOMPARE(checkpoint_quantization(ckpt_), std::string());
        // INT8 symmetric codes are signed bytes; INT4 takes about an eighth of fp32.
        const SafetensorsReader r8((fs::path(exported("int8")) / kCheckpointWeightsFile).string());
        QCOMPARE(r8.entry(n.qweight).dtype, std::string("I8"));
        QCOMPARE(r8.entry(n.qweight).shape, w);
        QVERIFY(!r8.contains(n.zeros));
        const auto size_of = [](const std::string& d) {
            return double(fs::file_size(fs::path(d) / kCheckpointWeightsFile));
        };
        qInfo("model.safetensors: fp32 %.0f bytes, int8 %.0f, int4 %.0f, int4-g8-asym %.0f",
              size_of(ckpt_), size_of(exported("int8")), size_of(exported("int4")), size_of(out));
        QVERIFY(size_of(exported("int8")) < size_of(ckpt_));
        QVERIFY(size_of(exported("int4")) < size_of(exported("int8")));
        // A reference of another shape cannot be compared with.
        CpuBackend be2(1);
        Model other(test::tiny_full_config(), be2);
        other.init_weights(1);
        save_model_checkpoint(path("other-model"), other);
        const QString msg = thrown([&] {
            evaluate_checkpoint_weight_formats(out, {WeightFormat::parse("fp32")}, 1, "cpu",
                                               path("other-model"));
        });
        QVERIFY2(msg.contains("other-model") && msg.contains("another model"), qPrintable(msg));
    }

    // Loading an export gives the weights of the in-memory PTQ bit for bit (every other tensor
    // unchanged), so its validation loss is that of --quant-eval with the same format.
    void exportEqualsInMemoryPtq_data() {
        QTest::addColumn<QString>("format");
        for (const char* f : {"int4", "int4-g8-asym", "int8", "int8-asym", "int3", "int3-g16-asym",
                              "int2", "int4-g64"})
            QTest::newRow(f) << QString(f);
    }
    void exportEqualsInMemoryPtq() {
        QFETCH(QString, format);
        const WeightFormat f = WeightFormat::parse(format.toStdString());
        const std::string out = exported(f.name);
        CpuBackend be(1);
        const auto src = load_model(ckpt_, be);
        const auto got = load_model(out, be);
        bool differs = false;
        for (const Parameter* p : src->parameters().all()) {
            std::vector<float> want = p->value.to_host();
            if (is_projection_weight(p->name, p->value.rank())) {
                IntQuantSpec s = f.int_spec;  // int4-g64: per channel where 64 does not divide
                if (s.group_size > 0 && p->value.shape()[1] % s.group_size != 0) s.group_size = 0;
                const std::vector<float> w = want;
                fake_quantize_int(w.data(), p->value.shape()[0], p->value.shape()[1], s,
                                  want.data());
                differs = differs || want != w;
            }
            QVERIFY2(got->parameters().at(p->name).value.to_host() == want, p->name.c_str());
        }
        QVERIFY(differs);
        const CheckpointWeightFormats ptq =
            evaluate_checkpoint_weight_formats(ckpt_, {WeightFormat::parse("fp32"), f}, 1);
        const CheckpointWeightFormats loaded =
            evaluate_checkpoint_weight_formats(out, {WeightFormat::parse("fp32")}, 1);
        qInfo("%s: fp32 %.5f, in-memory PTQ %.5f, exported and loaded %.5f", f.name.c_str(),
              ptq.results[0].val_loss, ptq.results[1].val_loss, loaded.results[0].val_loss);
        QCOMPARE(loaded.stored_format, f.name);
        QCOMPARE(loaded.step, ptq.step);
        QCOMPARE(loaded.results[0].val_loss, ptq.results[1].val_loss);
        QVERIFY(ptq.results[1].val_loss != ptq.results[0].val_loss);
        // Against the source as reference, the export is measured as the in-memory PTQ is.
        const CheckpointWeightFormats vs_source =
            evaluate_checkpoint_weight_formats(out, {WeightFormat::parse("fp32")}, 1, "cpu", ckpt_);
        QCOMPARE(vs_source.results[0].reference_loss, ptq.results[0].val_loss);
        QCOMPARE(vs_source.results[0].loss_change, ptq.results[1].loss_change);
        QCOMPARE(vs_source.results[0].routing.exact, ptq.results[1].routing.exact);
        QCOMPARE(vs_source.results[0].routing.top1, ptq.results[1].routing.top1);
    }

    // Packed codes: a known answer for the nibble order, and odd widths round-trip through a
    // file exactly for int4 and int3, symmetric and not.
    void packedCodesRoundTrip() {
        // [1, -1, 0.3] symmetric INT4: scale 1/7, codes 7, -7, 2: -7 is nibble 9, column 0 in
        // the low nibble -> bytes 0x97, 0x02.
        const float w[] = {1.0f, -1.0f, 0.3f};
        const IntQuantized q = quantize_int(w, 1, 3, IntQuantSpec{4, 0, true});
        QCOMPARE(q.data, (std::vector<uint8_t>{0x97, 0x02}));
        const IntQuantized q3 = quantize_int(w, 1, 3, IntQuantSpec{3, 0, true});  // scale 1/3
        QCOMPARE(q3.data, (std::vector<uint8_t>{0xD3, 0x01}));  // 3, -3 (nibble 13), 1
        const IntQuantized q2 =
            quantize_int(w, 1, 3, IntQuantSpec{2, 0, true});    // ternary, scale 1
        QCOMPARE(q2.data, (std::vector<uint8_t>{0xF1, 0x00}));  // 1, -1 (nibble 15), 0
        for (const IntQuantSpec spec :
             {IntQuantSpec{4, 0, true}, IntQuantSpec{4, 0, false}, IntQuantSpec{3, 0, true},
              IntQuantSpec{3, 0, false}, IntQuantSpec{2, 0, true}, IntQuantSpec{2, 0, false},
              IntQuantSpec{8, 0, false}}) {
            const int64_t rows = 5, cols = 7;
            const std::vector<float> x = test::random_vector(rows * cols, 11 + spec.bits, 0.3f);
            const IntQuantized iq = quantize_int(x.data(), rows, cols, spec);
            std::vector<float> want(x.size()), got(x.size());
            dequantize_int(iq, want.data());
            const int top = spec.symmetric ? (1 << (spec.bits - 1)) - 1 : (1 << spec.bits) - 1;
            for (size_t i = 0; i < x.size(); ++i) {  // on the grid, within half a step
                const float s = iq.scales[i / cols];
                QVERIFY(std::fabs(want[i] - x[i]) <= s / 2 * (1 + 1e-6f));
                const int zero = spec.symmetric ? 0 : iq.zeros[i / cols];
                const double code = std::nearbyint(want[i] / s) + zero;
                QVERIFY(code >= (spec.symmetric ? -top : 0) && code <= top);
            }
            const std::string name = "m.weight", file = path("roundtrip.safetensors");
            const IntWeightNames n = int_weight_names(name);
            SafetensorsWriter wr;
            wr.add_u8(n.qweight, spec.bits == 8 && spec.symmetric ? "I8" : "U8", iq.data,
                      {rows, spec.bits == 8 ? cols : (cols + 1) / 2});
            wr.add_f32(n.scales, iq.scales.data(), {rows, 1});
            if (!spec.symmetric) wr.add_u8(n.zeros, "U8", iq.zeros, {rows, 1});
            wr.set_metadata(kQuantBitsKey, std::to_string(spec.bits));
            wr.set_metadata(kQuantSchemeKey, spec.symmetric ? "symmetric" : "asymmetric");
            wr.write(file);
            const SafetensorsReader r(file);
            QCOMPARE(r.read_bytes_u8(n.qweight), iq.data);
            const IntQuantSpec back = check_int_weight(r, name, {rows, cols});
            QVERIFY(back == spec);
            read_int_weight(r, name, back, {rows, cols}, got.data());
            QVERIFY(got == want);
        }
    }

    // Damaged quantized tensors: FileErrors that name the file and the tensor.
    void damagedTensorsAreNamed() {
        const std::string good =
            (fs::path(exported("int4-g8-asym")) / kCheckpointWeightsFile).string();
        const IntWeightNames n = int_weight_names(weight_);
        const std::string bad_dir = path("damaged");
        fs::create_directories(bad_dir);
        fs::copy_file(fs::path(exported("int4-g8-asym")) / "config.json",
                      fs::path(bad_dir) / "config.json", fs::copy_options::overwrite_existing);
        const std::string bad = (fs::path(bad_dir) / kCheckpointWeightsFile).string();
        CpuBackend be(1);
        const auto expect = [&](const char* what, const std::function<void(StoredFile&)>& edit,
                                const std::string& tensor, const QString& words) {
            StoredFile f = read_stored(good);
            edit(f);
            write_stored(f, bad);
            const QString msg = thrown([&] { load_model(bad_dir, be); });
            QVERIFY2(msg.contains(QString::fromStdString(bad)) &&
                         msg.contains(QString::fromStdString(tensor)) && msg.contains(words),
                     qPrintable(QString(what) + ": " + msg));
        };
        expect(
            "scales missing", [&](StoredFile& f) { f.erase(n.scales); }, n.scales, "missing");
        expect(
            "zeros missing", [&](StoredFile& f) { f.erase(n.zeros); }, n.zeros, "missing");
        expect(
            "codes misshapen",
            [&](StoredFile& f) {
                StoredTensor& t = f.at(n.qweight);
                t.shape = {t.shape[0] * t.shape[1]};
            },
            n.qweight, "expected U8");
        expect(
            "codes as I8", [&](StoredFile& f) { f.at(n.qweight).dtype = "I8"; }, n.qweight, "I8");
        expect(
            "scales misshapen",
            [&](StoredFile& f) {
                StoredTensor& t = f.at(n.scales);
                t.shape = {t.shape[1], t.shape[0]};
            },
            n.scales, "groups dividing");
        expect(
            "NaN scale",
            [&](StoredFile& f) { f.at(n.scales).f32[3] = std::numeric_limits<float>::quiet_NaN(); },
            n.scales, "index 3");
        expect(
            "zero scale", [&](StoredFile& f) { f.at(n.scales).f32[0] = 0.0f; }, n.scales, "> 0");
        expect(
            "zero point out of range", [&](StoredFile& f) { f.at(n.zeros).bytes[1] = 16; }, n.zeros,
            "0..15");
        expect(
            "no bits in the metadata", [&](StoredFile& f) { f.metadata.erase(kQuantBitsKey); },
            ".qweight", "quant_bits");
        expect(
            "bits 5", [&](StoredFile& f) { f.metadata[kQuantBitsKey] = "5"; }, ".qweight",
            "expected 8, 4, 3 or 2");
        expect(
            "both fp32 and quantized",
            [&](StoredFile& f) {
                f.tensors.push_back(
                    {weight_, "F32", {24, 32}, std::vector<float>(24 * 32, 0.0f), {}});
            },
            n.qweight, "also holds");
        expect(
            "symmetric file with zeros",
            [&](StoredFile& f) { f.metadata[kQuantSchemeKey] = "symmetric"; }, ".zeros", "present");
        // INT3 codes outside -3..3 (a file that is really INT4).
        const std::string good3 = (fs::path(exported("int4")) / kCheckpointWeightsFile).string();
        {
            StoredFile f = read_stored(good3);
            f.metadata[kQuantBitsKey] = "3";
            f.at(n.qweight).bytes[0] = 0x77;  // 7: an INT4 code, not an INT3 one
            write_stored(f, bad);
            const QString msg = thrown([&] { load_model(bad_dir, be); });
            // The first weight read names itself: every INT4 weight has codes INT3 lacks.
            QVERIFY2(msg.contains(QString::fromStdString(bad)) &&
                         msg.contains(".qweight' holds nibble") && msg.contains("INT3"),
                     qPrintable(msg));
        }
        // Truncated: the quantized codes last in the file, cut by one byte.
        {
            StoredFile f = read_stored(good);
            StoredTensor last = f.at(n.qweight);
            f.erase(n.qweight);
            f.tensors.push_back(last);
            write_stored(f, bad);
            fs::resize_file(bad, fs::file_size(bad) - 1);
            const QString msg = thrown([&] { load_model(bad_dir, be); });
            QVERIFY2(msg.contains(QString::fromStdString(bad)) &&
                         msg.contains(QString::fromStdString(n.qweight)) &&
                         msg.contains("truncated"),
                     qPrintable(msg));
        }
    }

    // An existing folder is replaced only with overwrite, and only when it is a checkpoint; the
    // checkpoint itself never; FP8 is not an integer format.
    void refusesToOverwrite() {
        const std::string out = path("twice");
        export_quantized_checkpoint(ckpt_, out, WeightFormat::parse("int8"));
        const auto stamp = fs::last_write_time(fs::path(out) / kCheckpointWeightsFile);
        QString msg =
            thrown([&] { export_quantized_checkpoint(ckpt_, out, WeightFormat::parse("int4")); });
        QVERIFY2(msg.contains(QString::fromStdString(out)) && msg.contains("--overwrite"),
                 qPrintable(msg));
        QCOMPARE(checkpoint_quantization(out), std::string("int8"));
        QCOMPARE(fs::last_write_time(fs::path(out) / kCheckpointWeightsFile), stamp);
        export_quantized_checkpoint(ckpt_, out, WeightFormat::parse("int4"), true);
        QCOMPARE(checkpoint_quantization(out), std::string("int4"));
        QVERIFY(!fs::exists(out + ".tmp"));
        // A folder that is not a checkpoint stays, even with overwrite.
        const std::string notes = path("notes");
        fs::create_directories(notes);
        std::ofstream(fs::path(notes) / "notes.txt") << "mine";
        msg = thrown(
            [&] { export_quantized_checkpoint(ckpt_, notes, WeightFormat::parse("int4"), true); });
        QVERIFY2(msg.contains("not a checkpoint folder"), qPrintable(msg));
        QVERIFY(fs::exists(fs::path(notes) / "notes.txt"));
        // Nor is a folder in the way of the temporary export removed without overwrite.
        fs::create_directories(path("fresh.tmp"));
        std::ofstream(fs::path(path("fresh.tmp")) / "notes.txt") << "mine";
        msg = thrown([&] {
            export_quantized_checkpoint(ckpt_, path("fresh"), WeightFormat::parse("int4"));
        });
        QVERIFY2(msg.contains("fresh.tmp") && msg.contains("--overwrite"), qPrintable(msg));
        QVERIFY(fs::exists(fs::path(path("fresh.tmp")) / "notes.txt") &&
                !fs::exists(path("fresh")));
        msg = thrown(
            [&] { export_quantized_checkpoint(ckpt_, ckpt_, WeightFormat::parse("int4"), true); });
        QVERIFY2(msg.contains("being exported"), qPrintable(msg));
        QVERIFY(fs::exists(fs::path(ckpt_) / "optimizer.safetensors"));
        msg = thrown(
            [&] { export_quantized_checkpoint(ckpt_, path("fp8"), WeightFormat::parse("fp8")); });
        QVERIFY2(msg.contains("fp8") && msg.contains("int4"), qPrintable(msg));
        QVERIFY(!fs::exists(path("fp8")));
    }
};

QTEST_APPLESS_MAIN(TestQuantExport)
#include "tst_quant_export.moc"
