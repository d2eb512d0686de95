// Cross-checks the tensor-type math against llama.cpp's own ggml libraries (as installed by llama-cpp-python):
// f16/bf16 conversions, dequantization of every block type (must be bit-identical), the activation quantizers
// (must be byte-identical to ggml-cpu's from_float) and the dot products (our matmul against ggml's vec_dot on the
// same weights; equal up to summation order). Not part of the CMake build; with L = <site-packages>/llama_cpp/lib
// and I = <site-packages>/include, from the repository root after building pagedllm_core in build-<name>/:
//   g++ -O2 -march=native -std=c++20 -I. -I$I tools/check_quant_vs_ggml.cpp build-<name>/libpagedllm_core.a
//       -L$L -lggml-cpu -lggml-base -Wl,-rpath,$L -lfmt -lpthread -o /tmp/check_quant_vs_ggml
// Exits non-zero on any mismatch.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>
#include "ggml.h"
#include "ggml-cpu.h"
#include "common/thread_pool.h"
#include "tensor/activation_quant.h"
#include "tensor/float16.h"
#include "kernels/cpu/matmul.h"
#include "tensor/dequantize.h"
#include "tensor/quantize.h"

using pagedllm::GgmlType;

static void store_half(uint8_t* at, float value) {
  const uint16_t half = pagedllm::f32_to_fp16(value);
  memcpy(at, &half, 2);
}

// n elements of random blocks: random bytes, with the f16 scale fields set to finite weight-sized values.
static std::vector<uint8_t> random_blocks(GgmlType type, int64_t n, std::mt19937& rng) {
  const auto& traits = pagedllm::type_traits(type);
  std::vector<uint8_t> data(pagedllm::row_bytes(type, n));
  for (auto& byte : data) byte = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  for (size_t offset = 0; offset < data.size(); offset += traits.bytes_per_block) {
    uint8_t* block = data.data() + offset;
    switch (type) {
      case GgmlType::Q4_0: case GgmlType::Q5_0: case GgmlType::Q8_0: store_half(block, scale(rng)); break;
      case GgmlType::Q4_1: case GgmlType::Q5_1: case GgmlType::Q4_K: case GgmlType::Q5_K:
        store_half(block, scale(rng));
        store_half(block + 2, scale(rng));
        break;
      case GgmlType::Q2_K: store_half(block + 80, scale(rng)); store_half(block + 82, scale(rng)); break;
      case GgmlType::Q3_K: store_half(block + 108, scale(rng)); break;
      case GgmlType::Q6_K: store_half(block + 208, scale(rng)); break;
      default: break;
    }
  }
  return data;
}

