#include "engine/model.h"

#include "common/error.h"
#include "engine/rope_config.h"

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

RopeParams rope_params_for(const ModelConfig& c) {
  RopeParams p;
  p.n_rot = static_cast<int>(c.n_rot);
  p.freq_base = c.rope_freq_base;
  p.freq_scale = c.rope_freq_scale;
  p.attn_factor = c.rope_attn_factor;
  p.neox = c.rope_layout == RopeLayout::Neox;
  if (c.rope_scaling == RopeScaling::Yarn) {
    p.ext_factor = 1.0f;
    rope_yarn_corr_dims(p.n_rot, static_cast<int>(c.rope_original_context), p.freq_base, &p.yarn_low, &p.yarn_high);
  }
  return p;
}

}  // namespace pagedllm
