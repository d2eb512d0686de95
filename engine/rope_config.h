#pragma once
// The RoPE parameters every backend derives from a model's config (layout, base, linear or YaRN scaling).
#include "kernels/common/rope.h"
#include "model_loader/model_config.h"

namespace pagedllm {

RopeParams rope_params_for(const ModelConfig& config);

}  // namespace pagedllm
