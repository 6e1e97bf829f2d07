// Safetensors reader and writer: bitwise round trips, dtype conversions against hand-made bytes,
// every header corruption, truncation at many cut points, atomic writes, and interoperability
// with an independent reader/writer (Python + numpy).
#include <QtTest>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>

#include "core/error.h"
#include "store/safetensors.h"
#include "test_support.h"

using namespace moe;

namespace {

std::string le64(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
    return s;
}

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// A file from a header text and a data buffer, with the true header length.
void write_file(const std::string& path, const std::string& header, const std::string& data) {
    write_bytes(path, le64(header.size()) + header + data);
}

template <typename T>
std::string raw(const std::vector<T>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// Runs fn, expects an moe::Error, returns its message (empty string if nothing was thrown).
QString error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return QString::fromStdString(e.what());
    }
    return QString();
}

QString open_error(const std::string& path) {
    return error_of([&] { SafetensorsReader r(path); });
}

bool python_with_numpy() {
    if (!QFileInfo::exists("/usr/bin/python3")) return false;
    QProcess p;
    p.start("/usr/bin/python3", {"-c", "import numpy"});
    return p.waitForFinished(30000) && p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0;
}

}  // namespace

class TestSafetensors : public QObject {
    Q_OBJECT

private:
    QTemporaryDir tmp_;
    std::string path(const char* name) const { return tmp_.filePath(name).toStdString(); }

private slots:
    void initTestCase() { QVERIFY(tmp_.isValid()); }

    void roundTripIsBitwise() {
        // Awkward fp32 values included: they must survive as bit patterns, not just as numbers.
        Tensor a({3, 5});
        test::fill_uniform(a.data(), a.numel(), 7, 3.0f);
        a[0] = std::numeric_limits<float>::quiet_NaN();
        a[1] = std::numeric_limits<float>::infinity();
        a[2] = -0.0f;
        a[3] = std::numeric_limits<float>::denorm_min();
        std::vector<float> b_data = test::random_vector(4, 8);
        std::vector<int32_t> ints = {0, -1, std::numeric_limits<int32_t>::min(),
                                     std::numeric_limits<int32_t>::max(), 42, 7};
        Tensor scalar(Shape{});
        scalar[0] = 1.5f;
        Tensor empty({0, 3});

        SafetensorsWriter w;
        w.add_f32("model.a.weight", a);
        w.add_f32("b", b_data.data(), {2, 2});
        w.add_i32("ids", ints, {2, 3});
        w.add_i32("ids_flat", {5, 6, 7});
        w.add_f32("scalar", scalar);
        w.add_f32("empty", empty);
        w.set_metadata("format", "pt");
        w.set_metadata("step", "12");
        const std::string p = path("roundtrip.safetensors");
        w.write(p);
        QVERIFY(!QFileInfo::exists(QString::fromStdString(p + ".tmp")));

        SafetensorsReader r(p);
        QCOMPARE(r.data_start() % 8, uint64_t(0));  // header padded to a multiple of 8
        QCOMPARE(r.tensors().size(), size_t(6));
        const char* order[] = {"model.a.weight", "b", "ids", "ids_flat", "scalar", "empty"};
        uint64_t offset = 0;
        for (size_t i = 0; i < 6; ++i) {
            QCOMPARE(r.tensors()[i].name, std::string(order[i]));
            QCOMPARE(r.tensors()[i].begin, offset);  // insertion order, contiguous
            offset = r.tensors()[i].end;
        }
        QCOMPARE(r.metadata().at("format"), std::string("pt"));
        QCOMPARE(r.metadata().at("step"), std::string("12"));

        Tensor a2 = r.read_f32("model.a.weight");
        QCOMPARE(a2.shape(), a.shape());
        QCOMPARE(std::memcmp(a2.data(), a.data(), sizeof(float) * a.numel()), 0);
        Tensor b2 = r.read_f32("b");
        QCOMPARE(b2.shape(), (Shape{2, 2}));
        QCOMPARE(std::memcmp(b2.data(), b_data.data(), sizeof(float) * 4), 0);
        QCOMPARE(r.entry("ids").dtype, std::string("I32"));
        QCOMPARE(r.entry("ids").shape, (Shape{2, 3}));
        QCOMPARE(r.read_i32("ids"), ints);
        QCOMPARE(r.read_i32("ids_flat"), (std::vector<int32_t>{5, 6, 7}));
        QCOMPARE(r.read_f32("scalar").shape(), Shape{});
        QCOMPARE(r.read_f32("scalar")[0], 1.5f);
        QCOMPARE(r.read_f32("empty").shape(), (Shape{0, 3}));
    }

