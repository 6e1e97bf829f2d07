// The data pipeline: byte tokenizer, synthetic tasks, text and fortunes corpora, DataSpec,
// DataLoader packing, splits, determinism and resume.
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "data/data_loader.h"
#include "data/data_spec.h"
#include "data/fortunes_corpus.h"
#include "data/synthetic_tasks.h"
#include "data/text_corpus.h"
#include "store/project.h"

using namespace moe;
using json = nlohmann::json;

namespace {

void write_file(const std::filesystem::path& p, const std::string& text) {
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
}

// Empty when `f` throws a ConfigError whose field is `field` and whose message has every part.
template <typename F>
QString expect_config_error(F&& f, const std::string& field, const std::vector<std::string>& parts) {
    try {
        f();
    } catch (const ConfigError& e) {
        if (e.field() != field)
            return QString("field \"%1\", expected \"%2\" (%3)").arg(e.field().c_str(), field.c_str(), e.what());
        for (const auto& p : parts)
            if (std::string(e.what()).find(p) == std::string::npos)
                return QString("message \"%1\" lacks \"%2\"").arg(e.what(), p.c_str());
        return {};
    }
    return "no ConfigError";
}

std::vector<std::string> all_texts(DataLoader& loader, const std::vector<Batch>& batches) {
    (void)loader;
    std::vector<std::string> docs;
    std::string cur;
    for (const auto& b : batches)
        for (int32_t t : b.tokens) {
            if (t == 0) docs.push_back(cur), cur.clear();
            else cur += static_cast<char>(t);
        }
    return docs;
}

}  // namespace

class TestData : public QObject {
    Q_OBJECT

private slots:
    void tokenizer_round_trip() {
        const std::string text = "Grüße, 世界! naïve café \xF0\x9F\x98\x80\n\ttab";
        const auto ids = ByteTokenizer::encode(text);
        QCOMPARE(ids.size(), text.size());
        for (int32_t id : ids) QVERIFY(id >= 0 && id < 256);
        QCOMPARE(ids[2], 0xC3);  // first byte of ü, not a negative char
        QCOMPARE(ByteTokenizer::decode(ids), text);
        QCOMPARE(ByteTokenizer::token_display('a'), std::string("a"));
        QCOMPARE(ByteTokenizer::token_display(' '), std::string("\u2420"));
        QCOMPARE(ByteTokenizer::token_display('\n'), std::string("\\n"));
        QCOMPARE(ByteTokenizer::token_display(0), std::string("\\x00"));
        QCOMPARE(ByteTokenizer::token_display(0xC3), std::string("\\xC3"));
        QVERIFY_THROWS_EXCEPTION(Error, ByteTokenizer::decode(std::vector<int32_t>{65, 256}));
    }

    void synthetic_tasks_are_valid() {
        SyntheticTasks gen(7);
        QCOMPARE(gen.label_names(), SyntheticTasks::task_names());
        std::map<std::string, int> seen;
        int bad_brackets = 0, negative = 0;
        for (uint64_t i = 0; i < 3000; ++i) {
            const Document d = gen.document(i);
            const std::string& task = gen.label_names().at(d.label);
            QVERIFY2(SyntheticTasks::is_valid(task, d.text), (task + ": " + d.text).c_str());
            ++seen[task];
            if (task == "language") {
                QCOMPARE(d.answer_begin, -1);
            } else {
                QVERIFY(d.answer_begin > 0 && d.answer_begin < static_cast<int>(d.text.size()));
                const char before = d.text[d.answer_begin - 1];
                QVERIFY2(before == (task == "arithmetic" ? '=' : '>'), d.text.c_str());
            }
            if (task == "brackets" && d.text.ends_with(">bad")) ++bad_brackets;
            if (task == "arithmetic" && d.text.find("=-") != std::string::npos) ++negative;
        }
        QCOMPARE(seen.size(), SyntheticTasks::task_names().size());
        QVERIFY(bad_brackets > 50 && bad_brackets < seen["brackets"] - 50);  // both verdicts occur
        QVERIFY(negative > 0);
        // The checkers reject wrong answers.
        QVERIFY(SyntheticTasks::is_valid("arithmetic", "37+485=522"));
        QVERIFY(!SyntheticTasks::is_valid("arithmetic", "37+485=523"));
        QVERIFY(SyntheticTasks::is_valid("reverse", "rev:abcd>dcba"));
        QVERIFY(!SyntheticTasks::is_valid("reverse", "rev:abcd>abcd"));
        QVERIFY(SyntheticTasks::is_valid("sort", "sort:dbca>abcd"));
        QVERIFY(!SyntheticTasks::is_valid("sort", "sort:dbca>abdc"));
        QVERIFY(SyntheticTasks::is_valid("brackets", "brk:([]{})>ok"));
        QVERIFY(SyntheticTasks::is_valid("brackets", "brk:([)]>bad"));
        QVERIFY(!SyntheticTasks::is_valid("brackets", "brk:([)]>ok"));
        QVERIFY(SyntheticTasks::is_valid("copy", "copy:kqzv>kqzv"));
        QVERIFY(SyntheticTasks::is_valid("language", "zo mipa vel ze teli run kat zo sorba."));
        QVERIFY(!SyntheticTasks::is_valid("language", "zo mipa vel ze teli rut kat zo sorba."));
        QVERIFY(!SyntheticTasks::is_valid("language", "zo mipi kat."));
        // Difficulty options are honoured.
        SyntheticOptions o;
        o.weights = {{"arithmetic", 1}};
        o.digits = 1;
        SyntheticTasks small(1, o);
        for (uint64_t i = 0; i < 200; ++i) {
            const std::string t = small.document(i).text;
            QVERIFY2(t.size() <= 6, t.c_str());  // "9+9=18", "0-9=-9"
        }
    }

