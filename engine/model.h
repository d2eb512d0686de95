#pragma once
// A loaded model: the mmapped GGUF, its config, the weight views and the tokenizer built from the same file.
#include <cstdint>
#include <memory>
#include <string>

#include "model_loader/model_weights.h"
#include "model_loader/gguf.h"
#include "model_loader/model_config.h"
#include "tokenizer/tokenizer.h"

namespace pagedllm {

struct Model {
  std::unique_ptr<GgufFile> file;
  ModelConfig config;
  LlamaWeights weights;
  std::unique_ptr<Tokenizer> tokenizer;

  // Throws pagedllm::Error naming the file and what is wrong with it.
  static std::unique_ptr<Model> load(const std::string& path);

  uint64_t parameter_count() const;  // elements of every tensor in the file
  uint64_t tensor_bytes() const;     // bytes of every tensor as stored
  // The type most of the weights' bytes are stored in ("Q4_1", "F16", ...).
  std::string main_weight_type() const;
  // "llama 135M Q4_1": architecture, size, main weight type.
  std::string description() const;
};

}  // namespace pagedllm
