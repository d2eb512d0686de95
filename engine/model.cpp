#include "engine/model.h"

#include <map>

#include <fmt/format.h>

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

uint64_t Model::parameter_count() const {
  uint64_t total = 0;
  for (const GgufTensorInfo& t : file->tensors()) total += static_cast<uint64_t>(t.n_elements());
  return total;
}

uint64_t Model::tensor_bytes() const {
  uint64_t total = 0;
  for (const GgufTensorInfo& t : file->tensors()) total += t.n_bytes;
  return total;
}

std::string Model::main_weight_type() const {
  std::map<GgmlType, uint64_t> bytes;
  for (const GgufTensorInfo& t : file->tensors()) bytes[t.type] += t.n_bytes;
  GgmlType best = GgmlType::F32;
  uint64_t most = 0;
  for (const auto& [type, n] : bytes) {
    if (n > most) {
      most = n;
      best = type;
    }
  }
  return std::string(type_name(best));
}

std::string Model::description() const {
  const double n = static_cast<double>(parameter_count());
  const std::string size = n >= 1e9 ? fmt::format("{:.1f}B", n / 1e9)
                           : n >= 1e6 ? fmt::format("{:.0f}M", n / 1e6)
                                      : fmt::format("{:.0f}K", n / 1e3);
  return fmt::format("{} {} {}", config.architecture, size, main_weight_type());
}

}  // namespace pagedllm