    void synthetic_is_a_pure_function_of_seed_and_index() {
        SyntheticTasks a(11), b(11), c(12);
        QCOMPARE(a.document(123456).text, b.document(123456).text);
        // Order does not matter.
        const std::string later = a.document(99).text;
        (void)a.document(5);
        QCOMPARE(a.document(99).text, later);
        int differ = 0;
        for (uint64_t i = 0; i < 50; ++i) differ += a.document(i).text != c.document(i).text;
        QVERIFY(differ > 40);
    }

    void proportions_follow_weights() {
        SyntheticOptions o;
        o.weights = {{"arithmetic", 3}, {"copy", 1}, {"sort", 0}, {"language", 1}};
        SyntheticTasks gen(3, o);
        QCOMPARE(gen.label_names(), (std::vector<std::string>{"arithmetic", "copy", "language"}));
        std::vector<int> count(3, 0);
        for (uint64_t i = 0; i < 2000; ++i) ++count[gen.document(i).label];
        QVERIFY2(std::abs(count[0] - 1200) < 100, std::to_string(count[0]).c_str());
        QVERIFY2(std::abs(count[1] - 400) < 70, std::to_string(count[1]).c_str());
        QVERIFY2(std::abs(count[2] - 400) < 70, std::to_string(count[2]).c_str());
    }

    void loader_packs_documents() {
        DataLoader loader(DataSpec{}, 5, 4, 64);
        Batch b;
        std::vector<int32_t> labels;
        std::vector<uint8_t> mask;
        loader.next_train_batch(b, &labels, &mask);
        QCOMPARE(b.batch, 4);
        QCOMPARE(b.seq_len, 64);
        QCOMPARE(b.tokens.size(), size_t(4 * 65));
        QCOMPARE(labels.size(), b.tokens.size());
        QCOMPARE(mask.size(), b.tokens.size());
        int separators = 0, answer = 0;
        for (size_t i = 0; i < b.tokens.size(); ++i) {
            QVERIFY(b.tokens[i] >= 0 && b.tokens[i] < 256);
            QVERIFY(labels[i] >= 0 && labels[i] < int(loader.label_names().size()));
            separators += b.tokens[i] == 0;
            answer += mask[i];
            // The separator carries its document's label.
            if (b.tokens[i] == 0 && i > 0) QCOMPARE(labels[i], labels[i - 1]);
        }
        QVERIFY(separators > 4);
        QVERIFY(answer > 0);
        // Answer tokens of an arithmetic document are digits, '-' or the separator after '='.
        const int arith = 0;
        for (size_t i = 1; i < b.tokens.size(); ++i)
            if (mask[i] && labels[i] == arith && !mask[i - 1] && i % 65 != 0)
                QCOMPARE(b.tokens[i - 1], int32_t('='));
        // Steady state: buffers keep their storage.
        const int32_t* data = b.tokens.data();
        for (int k = 0; k < 10; ++k) loader.next_train_batch(b, &labels, &mask);
        QCOMPARE(b.tokens.data(), data);
    }

