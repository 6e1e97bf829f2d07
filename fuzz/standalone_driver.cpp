// Without libFuzzer (gcc builds): runs LLVMFuzzerTestOneInput on mutations of the seed corpus
// for a bounded time. Usage: fuzz_frame_decoder_standalone SECONDS CORPUS_DIR
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
    const double seconds = argc > 1 ? std::atof(argv[1]) : 10.0;
    std::vector<std::string> corpus;
    if (argc > 2)
        for (const auto& e : std::filesystem::directory_iterator(argv[2])) {
            std::ifstream in(e.path(), std::ios::binary);
            corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
    if (corpus.empty()) corpus.push_back("MOEW");
    std::mt19937_64 rng(42);
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    uint64_t runs = 0;
    while (std::chrono::steady_clock::now() < end) {
        for (int batch = 0; batch < 256; ++batch, ++runs) {
            std::string s = corpus[rng() % corpus.size()];
            const int edits = 1 + int(rng() % 16);
            for (int k = 0; k < edits; ++k) {
                const size_t at = s.empty() ? 0 : rng() % s.size();
                switch (rng() % 5) {
                case 0: if (!s.empty()) s[at] = char(rng()); break;
                case 1: if (!s.empty()) s.erase(at, 1 + rng() % 8); break;
                case 2: s.insert(at, 1, char(rng())); break;
                case 3: s += corpus[rng() % corpus.size()]; break;  // splice
                default: if (s.size() >= 12) s[4 + rng() % 8] = char(rng() % 4 ? 0 : rng()); break;  // lengths
                }
            }
            LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
        }
    }
    std::printf("standalone fuzz driver: %llu inputs in %.0f s, no crash\n", static_cast<unsigned long long>(runs), seconds);
    return 0;
}
