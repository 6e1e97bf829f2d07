#include "core/allocator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/system_memory.h"

namespace moe {

namespace {

class HostAllocator final : public Allocator {
public:
    Device device() const override { return {}; }
    void* allocate(size_t bytes, const char* what) override {
        const size_t rounded = ((bytes + 63) / 64) * 64;
        void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
        if (!p)
            throw Error(std::string("out of host memory allocating ") + (what ? what : "a buffer") +
                        " (" + std::to_string(bytes) + " bytes)");
        return p;
    }
    void deallocate(void* p) noexcept override { std::free(p); }
    void zero(void* p, size_t bytes) override {
        if (bytes) std::memset(p, 0, bytes);
    }
    void copy(void* dst, const void* src, size_t bytes, CopyKind) override {
        if (bytes && dst != src) std::memmove(dst, src, bytes);
    }
};

thread_local Allocator* g_current = nullptr;

}  // namespace

void require_memory(Allocator& allocator, size_t bytes, const std::string& what) {
    auto gib = [](size_t b) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.2f GiB", double(b) / double(1ull << 30));
        return std::string(buf);
    };
    if (allocator.device().is_host()) {
        const size_t available = host_memory_available();
        if (bytes <= available) return;
        throw Error("not enough host memory for " + what + ": " + gib(bytes) + " needed, " +
                    gib(available) + " available; choose a smaller model (hidden_size, "
                    "n_routed_experts, num_hidden_layers) or batch");
    }
    size_t free_b = 0, total_b = 0;
    allocator.memory_info(free_b, total_b);
    if (total_b == 0 || bytes <= free_b) return;
    throw Error("not enough memory on " + allocator.device().str() + " for " + what + ": " +
                gib(bytes) + " needed, " + gib(free_b) + " free of " + gib(total_b) +
                "; choose a smaller model (hidden_size, n_routed_experts, num_hidden_layers) or "
                "train on the CPU");
}

Allocator& host_allocator() {
    static HostAllocator a;
    return a;
}

Allocator& current_allocator() {
    return g_current ? *g_current : host_allocator();
}

DeviceScope::DeviceScope(Allocator& a) : previous_(g_current) {
    g_current = &a;
}

DeviceScope::~DeviceScope() {
    g_current = previous_;
}

}  // namespace moe
