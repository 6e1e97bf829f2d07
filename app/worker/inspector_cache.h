#pragma once
// InspectorCache: the worker's loaded checkpoints for inspect and generate requests. Loading a
// real model takes seconds to minutes, so the most recently used ones stay loaded (capacity
// models, default 1, bounding the memory held). A Lease serialises use of one inspector (its
// backend and forward state are not thread-safe); requests for the same checkpoint wait for
// each other, requests for other checkpoints load their own. An evicted inspector lives on
// until its last lease ends.
#include <cstddef>
#include <list>
#include <memory>
#include <mutex>
#include <string>

namespace moe {
class CheckpointInspector;
}

namespace moe::worker {

class InspectorCache {
    struct Entry;

public:
    // threads: CPU threads of each inspector's forward passes (0 = all cores).
    explicit InspectorCache(size_t capacity = 1, int threads = 1)
        : capacity_(capacity), threads_(threads) {}

    class Lease {
    public:
        Lease(std::shared_ptr<Entry> entry);
        ~Lease();
        Lease(Lease&&) noexcept;
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        CheckpointInspector& operator*() const;
        CheckpointInspector* operator->() const { return &**this; }
        bool loaded_now() const { return loaded_now_; }  // this lease loaded the weights

    private:
        friend class InspectorCache;
        std::shared_ptr<Entry> entry_;
        std::unique_lock<std::mutex> lock_;
        bool loaded_now_ = false;
    };

    // The inspector of `dir` on `device`, loaded on first use (FileError/ConfigError from the
    // load propagate, and the failed entry is not kept). Blocks while another lease holds it.
    Lease acquire(const std::string& dir, const std::string& device);

private:
    struct Entry {
        std::string key;
        std::mutex use;                                  // held by a lease
        std::unique_ptr<CheckpointInspector> inspector;  // loaded under `use`
        ~Entry();
    };
    size_t capacity_;
    int threads_;
    mutable std::mutex mutex_;
    std::list<std::shared_ptr<Entry>> entries_;  // most recently used first
};

}  // namespace moe::worker
