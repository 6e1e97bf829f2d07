// Where tensors live, checked without a GPU: a backend whose allocator hands out host memory
// but reports a CUDA device ("pretend device"). The model, optimizer, trainer, checkpoints and
// evaluation then take every device path (uploads, downloads, arenas, index buffers) while the
// CPU computes, so results must equal the plain CPU run bit for bit; in debug builds a host
// read of a device tensor aborts (Tensor::host_data asserts). Also: the parameter arena, the
// backend factory's messages and the project's training.device field.
#include <QtTest>

#include <QTemporaryDir>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend_registry.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "train/adamw.h"
#include "train/trainer.h"
#include "train/training_checkpoint.h"

using namespace moe;
using namespace moe::test;

namespace {

// Host memory that says it is cuda:7. Counts what it hands out.
class PretendDeviceAllocator final : public Allocator {
public:
    Device device() const override { return {Device::Kind::Cuda, 7}; }
    void* allocate(size_t bytes, const char* what) override {
        ++allocations;
        return host_allocator().allocate(bytes, what);
    }
    void deallocate(void* p) noexcept override { host_allocator().deallocate(p); }
    void zero(void* p, size_t bytes) override { host_allocator().zero(p, bytes); }
    void copy(void* dst, const void* src, size_t bytes, CopyKind kind) override {
        ++copies[static_cast<int>(kind)];
        std::memmove(dst, src, bytes);
    }
    void memory_info(size_t& free_bytes, size_t& total_bytes) const override {
        free_bytes = free_limit;
        total_bytes = free_limit ? 2 * free_limit : 0;
    }
    size_t free_limit = 0;  // 0: not reported (no check)
    std::atomic<int64_t> allocations{0};
    std::atomic<int64_t> copies[3] = {0, 0, 0};
};

PretendDeviceAllocator& pretend() {
    static PretendDeviceAllocator a;
    return a;
}

class PretendDeviceBackend final : public CpuBackend {
public:
    using CpuBackend::CpuBackend;
    Allocator& allocator() override { return pretend(); }
    std::string describe() const override { return "cuda:7 (pretend: host memory)"; }
};

std::vector<float> all_grads(Model& m) {
    std::vector<float> out;
    for (Parameter* p : m.parameters().all())
        if (p->trainable) {
            const std::vector<float> g = p->grad.to_host();
            out.insert(out.end(), g.begin(), g.end());
        }
    return out;
}

std::vector<double> run_steps(const Project& p, const std::string& run, int64_t steps,
                              const std::string& resume = "", const std::string& device = "") {
    std::unique_ptr<Trainer> t =
        resume.empty() ? std::make_unique<Trainer>(p, TrainerPaths{run, run + ".ckpt"}, 1)
                       : Trainer::resume(resume, {run, run + ".ckpt"}, 1, 0, device);
    std::vector<double> losses;
    while (t->steps_done() < steps) losses.push_back(t->step().loss);
    t->close();
    return losses;
}

}  // namespace