    void loader_is_deterministic() {
        DataLoader a(DataSpec{}, 1, 2, 32), b(DataSpec{}, 1, 2, 32), c(DataSpec{}, 2, 2, 32);
        Batch x, y, z;
        bool any_diff = false;
        for (int k = 0; k < 5; ++k) {
            a.next_train_batch(x);
            b.next_train_batch(y);
            c.next_train_batch(z);
            QCOMPARE(x.tokens, y.tokens);
            any_diff = any_diff || x.tokens != z.tokens;
        }
        QVERIFY(any_diff);
        // seed_offset changes the data too.
        DataSpec shifted;
        shifted.seed_offset = 1;
        DataLoader d(shifted, 1, 2, 32);
        d.next_train_batch(z);
        DataLoader e(DataSpec{}, 1, 2, 32);
        e.next_train_batch(x);
        QVERIFY(x.tokens != z.tokens);
        // Validation batches: the same on every call and for every seed.
        const auto v1 = a.validation_batches(3);
        QCOMPARE(v1.size(), size_t(3));
        QCOMPARE(a.validation_labels().size(), size_t(3));
        QCOMPARE(a.validation_answer_masks().size(), size_t(3));
        QCOMPARE(a.validation_batches(3)[2].tokens, v1[2].tokens);
        QCOMPARE(c.validation_batches(3)[0].tokens, v1[0].tokens);
    }

    void synthetic_split_is_disjoint() {
        DataSpec spec;
        spec.validation_fraction = 0.2;  // many validation texts, many chances to collide
        spec.digits = 1;                 // small task space: duplicates are frequent
        spec.min_length = 1;
        spec.max_length = 3;
        DataLoader loader(spec, 9, 8, 128);
        std::vector<Batch> train(40);
        for (auto& b : train) loader.next_train_batch(b);
        auto train_docs = all_texts(loader, train);
        const auto val_docs = all_texts(loader, loader.validation_batches(40));
        const std::set<std::string> train_set(train_docs.begin() + 1, train_docs.end());  // first may be cut
        std::set<std::string> val_set(val_docs.begin(), val_docs.end());
        QVERIFY(train_set.size() > 200 && val_set.size() > 50);
        int repeats_in_train = int(train_docs.size()) - int(train_set.size());
        QVERIFY(repeats_in_train > 0);  // the space is small indeed
        for (const auto& v : val_set) QVERIFY2(!train_set.count(v), v.c_str());
    }

    void resume_is_exact() {
        for (const char* source : {"synthetic", "text"}) {
            QTemporaryDir dir;
            DataSpec spec;
            if (std::string(source) == "text") {
                std::string text;
                for (int i = 0; i < 60; ++i) text += "Paragraph " + std::to_string(i) + " of some text.\n\n";
                write_file(std::filesystem::path(dir.path().toStdString()) / "a.txt", text);
                spec = DataSpec::from_json(json{{"source", "text"}, {"path", dir.path().toStdString()}});
            }
            DataLoader first(spec, 4, 3, 50);  // 60 short paragraphs: several epochs below
            Batch b;
            for (int k = 0; k < 5; ++k) first.next_train_batch(b);
            const json saved = json::parse(first.state().dump());
            std::vector<Batch> expected(5);
            std::vector<std::vector<int32_t>> expected_labels(5);
            for (int k = 0; k < 5; ++k) first.next_train_batch(expected[k], &expected_labels[k]);
            DataLoader second(spec, 4, 3, 50);
            second.restore(saved);
            for (int k = 0; k < 5; ++k) {
                std::vector<int32_t> labels;
                second.next_train_batch(b, &labels);
                QCOMPARE(b.tokens, expected[k].tokens);
                QCOMPARE(labels, expected_labels[k]);
            }
            QCOMPARE(second.batches_served(), 10);
            if (std::string(source) == "text") QVERIFY(second.epoch() >= 1);
            // A state from another seed is refused.
            DataLoader other(spec, 5, 3, 50);
            QVERIFY_THROWS_EXCEPTION(Error, other.restore(saved));
        }
    }

