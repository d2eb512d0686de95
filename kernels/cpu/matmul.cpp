#include "kernels/cpu/matmul.h"

#include <algorithm>

#include "common/error.h"
#include "tensor/activation_quant.h"
#include "kernels/cpu/matmul_kernels.h"
#include "tensor/dequantize.h"

namespace pagedllm {

using matmul_detail::MatmulProblem;
using matmul_detail::RowRangeKernel;

GgmlType activation_type(GgmlType weight_type) {
  switch (weight_type) {
    case GgmlType::F32: case GgmlType::F16: case GgmlType::BF16:
      return weight_type;
    case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0:
      return GgmlType::Q8_0;
    case GgmlType::Q4_1: case GgmlType::Q5_1:
      return GgmlType::Q8_1;
    case GgmlType::Q2_K: case GgmlType::Q3_K: case GgmlType::Q4_K: case GgmlType::Q5_K: case GgmlType::Q6_K:
    case GgmlType::Q8_K:
      return GgmlType::Q8_K;
    default:
      fail("matmul: weights of type {} cannot be multiplied", type_name(weight_type));
  }
}

const char* matmul_simd_name() { return matmul_detail::simd_name(); }

namespace {

template <typename T>
void grow(std::vector<T>& buffer, size_t size) {
  if (buffer.size() < size) buffer.resize(size);
}

// Where convert_activations writes; the same buffers the kernels then read through MatmulProblem.
struct ActivationBuffers {
  uint8_t* rows;         // [M, row_bytes]
  size_t row_bytes;
  float* block_scales;   // [M, K / 32] for Q8_0 / Q8_1, else null
  float* block_sums;     // [M, K / 32] for Q8_1, else null
  int32_t* block_qsums;  // [M, K / 32] for Q8_0, else null
};

// Converts activation rows [m_begin, m_end) of x into the weight type's activation format.
void convert_activations(GgmlType format, const float* x, int64_t n_cols, const ActivationBuffers& buffers,
                         int64_t m_begin, int64_t m_end) {
  const int64_t n_blocks = n_cols / 32;
  for (int64_t m = m_begin; m < m_end; ++m) {
    const float* source = x + m * n_cols;  // [K]
    uint8_t* row = buffers.rows + m * buffers.row_bytes;
    switch (format) {
      case GgmlType::F16: {
        float* rounded = reinterpret_cast<float*>(row);  // [K]
        for (int64_t k = 0; k < n_cols; ++k) rounded[k] = round_through_fp16(source[k]);
        break;
      }
      case GgmlType::BF16: {
        float* rounded = reinterpret_cast<float*>(row);  // [K]
        for (int64_t k = 0; k < n_cols; ++k) rounded[k] = round_through_bf16(source[k]);
        break;
      }
      case GgmlType::Q8_0: {
        BlockQ8_0* blocks = reinterpret_cast<BlockQ8_0*>(row);  // [K / 32]
        float* scales = buffers.block_scales + m * n_blocks;     // [K / 32]
        int32_t* qsums = buffers.block_qsums + m * n_blocks;     // [K / 32]
        for (int64_t b = 0; b < n_blocks; ++b) {
          quantize_block_q8_0(source + 32 * b, blocks[b]);
          scales[b] = fp16_to_f32(blocks[b].d);
          int32_t sum = 0;
          for (int8_t q : blocks[b].qs) sum += q;
          qsums[b] = sum;
        }
        break;
      }
      case GgmlType::Q8_1: {
        BlockQ8_1* blocks = reinterpret_cast<BlockQ8_1*>(row);  // [K / 32]
        float* scales = buffers.block_scales + m * n_blocks;     // [K / 32]
        float* sums = buffers.block_sums + m * n_blocks;         // [K / 32]
        for (int64_t b = 0; b < n_blocks; ++b) {
          quantize_block_q8_1(source + 32 * b, blocks[b]);
          scales[b] = fp16_to_f32(blocks[b].d);
          sums[b] = fp16_to_f32(blocks[b].s);
        }
        break;
      }
      case GgmlType::Q8_K: {
        BlockQ8_K* blocks = reinterpret_cast<BlockQ8_K*>(row);  // [K / 256]
        for (int64_t b = 0; b < n_cols / 256; ++b) quantize_block_q8_k(source + 256 * b, blocks[b]);
        break;
      }
      default:
        break;
    }
  }
}

}  // namespace

void matmul(const WeightMatrix& w, const float* x, int64_t M, float* y, ThreadPool& pool, MatmulScratch& scratch,
            MatmulKernel kernel) {
  const TypeTraits& traits = type_traits(w.type);
  const GgmlType format = activation_type(w.type);
  const int64_t n_cols = w.n_cols;
  if (n_cols <= 0 || w.n_rows < 0 || M < 0) {
    fail("matmul: bad shape: {} x {} weights ({}), {} activation rows", w.n_rows, n_cols, traits.name, M);
  }
  if (n_cols % traits.block_size != 0) {
    fail("matmul: a row of {} weights has {} elements, not a multiple of the block size {}", traits.name, n_cols,
         traits.block_size);
  }
  if (M == 0 || w.n_rows == 0) return;

  MatmulProblem problem{};
  problem.weights = w.data;
  problem.weight_row_bytes = row_bytes(w.type, n_cols);
  problem.n_cols = n_cols;
  problem.n_rows = w.n_rows;
  problem.n_activation_rows = M;
  problem.output = y;
  if (format == GgmlType::F32) {
    problem.activations = reinterpret_cast<const uint8_t*>(x);
    problem.activation_row_bytes = static_cast<size_t>(n_cols) * sizeof(float);
  } else {
    const bool rounded_floats = format == GgmlType::F16 || format == GgmlType::BF16;
    ActivationBuffers buffers{};
    buffers.row_bytes = rounded_floats ? static_cast<size_t>(n_cols) * sizeof(float) : row_bytes(format, n_cols);
    grow(scratch.activations, static_cast<size_t>(M) * buffers.row_bytes);
    buffers.rows = scratch.activations.data();
    if (format == GgmlType::Q8_0 || format == GgmlType::Q8_1) {
      grow(scratch.activation_scales, static_cast<size_t>(M * (n_cols / 32)));
      grow(scratch.activation_sums, static_cast<size_t>(M * (n_cols / 32)));
      buffers.block_scales = scratch.activation_scales.data();
      buffers.block_sums = scratch.activation_sums.data();
    }
    if (format == GgmlType::Q8_0) {
      grow(scratch.activation_block_sums, static_cast<size_t>(M * (n_cols / 32)));
      buffers.block_qsums = scratch.activation_block_sums.data();
    }
    problem.activations = buffers.rows;
    problem.activation_row_bytes = buffers.row_bytes;
    problem.activation_scales = buffers.block_scales;
    problem.activation_sums = buffers.block_sums;
    problem.activation_block_sums = buffers.block_qsums;
    const auto convert_rows = [&](int64_t begin, int64_t end, int) {
      convert_activations(format, x, n_cols, buffers, begin, end);
    };
    if (M > 1) {
      pool.parallel_for(M, convert_rows);
    } else {
      convert_rows(0, M, 0);
    }
  }

  RowRangeKernel row_kernel = kernel == MatmulKernel::Auto ? matmul_detail::simd_row_kernel(w.type) : nullptr;
  if (row_kernel == nullptr) row_kernel = matmul_detail::scalar_row_kernel(w.type);
  // Threads take whole groups of output rows, so the SIMD kernels' groups of 8 weight rows are never cut.
  constexpr int64_t kRowsPerItem = 16;
  pool.parallel_for((w.n_rows + kRowsPerItem - 1) / kRowsPerItem, [&](int64_t begin, int64_t end, int) {
    row_kernel(problem, begin * kRowsPerItem, std::min(w.n_rows, end * kRowsPerItem));
  });
}

void embedding_lookup(const WeightMatrix& w, const int32_t* ids, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= w.n_rows) {
      fail("token id {} is out of range: the embedding matrix has {} rows", ids[i], w.n_rows);
    }
    dequantize_row(w.type, w.data + static_cast<size_t>(ids[i]) * row_bytes(w.type, w.n_cols), out + i * w.n_cols,
                   w.n_cols);
  }
}

}  // namespace pagedllm
