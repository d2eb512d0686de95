#include "kernels/cpu/elementwise.h"

#include <cmath>
#include <vector>

#include "kernels/common/gelu.h"

namespace pagedllm {

void rms_norm(const float* x, const float* gain, float* out, int64_t n_rows, int64_t n, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* row = x + r * n;
    float* dst = out + r * n;
    // ggml accumulates the sum of squares in double; doing the same keeps logits close to llama.cpp's.
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(row[i]) * row[i];
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    const float scale = 1.0f / std::sqrt(mean + eps);
    for (int64_t i = 0; i < n; ++i) dst[i] = row[i] * scale * gain[i];
  }
}

void rope(float* x, const int32_t* positions, int64_t n_rows, int64_t n_heads, int64_t head_dim,
          const RopeParams& params, const float* freq_factors) {
  const int64_t n_pairs = params.n_rot / 2;
  const float theta_scale = std::pow(params.freq_base, -2.0f / static_cast<float>(params.n_rot));
  thread_local std::vector<float> cos_table, sin_table;  // [n_pairs], reused across calls
  cos_table.resize(static_cast<size_t>(n_pairs));
  sin_table.resize(static_cast<size_t>(n_pairs));
  for (int64_t r = 0; r < n_rows; ++r) {
    // The angles depend only on the position: compute them once per row, then rotate every head.
    float theta = static_cast<float>(positions[r]);
    for (int64_t i = 0; i < n_pairs; ++i) {
      const float factor = freq_factors != nullptr ? freq_factors[i] : 1.0f;
      rope_cos_sin(params, theta, factor, static_cast<int>(i), &cos_table[i], &sin_table[i]);
      theta *= theta_scale;
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      float* head = x + (r * n_heads + h) * head_dim;  // [head_dim]
      for (int64_t i = 0; i < n_pairs; ++i) {
        if (params.neox) {
          rope_rotate(&head[i], &head[i + n_pairs], cos_table[i], sin_table[i]);
        } else {
          rope_rotate(&head[2 * i], &head[2 * i + 1], cos_table[i], sin_table[i]);
        }
      }
    }
  }
}

void swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void geglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gelu_tanh(gate[i]) * up[i];
}

void scale_in_place(float* x, float factor, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= factor;
}

void add_in_place(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n) {
  for (int64_t r = 0; r < n_rows; ++r) add_in_place(x + r * n, bias, n);
}

}  // namespace pagedllm
