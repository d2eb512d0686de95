#pragma once
// A weight matrix as a GGUF file stores it: n_rows rows of n_cols elements in one of the ggml types, row i at
// data + i * row_bytes(type, n_cols). n_cols is the input width (K), n_rows the output width (N). A view: the
// bytes belong to the mmapped file (or to whoever built the view).
#include <cstdint>

#include "tensor/tensor_types.h"

namespace pagedllm {

struct WeightMatrix {
  GgmlType type;
  const uint8_t* data;
  int64_t n_cols;
  int64_t n_rows;
};

inline size_t weight_matrix_bytes(const WeightMatrix& w) { return row_bytes(w.type, w.n_cols) * static_cast<size_t>(w.n_rows); }

}  // namespace pagedllm
