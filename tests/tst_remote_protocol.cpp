// The remote protocol without sockets: frame codec (incremental, limits checked before
// buffering), message parsing, the challenge-response handshake (good, wrong and missing token,
// replay, version mismatch), path confinement, event codec, the token file's permissions.
#include <QtTest>

#include <QTemporaryDir>

#include <filesystem>
#include <random>

#include <sys/stat.h>

#include "auth.h"
#include "frame_codec.h"
#include "messages.h"
#include "session_codec.h"

using namespace moe;
using namespace moe::remote;
using nlohmann::json;

namespace {

std::string header(uint32_t j, uint32_t b, const char* magic = "MOEW") {
    std::string h(magic, 4);
    for (uint32_t v : {j, b})
        for (int s = 24; s >= 0; s -= 8) h.push_back(char((v >> s) & 0xff));
    return h;
}

QString code_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const ProtocolError& e) {
        return QString::fromStdString(e.code());
    }
    return "no error";
}

}  // namespace

class TestRemoteProtocol : public QObject {
    Q_OBJECT

private slots:
    void frames_round_trip_byte_by_byte() {
        const std::string a = encode_frame(R"({"type":"ping","id":1})");
        const std::string b = encode_frame(R"({"type":"x"})", std::string("\0\1\2binary", 9));
        const std::string stream = a + b;
        FrameDecoder d;
        std::vector<Frame> got;
        for (char c : stream) {
            d.feed(&c, 1);
            while (auto f = d.next()) got.push_back(*f);
        }
        QCOMPARE(got.size(), size_t(2));
        QCOMPARE(got[0].json, std::string(R"({"type":"ping","id":1})"));
        QCOMPARE(got[1].binary, std::string("\0\1\2binary", 9));
        QCOMPARE(d.buffered(), size_t(0));
    }

    void oversized_frame_rejected_before_buffering() {
        FrameDecoder d(1 << 20);
        // Announces 1 GiB: rejected on the header alone, nothing of the payload is kept.
        QCOMPARE(code_of([&] { d.feed(header(1u << 30, 0)); }), QString("frame_too_large"));
        QVERIFY(d.buffered() <= kHeaderSize);
        QCOMPARE(code_of([&] { d.feed("x", 1); }), QString("broken_stream"));
        // Binary length overflowing 32 bits together with the JSON length.
        FrameDecoder e(1 << 20);
        QCOMPARE(code_of([&] { e.feed(header(0xffffffffu, 0xffffffffu)); }), QString("frame_too_large"));
        QCOMPARE(code_of([] { encode_frame(std::string(2000, ' '), {}, 1000); }), QString("frame_too_large"));
    }

    void garbage_and_truncation() {
        FrameDecoder d;
        QCOMPARE(code_of([&] { d.feed("GET / HTTP/1.1\r\n\r\n"); }), QString("bad_magic"));
        FrameDecoder t;
        const std::string f = encode_frame(R"({"type":"ping"})");
        t.feed(f.substr(0, f.size() - 3));
        QVERIFY(!t.next());  // incomplete: waits, no error, no frame
        FrameDecoder z;
        QCOMPARE(code_of([&] { z.feed(header(0, 0)); }), QString("bad_message"));
    }

    void messages_parse_strictly() {
        QCOMPARE(code_of([] { parse_message("{nope"); }), QString("bad_json"));
        QCOMPARE(code_of([] { parse_message("[1,2]"); }), QString("bad_message"));
        QCOMPARE(code_of([] { parse_message(R"({"id":1})"); }), QString("bad_message"));
        QCOMPARE(code_of([] { parse_message(R"({"type":""})"); }), QString("bad_message"));
        const json m = parse_message(R"({"type":"download","offset":-1,"path":5})");
        QCOMPARE(code_of([&] { get_int(m, "offset", 0, 10); }), QString("bad_request"));
        QCOMPARE(code_of([&] { get_string(m, "path"); }), QString("bad_request"));
        try {
            get_int(m, "offset", 0, 10);
        } catch (const ProtocolError& e) {
            QVERIFY2(std::string(e.what()).find("offset") != std::string::npos, e.what());
        }
    }

