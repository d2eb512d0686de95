#pragma once
// Host-side dispatch from a GgmlType to the block struct of tensor/quant_blocks.h, so a kernel template
// over the block type is instantiated once per format: dispatch_quant_block(type, [&](auto tag) { using Block =
// decltype(tag); ... }). Returns false for float types and types without a block struct.
#include "tensor/quant_blocks.h"
#include "tensor/tensor_types.h"

namespace pagedllm::cuda {

template <typename Function>
bool dispatch_quant_block(GgmlType type, Function&& function) {
  switch (type) {
    case GgmlType::Q4_0: function(BlockQ4_0{}); return true;
    case GgmlType::Q4_1: function(BlockQ4_1{}); return true;
    case GgmlType::Q5_0: function(BlockQ5_0{}); return true;
    case GgmlType::Q5_1: function(BlockQ5_1{}); return true;
    case GgmlType::Q8_0: function(BlockQ8_0{}); return true;
    case GgmlType::Q2_K: function(BlockQ2_K{}); return true;
    case GgmlType::Q3_K: function(BlockQ3_K{}); return true;
    case GgmlType::Q4_K: function(BlockQ4_K{}); return true;
    case GgmlType::Q5_K: function(BlockQ5_K{}); return true;
    case GgmlType::Q6_K: function(BlockQ6_K{}); return true;
    case GgmlType::Q8_K: function(BlockQ8_K{}); return true;
    default: return false;
  }
}

}  // namespace pagedllm::cuda
