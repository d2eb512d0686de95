#include "engine/model.h"

#include "common/error.h"

namespace pagedllm {

std::unique_ptr<Model> Model::load(const std::string& path) {
  auto model = std::make_unique<Model>();
  model->file = GgufFile::open(path);
  model->config = read_model_config(*model->file);
  model->weights = load_llama_weights(*model->file, model->config);
  model->tokenizer = Tokenizer::from_gguf(*model->file);
  if (model->tokenizer->n_vocab() != model->config.n_vocab) {
    fail("{}: the tokenizer has {} tokens but token_embd.weight has {} rows", path, model->tokenizer->n_vocab(),
         model->config.n_vocab);
  }
  return model;
}

}  // namespace pagedllm