class TestPlacement : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        set_device_backend_maker([](const Device& d) -> std::unique_ptr<Backend> {
            if (d.index != 7) throw Error("only the pretend cuda:7 here");
            return std::make_unique<PretendDeviceBackend>(1);
        });
    }

    // Every parameter, gradient and activation of the model lives where its backend says, and
    // the results are those of the CPU backend, bit for bit.
    void modelOnAPretendDevice() {
        const ModelConfig cfg = tiny_full_config();
        CpuBackend cpu(1);
        PretendDeviceBackend dev(1);
        Model a(cfg, cpu), b(cfg, dev);
        const int64_t before = pretend().allocations;
        for (Model* m : {&a, &b}) {
            m->init_weights(3);
            spread_router(*m, 5);
        }
        for (Parameter* p : b.parameters().all()) {
            QCOMPARE(p->value.device().str(), std::string("cuda:7"));
            if (p->trainable) QCOMPARE(p->grad.device().str(), std::string("cuda:7"));
        }
        QCOMPARE(a.parameters().all().front()->value.device().str(), std::string("cpu"));
        const Batch batch = random_batch(cfg.vocab_size, 2, 8, 11);
        ForwardOptions opt;
        opt.mtp_lambda = 0.3;
        opt.probe_routing = true;
        const LossReport ra = a.forward(batch, opt), rb = b.forward(batch, opt);
        QCOMPARE(rb.total, ra.total);
        QCOMPARE(b.logits().device().str(), std::string("cuda:7"));
        QCOMPARE(b.logits().to_host(), a.logits().to_host());
        QCOMPARE(b.routing().size(), a.routing().size());
        for (size_t l = 0; l < a.routing().size(); ++l) {
            QCOMPARE(b.routing()[l].topk_idx, a.routing()[l].topk_idx);
            QCOMPARE(b.routing()[l].selection_scores, a.routing()[l].selection_scores);
        }
        for (Model* m : {&a, &b}) {
            m->parameters().zero_grads();
            m->backward();
        }
        QVERIFY(all_grads(b) == all_grads(a));
        // Two arenas (values, gradients) and the activations: all from the pretend device.
        QVERIFY(pretend().allocations - before > 20);
        // Sparsity counters read device activations back.
        QCOMPARE(b.ffn_near_zero(1e-3f), a.ffn_near_zero(1e-3f));
    }

    // Parameters are views into two arenas ordered [matrices | vectors | buffers]; AdamW's
    // two arena-wide updates equal one update per tensor.
    void parameterArena() {
        const ModelConfig cfg = tiny_full_config();
        CpuBackend cpu(1);
        Model m(cfg, cpu);
        m.init_weights(1);
        ParameterStore& s = m.parameters();
        QVERIFY(s.packed());
        int64_t decayed = 0, trainable = 0, total = 0;
        for (Parameter* p : s.all()) {
            total += p->value.numel();
            if (!p->trainable) continue;
            trainable += p->value.numel();
            if (p->value.rank() >= 2) {
                decayed += p->value.numel();
                QVERIFY(p->grad.data() < s.grad_arena().data() + s.decayed_numel());
            } else {
                QVERIFY(p->grad.data() >= s.grad_arena().data() + s.decayed_numel());
            }
            QCOMPARE(p->grad.data() - s.grad_arena().data(),
                     p->value.data() - s.value_arena().data());
        }
        QCOMPARE(s.decayed_numel(), decayed);
        QCOMPARE(s.grad_arena().numel(), trainable);
        QCOMPARE(s.value_arena().numel(), total);
        QVERIFY_THROWS_EXCEPTION(Error, s.add("late.weight", {2, 2}));

        // The same step through a per-tensor (unpacked) store.
        OptimizerSettings opt;
        opt.weight_decay = 0.1;
        ParameterStore loose;
        for (Parameter* p : s.all()) {
            Parameter& q = loose.add(p->name, p->value.shape(), p->trainable);
            q.value.copy_from(p->value);
        }
        const Batch batch = random_batch(cfg.vocab_size, 2, 8, 4);
        m.forward(batch);
        s.zero_grads();
        m.backward();
        for (Parameter* p : s.all())
            if (p->trainable) loose.at(p->name).grad.copy_from(p->grad);
        AdamW packed(s, cpu, opt), per_tensor(loose, cpu, opt);
        for (int step = 0; step < 3; ++step) {
            packed.step(1e-2, 0.5);
            per_tensor.step(1e-2, 0.5);
        }
        for (Parameter* p : s.all())
            QCOMPARE(p->value.to_host(), loose.at(p->name).value.to_host());
        // Checkpoint names of the moments are unchanged: one m and one v per trainable tensor.
        QCOMPARE(static_cast<int64_t>(packed.state_tensors().size()),
                 2 * static_cast<int64_t>(std::count_if(s.all().begin(), s.all().end(),
                                                        [](auto* p) { return p->trainable; })));
    }

    // The Trainer on the pretend device: same losses as on the CPU; its checkpoint resumes
    // on the CPU, and a CPU checkpoint on the device, continuing the same losses.
    void trainerAndCheckpointsAcrossDevices() {
        QTemporaryDir dir;
        Project p = shrunk_tiny_tasks(8);
        p.training.checkpoint_every = 4;
        p.training.keep_checkpoints = 0;
        p.training.device = "cpu";
        const std::string d = dir.path().toStdString();
        const auto cpu = run_steps(p, d + "/cpu.h5", 8);
        p.training.device = "cuda:7";
        const auto dev = run_steps(p, d + "/dev.h5", 8);
        QCOMPARE(dev, cpu);
        const auto dev_to_cpu =
            run_steps(p, d + "/d2c.h5", 8, checkpoint_dir_name(d + "/dev.h5.ckpt", 4), "cpu");
        const auto cpu_to_dev =
            run_steps(p, d + "/c2d.h5", 8, checkpoint_dir_name(d + "/cpu.h5.ckpt", 4), "cuda:7");
        const std::vector<double> tail(cpu.begin() + 4, cpu.end());
        QCOMPARE(dev_to_cpu, tail);
        QCOMPARE(cpu_to_dev, tail);
        QVERIFY(pretend().copies[static_cast<int>(CopyKind::DeviceToHost)] > 0);
        QVERIFY(pretend().copies[static_cast<int>(CopyKind::HostToDevice)] > 0);
    }

    // In debug builds, reading a device tensor's elements from host code aborts.
    void hostReadOfADeviceTensorIsCaught() {
#ifdef NDEBUG
        QSKIP("assertions are compiled out in this build type (checked by the debug preset)");
#else
        const pid_t pid = fork();
        if (pid == 0) {
            std::signal(SIGABRT, SIG_DFL);
            Tensor t({4}, pretend());
            volatile float x = t[0];  // host read of a device tensor
            (void)x;
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        QVERIFY2(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
                 "operator[] on a device tensor did not abort");
#endif
    }

    // Sizes are checked before the arenas are allocated: a device too small for the model
    // gets a message with the sizes, not an allocation failure deep inside.
    void deviceTooSmall() {
        PretendDeviceBackend dev(1);
        pretend().free_limit = 4096;
        const int64_t before = pretend().allocations;
        try {
            Model m(tiny_full_config(), dev);
            pretend().free_limit = 0;
            QFAIL("a model larger than the device was accepted");
        } catch (const Error& e) {
            pretend().free_limit = 0;
            const QString msg = e.what();
            QVERIFY2(msg.contains("not enough memory on cuda:7") && msg.contains("parameters") &&
                         msg.contains("free of"),
                     e.what());
        }
        QCOMPARE(int64_t(pretend().allocations), before);  // nothing allocated
    }

    void factoryMessages() {
        QVERIFY(make_backend("cpu", 1) != nullptr);
        QCOMPARE(std::string(make_backend("cuda:7", 1)->describe()),
                 std::string("cuda:7 (pretend: host memory)"));
        try {
            make_backend("gpu0", 1, "--device");
            QFAIL("gpu0 accepted");
        } catch (const ConfigError& e) {
            QVERIFY2(QString(e.what()).contains("--device") && QString(e.what()).contains("gpu0"),
                     e.what());
        }
        set_device_backend_maker(nullptr);
        try {
            make_backend("cuda:0", 1, "training.device");
            QFAIL("cuda:0 without a CUDA backend accepted");
        } catch (const Error& e) {
            QVERIFY2(QString(e.what()).contains("without the CUDA backend"), e.what());
        }
        initTestCase();  // restore the pretend maker
        Project p = shrunk_tiny_tasks(2);
        p.training.device = "cuda:x";
        try {
            p.validate();
            QFAIL("cuda:x accepted");
        } catch (const ConfigError& e) {
            QVERIFY2(QString(e.what()).contains("training.device") &&
                         QString(e.what()).contains("cuda:x"),
                     e.what());
        }
        // The field round-trips through the project's JSON.
        p.training.device = "cuda:3";
        QCOMPARE(Project::from_json(p.to_json()).training.device, std::string("cuda:3"));
    }
};

QTEST_APPLESS_MAIN(TestPlacement)
#include "tst_placement.moc"
