// The CPU matmul against a naive double-precision product of the dequantized weights with the activations after
// the same activation quantization round trip, for every computable weight type and odd shapes; the SIMD kernels
// against the scalar ones; thread counts and activation-row tiling that must not change a single bit.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/thread_pool.h"
#include "tensor/float16.h"
#include "kernels/cpu/matmul.h"
#include "tensor/dequantize.h"
#include "tensor/quantize.h"

using namespace pagedllm;

namespace {

const GgmlType kComputableTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1,
                                     GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K,
                                     GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q8_K};

void store_fp16(uint8_t* at, float value) {
  const uint16_t half = f32_to_fp16(value);
  std::memcpy(at, &half, 2);
}

// Random weights: float types from a Gaussian; block types as random bytes (every bit pattern of the quants and
// packed scales appears) with their f16/f32 scale fields overwritten by finite values of weight-like size.
std::vector<uint8_t> random_weights(GgmlType type, int64_t n_rows, int64_t n_cols, std::mt19937& rng) {
  const size_t bytes_per_row = row_bytes(type, n_cols);
  std::vector<uint8_t> data(bytes_per_row * static_cast<size_t>(n_rows));
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::uniform_real_distribution<float> scale(-0.01f, 0.01f);
  if (type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::BF16) {
    std::vector<float> row(static_cast<size_t>(n_cols));
    for (int64_t r = 0; r < n_rows; ++r) {
      for (float& v : row) v = normal(rng);
      quantize_row(type, row.data(), data.data() + r * bytes_per_row, n_cols);
    }
    return data;
  }
  for (uint8_t& byte : data) byte = static_cast<uint8_t>(rng());
  const TypeTraits& traits = type_traits(type);
  for (size_t offset = 0; offset < data.size(); offset += static_cast<size_t>(traits.bytes_per_block)) {
    uint8_t* block = data.data() + offset;
    switch (type) {
      case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0:
        store_fp16(block, scale(rng));
        break;
      case GgmlType::Q4_1: case GgmlType::Q5_1:
        store_fp16(block, scale(rng));
        store_fp16(block + 2, 10 * scale(rng));
        break;
      case GgmlType::Q2_K:  // d, dmin at the end
        store_fp16(block + 80, scale(rng) / 4);
        store_fp16(block + 82, scale(rng) / 4);
        break;
      case GgmlType::Q3_K:
        store_fp16(block + 108, scale(rng) / 8);
        break;
      case GgmlType::Q4_K: case GgmlType::Q5_K:
        store_fp16(block, scale(rng) / 16);
        store_fp16(block + 2, scale(rng) / 16);
        break;
      case GgmlType::Q6_K:
        store_fp16(block + 208, scale(rng) / 64);
        break;
      case GgmlType::Q8_K: {
        const float d = scale(rng);
        std::memcpy(block, &d, 4);
        break;
      }
      default:
        FAIL("no random weights for ", type_name(type));
    }
  }
  return data;
}

// [rows, cols] of the whole matrix, dequantized.
std::vector<float> dequantize_matrix(GgmlType type, const std::vector<uint8_t>& data, int64_t n_rows, int64_t n_cols) {
  std::vector<float> out(static_cast<size_t>(n_rows * n_cols));
  for (int64_t r = 0; r < n_rows; ++r) {
    dequantize_row(type, data.data() + r * row_bytes(type, n_cols), out.data() + r * n_cols, n_cols);
  }
  return out;
}

// The activations as the kernel multiplies them: through the weight type's activation format and back.
std::vector<float> activation_round_trip(GgmlType weight_type, const std::vector<float>& x, int64_t M, int64_t K) {
  const GgmlType format = activation_type(weight_type);
  std::vector<float> out(x.size());
  std::vector<uint8_t> packed(row_bytes(format, K));
  for (int64_t m = 0; m < M; ++m) {
    quantize_row(format, x.data() + m * K, packed.data(), K);
    dequantize_row(format, packed.data(), out.data() + m * K, K);
  }
  return out;
}

// Q8_1 activations carry each block's sum as s = f16(d · Σq), and llama.cpp (and we) multiply the Q4_1/Q5_1
// weight min m by that stored s instead of the exact sum of the dequantized activations. This returns, per
// [m][n], the difference that makes: Σ_blocks m_w · (s − Σ x̃). Zero for every other weight type.
std::vector<double> q8_1_sum_correction(GgmlType weight_type, const std::vector<uint8_t>& weights,
                                        const std::vector<float>& x, int64_t M, int64_t N, int64_t K) {
  std::vector<double> correction(static_cast<size_t>(M * N), 0.0);
  if (activation_type(weight_type) != GgmlType::Q8_1) return correction;
  const int64_t n_blocks = K / 32;
  const size_t weight_block_bytes = static_cast<size_t>(type_traits(weight_type).bytes_per_block);
  std::vector<uint8_t> packed(row_bytes(GgmlType::Q8_1, K));
  std::vector<float> rounded(static_cast<size_t>(K));
  for (int64_t m = 0; m < M; ++m) {
    quantize_row(GgmlType::Q8_1, x.data() + m * K, packed.data(), K);
    dequantize_row(GgmlType::Q8_1, packed.data(), rounded.data(), K);
    for (int64_t b = 0; b < n_blocks; ++b) {
      uint16_t stored_sum;  // the Q8_1 layout: d at byte 0, s at byte 2
      std::memcpy(&stored_sum, packed.data() + 36 * b + 2, 2);
      double exact_sum = 0;
      for (int64_t k = 32 * b; k < 32 * b + 32; ++k) exact_sum += rounded[k];
      const double difference = fp16_to_f32(stored_sum) - exact_sum;
      for (int64_t n = 0; n < N; ++n) {
        uint16_t weight_min;  // Q4_1 and Q5_1: m at byte 2 of the block
        std::memcpy(&weight_min, weights.data() + n * row_bytes(weight_type, K) + b * weight_block_bytes + 2, 2);
        correction[m * N + n] += fp16_to_f32(weight_min) * difference;
      }
    }
  }
  return correction;
}

