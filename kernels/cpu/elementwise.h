#pragma once
// The per-token vector operations of the forward on the CPU: RMSNorm, RoPE, SwiGLU/GeGLU, residual add, scaling.
// Rows are independent; callers pass whole batches ([n_rows, n] row-major).
#include <cstdint>

#include "kernels/common/rope.h"

namespace pagedllm {

class ThreadPool;

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * gain; x, out: [n_rows, n]; gain: [n]. out may alias x.
void rms_norm(const float* x, const float* gain, float* out, int64_t n_rows, int64_t n, float eps);

// Rotates every head of every row in place. x: [n_rows, n_heads, head_dim]; positions: [n_rows];
// freq_factors: [n_rot/2] or nullptr.
void rope(float* x, const int32_t* positions, int64_t n_rows, int64_t n_heads, int64_t head_dim,
          const RopeParams& params, const float* freq_factors);

// gate[i] = silu(gate[i]) * up[i]; gate, up: [n]. Result in gate.
void swiglu(float* gate, const float* up, int64_t n);

// gate[i] = gelu_tanh(gate[i]) * up[i] (kernels/common/gelu.h); gate, up: [n]. Result in gate.
void geglu(float* gate, const float* up, int64_t n);

// x[i] *= factor
void scale_in_place(float* x, float factor, int64_t n);

// x[i] += y[i]
void add_in_place(float* x, const float* y, int64_t n);

// x[r] += bias for each row; x: [n_rows, n]; bias: [n]
void add_bias(float* x, const float* bias, int64_t n_rows, int64_t n);

}  // namespace pagedllm