    void emptyFileWithMetadataOnly() {
        SafetensorsWriter w;
        w.set_metadata("note", "nothing here");
        w.write(path("nothing.safetensors"));
        SafetensorsReader r(path("nothing.safetensors"));
        QVERIFY(r.tensors().empty());
        QCOMPARE(r.metadata().at("note"), std::string("nothing here"));
    }

    void overwriteReplacesFile() {
        const std::string p = path("overwrite.safetensors");
        SafetensorsWriter w1;
        std::vector<float> one = {1.0f};
        w1.add_f32("x", one.data(), {1});
        w1.write(p);
        SafetensorsWriter w2;
        std::vector<float> two = {2.0f, 3.0f};
        w2.add_f32("y", two.data(), {2});
        w2.write(p);
        SafetensorsReader r(p);
        QVERIFY(!r.contains("x"));
        QCOMPARE(r.read_f32("y")[1], 3.0f);
    }

    void writerRejectsBadInput() {
        SafetensorsWriter w;
        std::vector<float> v = {1.0f};
        w.add_f32("x", v.data(), {1});
        QVERIFY(error_of([&] { w.add_f32("x", v.data(), {1}); }).contains("'x'"));
        QVERIFY(error_of([&] { w.add_f32("__metadata__", v.data(), {1}); })
                    .contains("__metadata__"));
        QVERIFY(error_of([&] { w.add_i32("ids", {1, 2, 3}, {2, 2}); }).contains("[2, 2]"));
    }

    void bf16KnownAnswers() {
        const std::vector<uint16_t> bits = {0x3F80, 0xC000, 0x7F80, 0xFF80, 0x0001, 0x8000, 0x4049};
        const std::string h =
            R"({"t":{"dtype":"BF16","shape":[7],"data_offsets":[0,14]}})";
        write_file(path("bf16.safetensors"), h, raw(bits));
        Tensor t = SafetensorsReader(path("bf16.safetensors")).read_f32("t");
        QCOMPARE(t[0], 1.0f);
        QCOMPARE(t[1], -2.0f);
        QCOMPARE(t[2], std::numeric_limits<float>::infinity());
        QCOMPARE(t[3], -std::numeric_limits<float>::infinity());
        QCOMPARE(t[4], std::ldexp(1.0f, -133));  // smallest bf16 subnormal
        QVERIFY(t[5] == 0.0f && std::signbit(t[5]));
        QCOMPARE(t[6], 3.140625f);
    }