double norm(const float* x, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return std::sqrt(sum);
}

struct Case {
  GgmlType type;
  int64_t K, N, M;
};

std::vector<float> run_matmul(const Case& c, const std::vector<uint8_t>& weights, const std::vector<float>& x,
                              int threads, MatmulKernel kernel) {
  ThreadPool pool(threads);
  MatmulScratch scratch;
  std::vector<float> y(static_cast<size_t>(c.M * c.N), std::nanf(""));
  matmul(WeightMatrix{c.type, weights.data(), c.K, c.N}, x.data(), c.M, y.data(), pool, scratch, kernel);
  return y;
}

}  // namespace

TEST_CASE("matmul equals the double-precision product of the dequantized weights and round-tripped activations") {
  std::mt19937 rng(2024);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int checked = 0;
  for (GgmlType type : kComputableTypes) {
    const int block = type_traits(type).block_size;
    for (int64_t K : {172, 8, 160, 256, 4096}) {  // 160: 5 blocks of 32, not a multiple of the SIMD group of 4
      if (K % block != 0) continue;
      for (int64_t N : {1, 7, 512}) {
        for (int64_t M : {1, 3, 17}) {
          const Case c{type, K, N, M};
          CAPTURE(type_name(type));
          CAPTURE(K);
          CAPTURE(N);
          CAPTURE(M);
          const auto weights = random_weights(type, N, K, rng);
          std::vector<float> x(static_cast<size_t>(M * K));
          for (float& v : x) v = normal(rng);
          const auto w_dequantized = dequantize_matrix(type, weights, N, K);  // [N, K]
          const auto x_rounded = activation_round_trip(type, x, M, K);        // [M, K]
          const auto correction = q8_1_sum_correction(type, weights, x, M, N, K);  // [M, N]

          const auto scalar = run_matmul(c, weights, x, 1, MatmulKernel::Scalar);
          const auto simd = run_matmul(c, weights, x, 1, MatmulKernel::Auto);
          const auto simd_3_threads = run_matmul(c, weights, x, 3, MatmulKernel::Auto);
          const auto scalar_3_threads = run_matmul(c, weights, x, 3, MatmulKernel::Scalar);
          CHECK(std::memcmp(simd.data(), simd_3_threads.data(), simd.size() * sizeof(float)) == 0);
          CHECK(std::memcmp(scalar.data(), scalar_3_threads.data(), scalar.size() * sizeof(float)) == 0);

          double error_sq = 0, reference_sq = 0;
          for (int64_t m = 0; m < M; ++m) {
            const double x_norm = norm(x_rounded.data() + m * K, K);
            for (int64_t n = 0; n < N; ++n) {
              double reference = correction[m * N + n];
              for (int64_t k = 0; k < K; ++k) {
                reference += static_cast<double>(w_dequantized[n * K + k]) * x_rounded[m * K + k];
              }
              // Rounding in a dot product scales with |w|·|x|, not with the (possibly cancelling) result.
              const double scale = norm(w_dequantized.data() + n * K, K) * x_norm + 1e-30;
              const float got_scalar = scalar[m * N + n];
              const float got_simd = simd[m * N + n];
              if (std::fabs(got_scalar - reference) > 1e-4 * scale || std::fabs(got_simd - reference) > 1e-4 * scale ||
                  std::fabs(got_simd - got_scalar) > 1e-5 * scale) {
                FAIL_CHECK("m=" << m << " n=" << n << " reference " << reference << " scalar " << got_scalar
                                << " simd " << got_simd << " scale " << scale);
              }
              error_sq += (got_simd - reference) * (got_simd - reference);
              reference_sq += reference * reference;
            }
          }
          CHECK(std::sqrt(error_sq) <= 1e-4 * std::sqrt(reference_sq) + 1e-30);
          ++checked;
        }
      }
    }
  }
  CHECK(checked == 3 * (5 * 9) + 5 * (3 * 9) + 6 * (2 * 9));  // float types, 32-element blocks, K-quants
  MESSAGE("SIMD kernels: " << std::string(matmul_simd_name()));
}