    void text_corpus_from_folder() {
        QTemporaryDir dir;
        const std::filesystem::path root = dir.path().toStdString();
        write_file(root / "poems.txt", "Roses are red.\nViolets are blue.\n\n\n  \nSecond poem\r\nline two\r\n");
        write_file(root / "legal" / "a.txt", "Article 1.\n\nArticle 2.\n");
        write_file(root / "legal" / "deep" / "README", "Article 3.");
        write_file(root / "legal" / "image.png", "not text");
        write_file(root / "binary", std::string("abc\0def", 7));
        write_file(root / ".hidden.txt", "secret");
        const Corpus c = load_text_corpus(root.string());
        QCOMPARE(c.label_names, (std::vector<std::string>{"legal", "poems"}));
        QCOMPARE(c.documents.size(), size_t(5));
        std::map<std::string, int> labels;
        for (const auto& d : c.documents) labels[d.text] = d.label;
        QCOMPARE(labels.at("Roses are red.\nViolets are blue."), 1);
        QCOMPARE(labels.at("Second poem\nline two"), 1);
        QCOMPARE(labels.at("Article 3."), 0);
        // Cap per label, evenly spaced.
        const Corpus capped = load_text_corpus(root.string(), 2);
        QCOMPARE(capped.documents.size(), size_t(4));
        // A single file: label is its stem.
        const Corpus one = load_text_corpus((root / "poems.txt").string());
        QCOMPARE(one.label_names, std::vector<std::string>{"poems"});
        // Errors name the path.
        try {
            load_text_corpus((root / "missing").string());
            QFAIL("no FileError for a missing path");
        } catch (const FileError& e) {
            QVERIFY(e.path().find("missing") != std::string::npos);
        }
        write_file(root / "empty" / "blank.txt", "\n\n  \n");
        QVERIFY_THROWS_EXCEPTION(FileError, load_text_corpus((root / "empty").string()));
        // Loader over the folder: index split is disjoint and covers everything.
        DataSpec spec = DataSpec::from_json(json{{"source", "text"}, {"path", root.string()},
                                                 {"validation_fraction", 0.3}});
        DataLoader loader(spec, 0, 1, 16);
        QCOMPARE(loader.train_documents() + loader.validation_documents(), int64_t(5));
        QVERIFY(loader.validation_documents() >= 1);
        QCOMPARE(loader.label_names(), c.label_names);
    }

    void fortunes_corpus() {
        const std::string root = FortunesOptions{}.root;
        if (!std::filesystem::is_directory(root))
            QSKIP("fortunes not installed: apt-get install fortunes-min fortunes-de fortunes-ru ... "
                  "(scripts/install-deps.sh)");
        const auto languages = fortune_languages(root);
        QVERIFY2(languages.size() >= 3, "install at least fortunes-min, fortunes-de, fortunes-ru");
        FortunesOptions o;
        o.max_per_label = 300;
        const Corpus c = load_fortunes_corpus(o);
        QCOMPARE(c.label_names, languages);
        std::vector<int> per(c.label_names.size(), 0);
        for (const auto& d : c.documents) {
            ++per[d.label];
            QVERIFY(!d.text.empty());
            QVERIFY(d.text.find('\0') == std::string::npos);
            QVERIFY(d.text.find("\x1b[") == std::string::npos);  // colour codes stripped
            QVERIFY(d.text.find("\n%\n") == std::string::npos);
        }
        for (int n : per) QVERIFY(n > 0 && n <= 300);
        // A selection of languages and an unknown one.
        o.languages = {languages[1], languages[0]};
        QCOMPARE(load_fortunes_corpus(o).label_names, (std::vector<std::string>{languages[0], languages[1]}));
        o.languages = {"xx"};
        try {
            load_fortunes_corpus(o);
            QFAIL("no FileError for an unknown language");
        } catch (const FileError& e) {
            QVERIFY(std::string(e.what()).find("fortunes-xx") != std::string::npos);
        }
        DataLoader loader(DataSpec::from_json(json{{"source", "fortunes"}, {"max_per_label", 200}}), 0, 2, 64);
        Batch b;
        loader.next_train_batch(b);
        const ProbeBatch p = loader.probe_batch(64 * int64_t(languages.size()));
        QCOMPARE(std::set<int32_t>(p.labels.begin(), p.labels.end()).size(), languages.size());
        QVERIFY(loader.unigram_baseline_loss(100000) < std::log(256.0));
        // The corpus comes grouped by language; the first validation batches still mix them.
        const std::vector<Batch>& val = loader.validation_batches(16);
        QVERIFY(!val.empty());
        std::set<int32_t> seen;
        for (const auto& vl : loader.validation_labels()) seen.insert(vl.begin(), vl.end());
        QVERIFY2(seen.size() >= std::min<size_t>(3, languages.size()),
                 "the first validation batches hold fewer than 3 languages");
    }

