#pragma once
// The index arithmetic of the tensor-core flash-attention kernel (flash_attention.cu), as host/device functions so
// that a CPU test (tests/test_cuda_mma_layout.cpp) can run it against an emulation of the PTX instructions'
// documented fragment layouts:
//   ldmatrix.m8n8.x4 (.trans): lanes 8i..8i+7 supply the row addresses of matrix i; lane l then holds, in register
//     i, row l/4, columns 2(l%4) and 2(l%4)+1 of matrix i (.trans: rows 2(l%4), 2(l%4)+1 of column l/4).
//   mma.m16n8k16 (f16 A/B, f32 C), with g = l/4, t = l%4: A register r holds (row g + 8(r%2), columns 2t + 8(r/2)
//     and +1); B register r holds (k rows 2t + 8r and +1, column g); accumulator c holds (row g + 8(c/2), column
//     2t + c%2).
// A warp's 16 query rows are the A operand of S = Q·Kᵀ (k = head dims), K rows the B operand (n = keys); the
// scores' accumulators, re-packed, are the A operand of O = P·V (k = keys) and V rows the B operand (n = dims).
#include "common/host_device.h"

namespace pagedllm::cuda {

struct TileCoord {
  int row;
  int col;
};

// Which element of a 16 x 16 shared-memory tile lane `lane` points its ldmatrix.x4 at, for each operand:
// Q (A operand of Q·Kᵀ): row = query row, col = head dim; matrices i = rows 8(i%2).., dims 8(i/2)..
PAGEDLLM_HD inline TileCoord ldmatrix_q_source(int lane) {
  const int matrix = lane / 8;
  return TileCoord{(matrix % 2) * 8 + lane % 8, (matrix / 2) * 8};
}
// K (B operand of Q·Kᵀ, loaded without .trans): row = key, col = head dim; matrix i = keys 8(i/2).., dims 8(i%2)..
// so registers 0, 1 are the B fragment of key n-tile 0 and registers 2, 3 that of key n-tile 1.
PAGEDLLM_HD inline TileCoord ldmatrix_k_source(int lane) {
  const int matrix = lane / 8;
  return TileCoord{(matrix / 2) * 8 + lane % 8, (matrix % 2) * 8};
}
// V (B operand of P·V, loaded with .trans): row = key, col = head dim; matrix i = keys 8(i%2).., dims 8(i/2)..
// so registers 0, 1 are the B fragment of dim n-tile 0 and registers 2, 3 that of dim n-tile 1.
PAGEDLLM_HD inline TileCoord ldmatrix_v_source(int lane) {
  const int matrix = lane / 8;
  return TileCoord{(matrix % 2) * 8 + lane % 8, (matrix / 2) * 8};
}

// Row (0..15) and column (0..7) of accumulator element c (0..3) of lane `lane`.
PAGEDLLM_HD inline TileCoord accumulator_coord(int lane, int c) {
  return TileCoord{lane / 4 + (c / 2) * 8, 2 * (lane % 4) + (c % 2)};
}

// The A register `reg` (0..3) of P's k-step `key_step` (keys 16 key_step ..) packs accumulator elements
// `first_element` and `first_element + 1` of score n-tile `tile`.
struct AccumulatorPair {
  int tile;
  int first_element;
};
PAGEDLLM_HD inline AccumulatorPair p_register_source(int key_step, int reg) {
  return AccumulatorPair{2 * key_step + reg / 2, (reg % 2) * 2};
}

}  // namespace pagedllm::cuda