TEST_CASE("row m of a many-row product is bit-identical to the one-row product of row m") {
  // Checks the activation-row tiling (tiles of 4 and the 3/2/1 remainders) indexes rows and outputs correctly, and
  // that the kernels for many rows (the 32-element formats' interleaved panels) and for one row (decode) agree to
  // the bit, also across groups of weight rows cut short (N = 9, 27) and activation rows split into L2-sized
  // chunks (K = 16384: about 60 rows of Q8_0 or Q8_K activations per chunk, M = 67).
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  struct Shape {
    int64_t K, N, M;
  };
  for (GgmlType type : {GgmlType::F16, GgmlType::Q4_1, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q5_1,
                        GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q5_K, GgmlType::BF16}) {
    const bool float_weights = type == GgmlType::F16 || type == GgmlType::BF16;
    std::vector<Shape> shapes = {{512, 9, 11}};
    if (!float_weights) {
      shapes.push_back({type_traits(type).block_size == 32 ? int64_t{160} : int64_t{768}, 27, 9});
      shapes.push_back({16384, 11, 67});
    }
    for (const Shape& shape : shapes) {
      CAPTURE(type_name(type));
      CAPTURE(shape.K);
      const int64_t K = shape.K, N = shape.N, M = shape.M;
      const auto weights = random_weights(type, N, K, rng);
      std::vector<float> x(static_cast<size_t>(M * K));
      for (float& v : x) v = normal(rng);
      ThreadPool pool(2);
      MatmulScratch scratch;
      std::vector<float> all(static_cast<size_t>(M * N));
      const WeightMatrix w{type, weights.data(), K, N};
      matmul(w, x.data(), M, all.data(), pool, scratch);
      for (int64_t m = 0; m < M; ++m) {
        std::vector<float> one(static_cast<size_t>(N));
        matmul(w, x.data() + m * K, 1, one.data(), pool, scratch);
        CHECK(std::memcmp(one.data(), all.data() + m * N, N * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("matmul rejects bad types and row lengths with an Error") {
  ThreadPool pool(1);
  MatmulScratch scratch;
  std::vector<uint8_t> weights(4096);
  std::vector<float> x(256), y(4);
  CHECK_THROWS_AS(matmul(WeightMatrix{GgmlType::Q4_0, weights.data(), 48, 2}, x.data(), 1, y.data(), pool, scratch),
                  Error);
  CHECK_THROWS_AS(matmul(WeightMatrix{GgmlType::Q4_K, weights.data(), 128, 2}, x.data(), 1, y.data(), pool, scratch),
                  Error);
  CHECK_THROWS_AS(
      matmul(WeightMatrix{GgmlType::IQ2_XXS, weights.data(), 256, 2}, x.data(), 1, y.data(), pool, scratch), Error);
  CHECK_THROWS_AS(matmul(WeightMatrix{GgmlType::Q8_1, weights.data(), 32, 2}, x.data(), 1, y.data(), pool, scratch),
                  Error);
}

TEST_CASE("embedding_lookup returns the dequantized rows and rejects ids out of range") {
  std::mt19937 rng(11);
  const int64_t K = 64, rows = 10;
  const auto weights = random_weights(GgmlType::Q4_1, rows, K, rng);
  const auto table = dequantize_matrix(GgmlType::Q4_1, weights, rows, K);
  const WeightMatrix w{GgmlType::Q4_1, weights.data(), K, rows};
  const int32_t ids[3] = {9, 0, 9};
  std::vector<float> out(3 * K);
  embedding_lookup(w, ids, 3, out.data());
  for (int i = 0; i < 3; ++i) {
    CHECK(std::memcmp(out.data() + i * K, table.data() + ids[i] * K, K * sizeof(float)) == 0);
  }
  const int32_t bad[2] = {3, 10};
  CHECK_THROWS_AS(embedding_lookup(w, bad, 2, out.data()), Error);
  const int32_t negative[1] = {-1};
  CHECK_THROWS_AS(embedding_lookup(w, negative, 1, out.data()), Error);
}

TEST_CASE("scratch buffers stop growing once they fit") {
  std::mt19937 rng(3);
  const int64_t K = 256, N = 8, M = 5;
  const auto weights = random_weights(GgmlType::Q8_0, N, K, rng);
  std::vector<float> x(static_cast<size_t>(M * K), 0.5f), y(static_cast<size_t>(M * N));
  ThreadPool pool(2);
  MatmulScratch scratch;
  matmul(WeightMatrix{GgmlType::Q8_0, weights.data(), K, N}, x.data(), M, y.data(), pool, scratch);
  const uint8_t* buffer = scratch.activations.data();
  const size_t capacity = scratch.activations.capacity();
  for (int i = 0; i < 3; ++i) {
    matmul(WeightMatrix{GgmlType::Q8_0, weights.data(), K, N}, x.data(), M - 1 - i, y.data(), pool, scratch);
  }
  CHECK(scratch.activations.data() == buffer);
  CHECK(scratch.activations.capacity() == capacity);
}
