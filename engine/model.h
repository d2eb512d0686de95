#pragma once
// A loaded model: the mmapped GGUF, its config, the weight views and the tokenizer built from the same file.
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
};

}  // namespace pagedllm
