#include "core/allocator.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

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
