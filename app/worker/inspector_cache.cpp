#include "worker/inspector_cache.h"

#include <algorithm>

#include "inspect/checkpoint_inspector.h"

namespace moe::worker {

InspectorCache::Entry::~Entry() = default;

InspectorCache::Lease::Lease(std::shared_ptr<Entry> entry)
    : entry_(std::move(entry)), lock_(entry_->use) {}
InspectorCache::Lease::~Lease() = default;
InspectorCache::Lease::Lease(Lease&&) noexcept = default;

CheckpointInspector& InspectorCache::Lease::operator*() const {
    return *entry_->inspector;
}

InspectorCache::Lease InspectorCache::acquire(const std::string& dir, const std::string& device) {
    const std::string key = device + "\n" + dir;
    std::shared_ptr<Entry> entry;
    {
        const std::lock_guard<std::mutex> lock(mutex_);
        auto it = std::find_if(entries_.begin(), entries_.end(),
                               [&](const auto& e) { return e->key == key; });
        if (it != entries_.end()) {
            entry = *it;
            entries_.erase(it);
        } else {
            entry = std::make_shared<Entry>();
            entry->key = key;
        }
        entries_.push_front(entry);
        while (entries_.size() > std::max<size_t>(capacity_, 1)) entries_.pop_back();
    }
    Lease lease(entry);  // waits for the entry's current user
    if (!entry->inspector) {
        try {
            entry->inspector = std::make_unique<CheckpointInspector>(dir, threads_, device);
            lease.loaded_now_ = true;
        } catch (...) {
            const std::lock_guard<std::mutex> lock(mutex_);
            entries_.remove(entry);  // a later request tries again (the file may be fixed)
            throw;
        }
    }
    return lease;
}

}  // namespace moe::worker