    void f16KnownAnswers() {
        const std::vector<uint16_t> bits = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400,
                                            0x7C00, 0xFC00, 0x7E00, 0x8000, 0x3555, 0x8001};
        const std::string h = R"({"t":{"dtype":"F16","shape":[3,4],"data_offsets":[0,24]}})";
        write_file(path("f16.safetensors"), h, raw(bits));
        Tensor t = SafetensorsReader(path("f16.safetensors")).read_f32("t");
        QCOMPARE(t.shape(), (Shape{3, 4}));
        QCOMPARE(t[0], 1.0f);
        QCOMPARE(t[1], -2.0f);
        QCOMPARE(t[2], 65504.0f);                   // largest half
        QCOMPARE(t[3], std::ldexp(1.0f, -24));      // smallest subnormal
        QCOMPARE(t[4], 1023.0f * std::ldexp(1.0f, -24));  // largest subnormal
        QCOMPARE(t[5], std::ldexp(1.0f, -14));      // smallest normal
        QCOMPARE(t[6], std::numeric_limits<float>::infinity());
        QCOMPARE(t[7], -std::numeric_limits<float>::infinity());
        QVERIFY(std::isnan(t[8]));
        QVERIFY(t[9] == 0.0f && std::signbit(t[9]));
        QCOMPARE(t[10], 0.33325195f);               // 0x3555: nearest half to 1/3
        QCOMPARE(t[11], -std::ldexp(1.0f, -24));
    }

    void f64AndI64KnownAnswers() {
        const std::vector<double> d = {0.1, -3.141592653589793, 1e-3, 0.0};
        const std::vector<int64_t> i = {0, -1, 2147483647, -2147483648LL};
        const std::string h = R"({"d":{"dtype":"F64","shape":[4],"data_offsets":[0,32]},)"
                              R"("i":{"dtype":"I64","shape":[2,2],"data_offsets":[32,64]}})";
        write_file(path("f64.safetensors"), h, raw(d) + raw(i));
        SafetensorsReader r(path("f64.safetensors"));
        Tensor t = r.read_f32("d");
        QCOMPARE(t[0], 0.1f);
        QCOMPARE(t[1], -3.14159265f);
        QCOMPARE(t[2], 1e-3f);
        QCOMPARE(t[3], 0.0f);
        QCOMPARE(r.read_i32("i"), (std::vector<int32_t>{0, -1, 2147483647, -2147483647 - 1}));

        const std::vector<int64_t> big = {1, 4294967296LL};
        write_file(path("i64big.safetensors"),
                   R"({"big":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", raw(big));
        SafetensorsReader rb(path("i64big.safetensors"));
        const QString msg = error_of([&] { rb.read_i32("big"); });
        QVERIFY2(msg.contains("'big'") && msg.contains("4294967296") &&
                     msg.contains(QString::fromStdString(path("i64big.safetensors"))),
                 qPrintable(msg));
    }

    void wrongDtypeForRead() {
        const std::vector<int32_t> i = {1, 2};
        const std::vector<uint8_t> f8 = {0x38, 0x40};
        write_file(path("dtypes.safetensors"),
                   R"({"ints":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},)"
                   R"("fp8":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[8,10]}})",
                   raw(i) + raw(f8));
        SafetensorsReader r(path("dtypes.safetensors"));
        QCOMPARE(r.entry("fp8").dtype, std::string("F8_E4M3"));  // listable even if unreadable
        QString msg = error_of([&] { r.read_f32("ints"); });
        QVERIFY2(msg.contains("'ints'") && msg.contains("I32"), qPrintable(msg));
        msg = error_of([&] { r.read_f32("fp8"); });
        QVERIFY2(msg.contains("'fp8'") && msg.contains("F8_E4M3"), qPrintable(msg));
        SafetensorsReader r2(path("bf16.safetensors"));
        msg = error_of([&] { r2.read_i32("t"); });
        QVERIFY2(msg.contains("'t'") && msg.contains("BF16"), qPrintable(msg));
        msg = error_of([&] { r.read_f32("nope"); });
        QVERIFY2(msg.contains("'nope'") &&
                     msg.contains(QString::fromStdString(path("dtypes.safetensors"))),
                 qPrintable(msg));
    }

    void corruptHeaders_data() {
        QTest::addColumn<QByteArray>("bytes");
        QTest::addColumn<QStringList>("expected");  // substrings besides the path
        auto file = [](const std::string& header, const std::string& data) {
            const std::string b = le64(header.size()) + header + data;
            return QByteArray(b.data(), static_cast<qsizetype>(b.size()));
        };
        auto qb = [](const std::string& s) {
            return QByteArray(s.data(), static_cast<qsizetype>(s.size()));
        };
        const std::string d8(8, '\0'), d16(16, '\0'), d24(24, '\0');
        const std::string f32x2 = R"("dtype":"F32","shape":[2])";

        QTest::newRow("empty") << QByteArray() << QStringList{"0 bytes", "shorter"};
        QTest::newRow("five bytes")
            << qb(std::string("\x01\0\0\0\0", 5)) << QStringList{"5 bytes"};
        QTest::newRow("header longer than file")
            << qb(le64(1000) + "{}") << QStringList{"1000", "10 bytes"};
        QTest::newRow("header over 100 MB")
            << qb(le64(200000000ull) + "{}") << QStringList{"200000000", "100 MB"};
        QTest::newRow("absurd header length")
            << qb(le64(0xFFFFFFFFFFFFFFF0ull) + "{}") << QStringList{"18446744073709551600"};
        QTest::newRow("not json") << file("{\"a\": [1, 2", "") << QStringList{"not valid JSON"};
        QTest::newRow("json array") << file("[1, 2]", "") << QStringList{"not a JSON object"};
        QTest::newRow("entry not object")
            << file(R"({"w": 5})", "") << QStringList{"'w'", "not an object"};
        QTest::newRow("unknown dtype")
            << file(R"({"w":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", d8)
            << QStringList{"'w'", "'Q7'"};
        QTest::newRow("missing dtype")
            << file(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", d8)
            << QStringList{"'w'", "dtype"};
        QTest::newRow("negative dim")
            << file(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", d8)
            << QStringList{"'w'", "-2"};
        QTest::newRow("bad offsets")
            << file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", d8)
            << QStringList{"'w'", "data_offsets", "[0]"};
        QTest::newRow("offsets reversed")
            << file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", d8)
            << QStringList{"'w'", "[8, 0]"};
        QTest::newRow("shape does not match range")
            << file(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", d16)
            << QStringList{"'w'", "[2, 3]", "24 bytes", "[0, 16]"};
        QTest::newRow("dtype does not match range")
            << file(R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}})", d8)
            << QStringList{"'w'", "F64", "16 bytes"};
        QTest::newRow("shape overflows")
            << file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],)"
                    R"("data_offsets":[0,8]}})", d8)
            << QStringList{"'w'", "2^64"};
        QTest::newRow("overlap")
            << file(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]},"b":{)" + f32x2 +
                        R"(,"data_offsets":[4,12]}})",
                    std::string(12, '\0'))
            << QStringList{"'a'", "'b'", "overlap", "[4, 12]"};
        QTest::newRow("same range twice")
            << file(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]},"b":{)" + f32x2 +
                        R"(,"data_offsets":[0,8]}})",
                    d8)
            << QStringList{"'a'", "'b'", "overlap"};
        QTest::newRow("gap")
            << file(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]},"b":{)" + f32x2 +
                        R"(,"data_offsets":[16,24]}})",
                    d24)
            << QStringList{"'a'", "'b'", "gap of 8 bytes"};
        QTest::newRow("not starting at zero")
            << file(R"({"a":{)" + f32x2 + R"(,"data_offsets":[8,16]}})", d16)
            << QStringList{"'a'", "gap of 8 bytes"};
        QTest::newRow("trailing bytes")
            << file(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]}})", d16)
            << QStringList{"'a'", "8 bytes after the last tensor"};
        QTest::newRow("duplicate name")
            << file(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]},"a":{)" + f32x2 +
                        R"(,"data_offsets":[8,16]}})",
                    d16)
            << QStringList{"'a'", "twice"};
        QTest::newRow("offsets out of file")
            << file(R"({"a":{)" + f32x2 + R"(,"data_offsets":[0,8]},"b":{)" + f32x2 +
                        R"(,"data_offsets":[8,16]}})",
                    std::string(10, '\0'))
            << QStringList{"'b'", "truncated", "[8, 16]"};
        QTest::newRow("metadata not strings")
            << file(R"({"__metadata__":{"step":12}})", "") << QStringList{"'step'", "12"};
    }

    void corruptHeaders() {
        QFETCH(QByteArray, bytes);
        QFETCH(QStringList, expected);
        const std::string p = path("corrupt.safetensors");
        write_bytes(p, bytes.toStdString());
        const QString msg = open_error(p);
        QVERIFY2(!msg.isEmpty(), "no error for a corrupt file");
        QVERIFY2(msg.contains(QString::fromStdString(p)), qPrintable(msg));
        for (const QString& s : expected) QVERIFY2(msg.contains(s), qPrintable(msg + " / " + s));
    }

    void missingFile() {
        const std::string p = path("does-not-exist.safetensors");
        const QString msg = open_error(p);
        QVERIFY2(msg.contains(QString::fromStdString(p)), qPrintable(msg));
    }

    void truncatedAtManyCutPoints() {
        std::vector<float> a = test::random_vector(6, 1), b = test::random_vector(10, 2);
        SafetensorsWriter w;
        w.add_f32("first", a.data(), {2, 3});
        w.add_f32("second", b.data(), {10});
        w.add_i32("third", {1, 2, 3});
        const std::string full_path = path("full.safetensors");
        w.write(full_path);
        const std::string full = read_bytes(full_path);
        const uint64_t data_start = SafetensorsReader(full_path).data_start();
        const uint64_t size = full.size();
        QCOMPARE(size, data_start + 24 + 40 + 12);

        const std::vector<uint64_t> cuts = {0,  1,  7,  8,  9,  data_start / 2, data_start - 1,
                                            data_start, data_start + 4, data_start + 24,
                                            data_start + 30, data_start + 64, size - 1};
        for (uint64_t cut : cuts) {
            const std::string p = path("cut.safetensors");
            write_bytes(p, full.substr(0, cut));
            const QString msg = open_error(p);
            const QString ctx = QString("cut at %1: %2").arg(cut).arg(msg);
            QVERIFY2(!msg.isEmpty(), qPrintable(ctx));
            QVERIFY2(msg.contains(QString::fromStdString(p)), qPrintable(ctx));
            QVERIFY2(msg.contains(QString::number(cut)), qPrintable(ctx));  // bytes that exist
            if (cut >= data_start) {
                // Past the header: say it is truncated, how much was expected, which tensor.
                QVERIFY2(msg.contains("truncated"), qPrintable(ctx));
                QVERIFY2(msg.contains(QString::number(size)), qPrintable(ctx));
                const char* victim = cut < data_start + 24   ? "'first'"
                                     : cut < data_start + 64 ? "'second'"
                                                             : "'third'";
                QVERIFY2(msg.contains(victim), qPrintable(ctx));
            } else if (cut >= 8) {
                QVERIFY2(msg.contains(QString::number(data_start - 8)), qPrintable(ctx));
            }
        }
    }

    void atomicWriteMissingDirectory() {
        const std::string p = path("no/such/dir/x.safetensors");
        SafetensorsWriter w;
        std::vector<float> v = {1.0f, 2.0f};
        w.add_f32("x", v.data(), {2});
        const QString msg = error_of([&] { w.write(p); });
        QVERIFY2(msg.contains(QString::fromStdString(p)), qPrintable(msg));
        QVERIFY(!std::filesystem::exists(p));
        QVERIFY(!std::filesystem::exists(p + ".tmp"));
    }

    void atomicWriteReadOnlyDirectory() {
        if (::geteuid() == 0) QSKIP("running as root: permissions are not enforced");
        const std::string dir = path("readonly");
        std::filesystem::create_directory(dir);
        const std::string p = dir + "/x.safetensors";
        std::filesystem::permissions(dir, std::filesystem::perms::owner_read |
                                              std::filesystem::perms::owner_exec);
        SafetensorsWriter w;
        std::vector<float> v = {1.0f, 2.0f};
        w.add_f32("x", v.data(), {2});
        const QString msg = error_of([&] { w.write(p); });
        std::filesystem::permissions(dir, std::filesystem::perms::owner_all);
        QVERIFY2(msg.contains(QString::fromStdString(p)), qPrintable(msg));
        QVERIFY(!std::filesystem::exists(p));
        QVERIFY(!std::filesystem::exists(p + ".tmp"));
    }

    void writeFailsOnFullDevice() {
        // /dev/full accepts the open and fails every write with ENOSPC: the disk-full path.
        if (!QFileInfo::exists("/dev/full")) QSKIP("no /dev/full");
        SafetensorsWriter w;
        std::vector<float> v = {1.0f};
        w.add_f32("x", v.data(), {1});
        // write() appends ".tmp", so aim at a symlink "<dir>/full.tmp" -> /dev/full.
        const std::string target = path("full");
        std::filesystem::create_symlink("/dev/full", target + ".tmp");
        const QString msg = error_of([&] { w.write(target); });
        QVERIFY2(msg.contains(QString::fromStdString(target)), qPrintable(msg));
        QVERIFY2(msg.contains(QString::fromLocal8Bit(std::strerror(ENOSPC))), qPrintable(msg));
        QVERIFY(!std::filesystem::exists(target));
    }

    void pythonReadsOurFile() {
        if (!python_with_numpy()) QSKIP("/usr/bin/python3 with numpy is not available");
        Tensor a({2, 3});
        for (int i = 0; i < 6; ++i) a[i] = 0.5f * static_cast<float>(i) - 1.0f;
        SafetensorsWriter w;
        w.add_f32("layer.weight", a);
        w.add_i32("ids", {3, -4, 5});
        w.set_metadata("format", "pt");
        const std::string p = path("for_python.safetensors");
        w.write(p);
        // An independent reader: only the format's definition, no code shared with ours.
        const char* script = R"PY(
import json, struct, sys
import numpy as np
buf = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", buf[:8])[0]
assert n % 8 == 0, n
hdr = json.loads(buf[8:8 + n])
data = buf[8 + n:]
assert hdr["__metadata__"] == {"format": "pt"}, hdr
types = {"F32": "<f4", "I32": "<i4"}
out = {}
for name, e in hdr.items():
    if name == "__metadata__":
        continue
    b, end = e["data_offsets"]
    out[name] = np.frombuffer(data[b:end], dtype=types[e["dtype"]]).reshape(e["shape"])
assert len(data) == max(e["data_offsets"][1] for k, e in hdr.items() if k != "__metadata__")
w = out["layer.weight"]
assert w.shape == (2, 3), w.shape
assert np.array_equal(w, (np.arange(6, dtype=np.float32) * 0.5 - 1).reshape(2, 3)), w
assert out["ids"].tolist() == [3, -4, 5], out["ids"]
print("OK")
)PY";
        QProcess py;
        py.start("/usr/bin/python3", {"-c", script, QString::fromStdString(p)});
        QVERIFY(py.waitForFinished(60000));
        const QString out =
            QString::fromUtf8(py.readAllStandardOutput() + py.readAllStandardError());
        QVERIFY2(py.exitCode() == 0 && out.contains("OK"), qPrintable(out));
    }

    void weReadPythonFile() {
        if (!python_with_numpy()) QSKIP("/usr/bin/python3 with numpy is not available");
        // Python writes F16, BF16 (as truncated fp32 bits) and F64 with unpadded, unsorted header.
        const char* script = R"PY(
import json, struct, sys
import numpy as np
x = np.array([[1.0, -0.5, 3.25], [65504.0, 2.0**-24, -0.0]])
f16 = x.astype("<f2").tobytes()
bf16 = (x.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()
f64 = x.astype("<f8").tobytes()
blobs = [("c64", "F64", f64), ("a16", "F16", f16), ("b16", "BF16", bf16)]
hdr, off, data = {}, 0, b""
for name, dt, blob in blobs:
    hdr[name] = {"dtype": dt, "shape": [2, 3], "data_offsets": [off, off + len(blob)]}
    off += len(blob)
    data += blob
hdr["__metadata__"] = {"source": "numpy"}
h = json.dumps(hdr).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
)PY";
        const std::string p = path("from_python.safetensors");
        QProcess py;
        py.start("/usr/bin/python3", {"-c", script, QString::fromStdString(p)});
        QVERIFY(py.waitForFinished(60000));
        QVERIFY2(py.exitCode() == 0, py.readAllStandardError().constData());
        SafetensorsReader r(p);
        QCOMPARE(r.metadata().at("source"), std::string("numpy"));
        const float expect[] = {1.0f, -0.5f, 3.25f, 65504.0f, std::ldexp(1.0f, -24), -0.0f};
        for (const char* name : {"a16", "c64"}) {
            Tensor t = r.read_f32(name);
            QCOMPARE(t.shape(), (Shape{2, 3}));
            for (int i = 0; i < 6; ++i) QCOMPARE(t[i], expect[i]);
        }
        Tensor b = r.read_f32("b16");  // bf16 truncation: 65504 -> 65280, 2^-24 exact
        QCOMPARE(b[2], 3.25f);
        QCOMPARE(b[3], 65280.0f);
        QCOMPARE(b[4], std::ldexp(1.0f, -24));
        QVERIFY(std::signbit(b[5]));
        // Mapped (converted from unaligned offsets in the mapping) and read with pread: the
        // same bits.
        QVERIFY(r.mapped());
        SafetensorsReader plain(p, SafetensorsReader::Access::Read);
        QVERIFY(!plain.mapped());
        for (const char* name : {"a16", "b16", "c64"}) {
            const Tensor m = r.read_f32(name), q = plain.read_f32(name);
            QCOMPARE(std::memcmp(m.data(), q.data(), 6 * sizeof(float)), 0);
        }
    }

    // A mapped file that shrinks while open: a FileError naming the tensor, not a SIGBUS.
    void shrunkWhileOpenIsAnError() {
        const std::string p = path("shrinks.safetensors");
        Tensor big({512, 1024});
        for (int64_t i = 0; i < big.numel(); ++i) big[i] = float(i % 977);
        SafetensorsWriter w;
        w.add_f32("small", Tensor({4}));
        w.add_f32("big", big);
        w.write(p);
        for (auto access : {SafetensorsReader::Access::Map, SafetensorsReader::Access::Read}) {
            w.write(p);
            SafetensorsReader r(p, access);
            QCOMPARE(r.read_f32("big")[976], 976.0f);
            QVERIFY(::truncate(p.c_str(), off_t(r.file_size() / 2)) == 0);
            QCOMPARE(r.read_f32("small").numel(), int64_t(4));  // its bytes are still there
            try {
                r.read_f32("big");
                QFAIL("reading past the end of a shrunk file did not fail");
            } catch (const FileError& e) {
                const QString msg = e.what();
                QVERIFY2(msg.contains("shrinks.safetensors") && msg.contains("'big'") && msg.contains("shr"),
                         qPrintable(msg));
            }
        }
    }
};

QTEST_APPLESS_MAIN(TestSafetensors)
#include "tst_safetensors.moc"