    void base64_round_trip() {
        for (int n = 0; n < 40; ++n) {
            std::string s;
            for (int i = 0; i < n; ++i) s.push_back(char(i * 37 + n));
            QCOMPARE(from_base64(to_base64(s), "x"), s);
        }
        QCOMPARE(code_of([] { from_base64("abc", "nonce"); }), QString("bad_request"));
        QCOMPARE(code_of([] { from_base64("ab=c", "nonce"); }), QString("bad_request"));
        QCOMPARE(code_of([] { from_base64("a*cd", "nonce"); }), QString("bad_request"));
    }

    void handshake_good_token() {
        ServerHandshake server("secret-token", "test", false);
        ClientHandshake client("secret-token");
        HandshakeStep s1 = server.on_message(client.hello());
        QCOMPARE(s1.replies.size(), size_t(1));
        QCOMPARE(s1.replies[0]["type"].get<std::string>(), std::string("challenge"));
        HandshakeStep c1 = client.on_message(s1.replies[0]);
        QVERIFY(!c1.close);
        // The token itself never appears in what the client sends.
        QVERIFY(c1.replies[0].dump().find("secret-token") == std::string::npos);
        HandshakeStep s2 = server.on_message(c1.replies[0]);
        QVERIFY(s2.done && server.done());
        HandshakeStep c2 = client.on_message(s2.replies[0]);
        QVERIFY2(c2.done && client.done(), client.error().c_str());
    }

    void handshake_wrong_or_missing_token() {
        ServerHandshake server("right", "test", false);
        ClientHandshake client("wrong");
        HandshakeStep c1 = client.on_message(server.on_message(client.hello()).replies[0]);
        HandshakeStep s2 = server.on_message(c1.replies[0]);
        QVERIFY(s2.close && !server.done());
        QCOMPARE(s2.replies[0]["code"].get<std::string>(), std::string("auth_failed"));

        ServerHandshake s("right", "test", false);
        ClientHandshake c("right");
        s.on_message(c.hello());
        HandshakeStep none = s.on_message({{"type", "auth"}});
        QVERIFY(none.close);
        QCOMPARE(none.replies[0]["code"].get<std::string>(), std::string("auth_failed"));

        ServerHandshake early("right", "test", false);
        HandshakeStep r = early.on_message({{"type", "start"}, {"id", 1}});
        QVERIFY(r.close);
        QCOMPARE(r.replies[0]["code"].get<std::string>(), std::string("not_authenticated"));
    }

    void replayed_handshake_fails() {
        // Record a successful handshake, then replay the client's messages to a new server
        // connection: its nonce differs, so the recorded proof is worthless.
        ServerHandshake server("tok", "test", false);
        ClientHandshake client("tok");
        const json hello = client.hello();
        const json auth = client.on_message(server.on_message(hello).replies[0]).replies[0];
        QVERIFY(server.on_message(auth).done);
        ServerHandshake again("tok", "test", false);
        again.on_message(hello);
        HandshakeStep s = again.on_message(auth);
        QVERIFY(s.close && !again.done());
        QCOMPARE(s.replies[0]["code"].get<std::string>(), std::string("auth_failed"));
    }

    void handshake_version_mismatch() {
        ServerHandshake server("tok", "test", false);
        json hello = ClientHandshake("tok").hello();
        hello["protocol"] = 99;
        HandshakeStep s = server.on_message(hello);
        QVERIFY(s.close);
        QCOMPARE(s.replies[0]["code"].get<std::string>(), std::string("version_mismatch"));
        QVERIFY(s.replies[0]["message"].get<std::string>().find("99") != std::string::npos);
    }

