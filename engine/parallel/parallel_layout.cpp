#include "parallel/parallel_layout.h"

#include <charconv>
#include <sstream>

namespace moe {

ParallelLayout ParallelLayout::parse(const std::string& text, const std::string& field) {
    ParallelLayout l;
    bool seen_ep = false, seen_dp = false, seen_zero = false;
    auto bad = [&](const std::string& why) {
        return ConfigError(field, "\"" + text + "\": " + why + " (expected e.g. ep=2,dp=2)");
    };
    if (text.empty()) throw bad("empty");
    std::stringstream in(text);
    std::string part;
    while (std::getline(in, part, ',')) {
        const size_t eq = part.find('=');
        if (eq == std::string::npos) throw bad("\"" + part + "\" has no '='");
        const std::string key = part.substr(0, eq), value = part.substr(eq + 1);
        int v = 0;
        const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        if (ec != std::errc() || end != value.data() + value.size() ||
            v < (key == "zero" ? 0 : 1) || v > 4096)
            throw bad("\"" + value + "\" is not a count from 1 to 4096");
        if (key == "ep" && !seen_ep) {
            l.ep = v;
            seen_ep = true;
        } else if (key == "dp" && !seen_dp) {
            l.dp = v;
            seen_dp = true;
        } else if (key == "zero" && !seen_zero && v <= 1) {
            l.zero = v == 1;
            seen_zero = true;
        } else {
            throw bad("\"" + key + "=" + value +
                      "\" is not ep=N, dp=N or zero=0|1, or is given twice");
        }
    }
    return l;
}

std::string ParallelLayout::to_string() const {
    return "ep=" + std::to_string(ep) + ",dp=" + std::to_string(dp) + (zero ? ",zero=1" : "");
}

ParallelContext ParallelContext::solo() {
    ParallelContext c;
    c.world = std::make_shared<SoloCommunicator>();
    c.experts = std::make_shared<SoloCommunicator>();
    c.data = std::make_shared<SoloCommunicator>();
    return c;
}

ParallelContext ParallelContext::create(std::shared_ptr<Communicator> world,
                                        const ParallelLayout& layout) {
    if (world->size() != layout.world())
        throw ConfigError("--parallel", layout.to_string() + " needs " +
                                            std::to_string(layout.world()) +
                                            " ranks, the job has " + std::to_string(world->size()) +
                                            " (mpirun -np " + std::to_string(layout.world()) + ")");
    ParallelContext c;
    c.layout = layout;
    c.active = true;
    c.world = std::move(world);
    const int r = c.world->rank();
    c.experts = c.world->split(layout.dp_index(r), layout.ep_index(r));
    c.data = c.world->split(layout.ep_index(r), layout.dp_index(r));
    return c;
}

}  // namespace moe