    void probe_covers_every_label() {
        DataLoader loader(DataSpec{}, 0, 2, 32);
        const ProbeBatch p = loader.probe_batch(256);
        QCOMPARE(p.batch.batch, 1);
        QCOMPARE(p.batch.seq_len, 255);
        QCOMPARE(p.batch.tokens.size(), size_t(256));
        QCOMPARE(p.text.size(), size_t(256));
        QCOMPARE(p.labels.size(), size_t(256));
        QCOMPARE(std::set<int32_t>(p.labels.begin(), p.labels.end()).size(), loader.label_names().size());
        for (size_t i = 0; i < 256; ++i) QCOMPARE(int32_t(static_cast<unsigned char>(p.text[i])), p.batch.tokens[i]);
        QCOMPARE(DataLoader(DataSpec{}, 9, 1, 8).probe_batch(256).batch.tokens, p.batch.tokens);
    }

    void data_spec_json() {
        QCOMPARE(DataSpec::from_json("synthetic"), DataSpec{});
        QCOMPARE(DataSpec{}.to_json(), json("synthetic"));
        const DataSpec legacy = DataSpec::from_json("corpus.txt");
        QCOMPARE(legacy.source, std::string("text"));
        QCOMPARE(legacy.path, std::string("corpus.txt"));
        DataSpec s = DataSpec::from_json(json{{"source", "synthetic"}, {"tasks", {{"copy", 2}, {"sort", 1}}},
                                              {"digits", 4}, {"validation_fraction", 0.1}});
        s.validate();
        QCOMPARE(DataSpec::from_json(s.to_json()), s);
        DataSpec f = DataSpec::from_json(json{{"source", "fortunes"}, {"languages", {"en", "de"}}, {"max_per_label", 500}});
        QCOMPARE(DataSpec::from_json(f.to_json()), f);

        struct Case {
            json j;
            std::string field;
            std::vector<std::string> parts;
        };
        const std::vector<Case> cases = {
            {{{"source", "web"}}, "training.data.source", {"\"web\""}},
            {{{"sauce", "text"}}, "training.data.sauce", {"did you mean \"training.data.source\"?"}},
            {{{"tasks", {{"arithmetc", 1}}}}, "training.data.tasks.arithmetc", {"did you mean"}},
            {{{"tasks", {{"copy", -1}}}}, "training.data.tasks.copy", {"got -1"}},
            {{{"tasks", {{"copy", 0}}}}, "training.data.tasks", {"at least one"}},
            {{{"digits", 0}}, "training.data.digits", {"got 0"}},
            {{{"max_length", 1000}}, "training.data.max_length", {"got 1000"}},
            {{{"validation_fraction", 0.9}}, "training.data.validation_fraction", {"got 0.9"}},
            {{{"max_per_label", 5}}, "training.data.max_per_label", {"does not apply", "\"synthetic\""}},
            {{{"source", "text"}}, "training.data.path", {"got \"\""}},
            {{{"source", "text"}, {"path", "x"}, {"max_per_label", -3}}, "training.data.max_per_label", {"got -3"}},
            {{{"source", "fortunes"}, {"languages", {"English"}}}, "training.data.languages", {"\"English\""}},
            {{{"source", "fortunes"}, {"languages", "en"}}, "training.data.languages", {"expected an array"}},
            {{{"digits", "three"}}, "training.data.digits", {"expected an integer"}},
            {json(7), "training.data", {"integer 7"}},
        };
        for (const auto& c : cases) {
            const QString failure =
                expect_config_error([&] { DataSpec::from_json(c.j).validate(); }, c.field, c.parts);
            QVERIFY2(failure.isEmpty(), qPrintable(QString::fromStdString(c.j.dump()) + ": " + failure));
        }
        // Through a project.
        json project = json::parse(R"({"name": "p", "training": {"data": {"source": "text"}}})");
        QVERIFY(expect_config_error([&] { Project::from_json(project).validate(); },
                                    "training.data.path", {}).isEmpty());
        project["training"]["data"] = json{{"source", "synthetic"}, {"tasks", {{"copy", 1}}}};
        QCOMPARE(Project::from_json(project).training.data.tasks.at("copy"), 1.0);
    }

    void unigram_baseline_below_uniform() {
        DataLoader loader(DataSpec{}, 0, 8, 128);
        const double loss = loader.unigram_baseline_loss(200000);
        qInfo("unigram baseline, default synthetic mix: %.4f nats/token (ln 256 = %.4f)", loss,
              std::log(256.0));
        QVERIFY(loss > 1.0 && loss < std::log(256.0));
        // Independent of the training position.
        Batch b;
        loader.next_train_batch(b);
        QCOMPARE(loader.unigram_baseline_loss(200000), loss);
    }
};

QTEST_APPLESS_MAIN(TestData)
#include "tst_data.moc"