    void paths_stay_inside_the_root() {
        QTemporaryDir dir;
        const std::filesystem::path root = dir.path().toStdString();
        std::filesystem::create_directories(root / "run.ckpt/step-00000010");
        QFile(dir.filePath("run.h5")).open(QIODevice::WriteOnly);
        std::filesystem::create_symlink("/etc", root / "escape");
        std::filesystem::create_symlink(root / "run.h5", root / "inside-link");
        QCOMPARE(resolve_inside(root, "run.h5"), std::filesystem::canonical(root / "run.h5"));
        QVERIFY(!resolve_inside(root, "run.ckpt/step-00000010").empty());
        QVERIFY(!resolve_inside(root, "inside-link").empty());
        for (const char* bad : {"../x", "a/../../x", "run.ckpt/../../etc/passwd", "/etc/passwd", "~/x", "escape/passwd",
                                "escape", ".."})
            QVERIFY2(code_of([&] { resolve_inside(root, bad); }) == "path_outside_root", bad);
        QCOMPARE(code_of([&] { resolve_inside(root, ""); }), QString("bad_path"));
        QCOMPARE(code_of([&] { resolve_inside(root, std::string("a\0b", 3)); }), QString("bad_path"));
        QCOMPARE(code_of([&] { resolve_inside(root, "a\\..\\b"); }), QString("bad_path"));
        QCOMPARE(code_of([&] { resolve_inside(root, "."); }), QString("bad_path"));
    }

    void events_round_trip() {
        SessionEvent e;
        e.kind = SessionEvent::Kind::Step;
        e.state = SessionState::Running;
        e.step.step = 7;
        e.step.loss = 2.5;
        e.step.grad_norm = std::nan("");
        e.step.maxvio = {0.1, 0.2};
        const SessionEvent back = event_from_json(json::parse(to_json(e).dump()));
        QCOMPARE(back.kind, SessionEvent::Kind::Step);
        QCOMPARE(back.state, SessionState::Running);
        QCOMPARE(back.step.step, int64_t(7));
        QCOMPARE(back.step.loss, 2.5);
        QVERIFY(std::isnan(back.step.grad_norm));
        QCOMPARE(back.step.maxvio.size(), size_t(2));
        QCOMPARE(code_of([] { event_from_json({{"kind", "bogus"}}); }), QString("bad_message"));
    }

    void token_file_owner_only() {
        QTemporaryDir dir;
        const QString path = dir.filePath("cfg/worker-token");
        bool created = false;
        const QByteArray t = load_or_create_token(path, &created);
        QVERIFY(created);
        QCOMPARE(t.size(), 64);
        struct stat st {};
        QCOMPARE(::stat(QFile::encodeName(path).constData(), &st), 0);
        QCOMPARE(int(st.st_mode & 0777), 0600);
        QCOMPARE(load_or_create_token(path, &created), t);
        QVERIFY(!created);
        ::chmod(QFile::encodeName(path).constData(), 0644);
        try {
            load_or_create_token(path);
            QFAIL("a world-readable token file was accepted");
        } catch (const std::runtime_error& e) {
            QVERIFY2(std::string(e.what()).find("chmod 600") != std::string::npos, e.what());
        }
    }

    // The same mutations the fuzz target makes, for a fixed number of rounds: the decoder and
    // parser only ever throw ProtocolError (never crash, never buffer past the limit).
    void random_input_never_crashes() {
        std::mt19937 rng(1234);
        const std::string good = encode_frame(R"({"type":"download","id":3,"path":"run.h5","offset":0})", "abc");
        for (int round = 0; round < 20000; ++round) {
            std::string s = good;
            const int edits = 1 + int(rng() % 8);
            for (int k = 0; k < edits; ++k) {
                const size_t at = rng() % s.size();
                switch (rng() % 3) {
                case 0: s[at] = char(rng()); break;
                case 1: s.erase(at, 1 + rng() % 4); break;
                default: s.insert(at, 1, char(rng())); break;
                }
                if (s.empty()) s = "x";
            }
            FrameDecoder d(4096);
            try {
                d.feed(s);
                while (auto f = d.next()) parse_message(f->json);
            } catch (const ProtocolError&) {
            }
            QVERIFY(d.buffered() <= 4096 + kHeaderSize + s.size());
        }
    }
};

QTEST_APPLESS_MAIN(TestRemoteProtocol)
#include "tst_remote_protocol.moc"
