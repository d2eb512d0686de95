// Writes a synthetic model (model_loader/synthetic_model.h) to a GGUF file and prints its FNV-1a 64 fingerprint.
// scripts/gen_golden.py runs llama.cpp on these files; the golden tests regenerate them from the same preset and
// check the fingerprint, so no model file needs to be committed.
//
//   write_synthetic_model PRESET OUT.gguf
#include <cstdio>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/error.h"
#include "model_loader/synthetic_model.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    fmt::print(stderr, "usage: {} PRESET OUT.gguf (presets: {})\n", argv[0],
               fmt::join(pagedllm::synthetic_presets(), ", "));
    return 2;
  }
  try {
    const std::vector<uint8_t> bytes = pagedllm::build_synthetic_gguf(pagedllm::synthetic_spec(argv[1]));
    const std::string path = argv[2];
    const std::string partial = path + ".partial";
    {
      std::ofstream out(partial, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
      if (!out) pagedllm::fail("cannot write {}", partial);
    }
    if (std::rename(partial.c_str(), path.c_str()) != 0) pagedllm::fail("cannot rename {} to {}", partial, path);
    fmt::print("{:016x} {} bytes\n", pagedllm::fnv1a64(bytes), bytes.size());
  } catch (const pagedllm::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
