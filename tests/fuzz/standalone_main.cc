// Runs a libFuzzer target without libFuzzer (GCC builds, CI): every file of the corpus directory
// given as argv[1], then N seeded mutations of them (bit flips, truncations, splices, inserted
// bytes). libFuzzer proper runs the same targets for as long as asked: scripts/fuzz.sh.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [MUTATIONS] [SEED]\n", argv[0]);
    return 2;
  }
  long mutations = argc > 2 ? std::atol(argv[2]) : 20000;
  unsigned long seed = argc > 3 ? std::stoul(argv[3]) : 1;
  std::vector<std::string> corpus;
  for (const auto& f : std::filesystem::directory_iterator(argv[1])) {
    std::ifstream in(f.path(), std::ios::binary);
    corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (corpus.empty()) corpus.emplace_back();
  auto run = [](const std::string& s) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  for (const std::string& s : corpus) run(s);
  std::mt19937_64 rng(seed);
  for (long i = 0; i < mutations; ++i) {
    std::string s = corpus[rng() % corpus.size()];
    int edits = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < edits; ++k) {
      size_t at = s.empty() ? 0 : rng() % s.size();
      switch (rng() % 5) {
        case 0:
          if (!s.empty()) s[at] ^= static_cast<char>(1u << (rng() % 8));
          break;
        case 1:
          s.resize(at);
          break;
        case 2:
          s.insert(at, 1, static_cast<char>(rng() % 256));
          break;
        case 3: {
          const std::string& other = corpus[rng() % corpus.size()];
          if (!other.empty()) s.insert(at, other.substr(rng() % other.size(), 16));
          break;
        }
        case 4:
          if (!s.empty()) s.erase(at, 1 + rng() % 8);
          break;
      }
    }
    run(s);
  }
  std::printf("%zu corpus inputs and %ld mutations (seed %lu): 0 crashes\n", corpus.size(),
              mutations, seed);
  return 0;
}