int main() {
  ggml_cpu_init();
  std::mt19937 rng(77);
  std::normal_distribution<float> normal;
  int failures = 0;
  // fp16 / bf16
  for (int i = 0; i < 5000000; ++i) {
    uint32_t bits = rng(); float f; memcpy(&f, &bits, 4);
    // NaNs excepted: ggml's scalar converter returns a canonical NaN, F16C (which ggml-cpu's vector code and we
    // use) keeps the payload.
    if (!std::isnan(f) && ggml_fp32_to_fp16(f) != pagedllm::f32_to_fp16(f)) { if (failures++ < 5) printf("fp16 mismatch %08x\n", bits); }
    ggml_bf16_t b = ggml_fp32_to_bf16(f);
    uint16_t bb; memcpy(&bb, &b, 2);
    if (bb != pagedllm::f32_to_bf16(f)) { if (failures++ < 5) printf("bf16 mismatch %08x\n", bits); }
  }
  for (uint32_t h = 0; h < 65536; ++h) {
    float a = ggml_fp16_to_fp32((ggml_fp16_t)h), b = pagedllm::fp16_to_f32(h);
    uint32_t x, y; memcpy(&x, &a, 4); memcpy(&y, &b, 4);
    if (x != y) { if (failures++ < 5) printf("fp16->f32 mismatch %04x: %08x vs %08x\n", h, x, y); }
  }
  printf("conversions checked, failures so far %d\n", failures);
  // Dequantization: bit-exact
  const GgmlType types[] = {GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0,
                            GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
  const int64_t n = 4096 * 16;
  for (GgmlType t : types) {
    auto d = random_blocks(t, n, rng);
    std::vector<float> a(n), b(n);
    ggml_get_type_traits((ggml_type)t)->to_float(d.data(), a.data(), n);
    pagedllm::dequantize_row(t, d.data(), b.data(), n);
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) if (memcmp(&a[i], &b[i], 4) != 0) ++bad;
    printf("dequantize %-5s: %d of %lld elements differ from ggml\n", std::string(pagedllm::type_name(t)).c_str(), bad, (long long)n);
    failures += bad != 0;
  }
  // Activation quantization: byte-exact
  for (GgmlType t : {GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K}) {
    std::vector<float> x(n);
    for (auto& v : x) v = normal(rng) * (rng() % 4 == 0 ? 10.0f : 1.0f);
    std::vector<uint8_t> a(pagedllm::row_bytes(t, n)), b(a.size());
    ggml_get_type_traits_cpu((ggml_type)t)->from_float(x.data(), a.data(), n);
    pagedllm::quantize_row(t, x.data(), b.data(), n);
    size_t bad = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i] != b[i] && bad < 10) {
        const size_t bs = pagedllm::type_traits(t).bytes_per_block;
        const size_t blk = i / bs, off = i % bs;
        printf("  byte %zu (block %zu offset %zu): ggml %d ours %d\n", i, blk, off, (int)(int8_t)a[i], (int)(int8_t)b[i]);
        if (t == GgmlType::Q8_K && off >= 4 && off < 260) {
          const float* xb = x.data() + blk * 256; float d; memcpy(&d, a.data() + blk * bs, 4); float d2; memcpy(&d2, b.data() + blk * bs, 4);
          printf("  x=%.9g d ggml %.9g ours %.9g  x/d=%.9g\n", xb[off - 4], d, d2, xb[off - 4] / d);
        }
      }
      bad += a[i] != b[i];
    }
    printf("activation quantize %-5s: %zu of %zu bytes differ from ggml's CPU from_float\n", std::string(pagedllm::type_name(t)).c_str(), bad, a.size());
    failures += bad != 0;
  }
  // Dot products: our matmul (M=1) vs ggml vec_dot on ggml-quantized activations
  pagedllm::ThreadPool pool(1);
  pagedllm::MatmulScratch scratch;
  const GgmlType all[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0,
                          GgmlType::Q5_1, GgmlType::Q8_0, GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K};
  for (GgmlType t : all) {
    const int64_t K = 4096, N = 64;
    std::vector<uint8_t> w;
    if (t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16) {
      std::vector<float> rowf(K);
      w.resize(pagedllm::row_bytes(t, K) * N);
      for (int64_t r = 0; r < N; ++r) { for (auto& v : rowf) v = normal(rng) * 0.05f; pagedllm::quantize_row(t, rowf.data(), w.data() + r * pagedllm::row_bytes(t, K), K); }
    } else {
      w = random_blocks(t, K * N, rng);
    }
    std::vector<float> x(K);
    for (auto& v : x) v = normal(rng);
    const auto* cpu = ggml_get_type_traits_cpu((ggml_type)t);
    const ggml_type vt = cpu->vec_dot_type;
    std::vector<uint8_t> xq(ggml_row_size(vt, K));
    if (vt == GGML_TYPE_F32) memcpy(xq.data(), x.data(), K * 4);
    else ggml_get_type_traits_cpu(vt)->from_float(x.data(), xq.data(), K);
    std::vector<float> y(N);
    pagedllm::matmul(pagedllm::WeightMatrix{t, w.data(), K, N}, x.data(), 1, y.data(), pool, scratch);
    double worst = 0; int exact = 0;
    for (int64_t r = 0; r < N; ++r) {
      float s = 0;
      cpu->vec_dot(K, &s, 0, w.data() + r * pagedllm::row_bytes(t, K), 0, xq.data(), 0, 1);
      // scale: |w|.|x|
      std::vector<float> wr(K); pagedllm::dequantize_row(t, w.data() + r * pagedllm::row_bytes(t, K), wr.data(), K);
      double nw = 0, nx = 0; for (int64_t k = 0; k < K; ++k) { nw += wr[k] * wr[k]; nx += x[k] * x[k]; }
      worst = std::max(worst, std::fabs(double(s) - y[r]) / std::sqrt(nw * nx));
      exact += s == y[r];
    }
    printf("vec_dot %-5s (activations %-5s): max |ggml - ours| / (|w||x|) = %.2e, bit-identical %d/%lld\n",
           std::string(pagedllm::type_name(t)).c_str(), ggml_type_name(vt), worst, exact, (long long)N);
    failures += worst > 1e-5;
  }
  printf("failures: %d\n", failures);
  return failures != 0;
}
