#pragma once
// Golden files made on synthetic models (scripts/gen_golden.py, scripts/gen_tokenizer_golden.py) name the writer's
// preset and the FNV-1a 64 fingerprint of the file llama.cpp ran; no model file is committed. The test rebuilds the
// file from the preset and must get the same bytes, or the golden file is stale.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "model_loader/synthetic_model.h"

namespace pagedllm::test {

// The bytes of the synthetic model `golden` was made on (golden["model"] is the preset), REQUIREd to be the file
// llama.cpp ran.
inline std::vector<uint8_t> synthetic_golden_model(const nlohmann::json& golden) {
  const std::string preset = golden.at("model");
  std::vector<uint8_t> bytes = build_synthetic_gguf(synthetic_spec(preset));
  const std::string fingerprint = fmt::format("{:016x}", fnv1a64(bytes));
  REQUIRE_MESSAGE(fingerprint == golden.at("model_fnv1a64").get<std::string>(),
                  "the synthetic model '" << preset << "' is no longer the file llama.cpp ran (FNV-1a 64 "
                  << fingerprint << ", golden " << golden.at("model_fnv1a64").get<std::string>()
                  << "): a change to the writer or the preset needs the golden files regenerated (scripts/)");
  return bytes;
}

}  // namespace pagedllm::test
