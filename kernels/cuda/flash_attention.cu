// Prefill attention on the device, FlashAttention-style, reading K/V through each sequence's block table (so a
// prompt whose first blocks came from the prefix cache needs nothing special).
//
// One CTA per FlashTile (a tile of query tokens x a chunk of the KV group's query heads) and KV head. The CTA's
// rows are (token, head) pairs, token-major, so every query head of the group consumes each K/V tile the CTA
// loads. Key tiles of 64 positions stream through shared memory (cp.async, double-buffered), gathered slot by slot
// through the block table; scores and probabilities never leave registers; the online softmax (the shared
// kernels/common/online_softmax.h steps) rescales the output accumulators when a tile raises a row's maximum.
// Key tiles wholly in the causal future of the CTA's last token are never loaded, and a warp skips the tiles that
// lie wholly in the future of its own rows.
//
// head_dim 64 and 128: tensor cores (mma.sync m16n8k16, f16 inputs, f32 accumulators) for Q·Kᵀ and P·V; each of
// the 4 warps owns 16 query rows. Other head dims (up to 256): a generic kernel with the same structure on CUDA
// cores, one warp per query row and one lane per key.
#include <cuda_fp16.h>

#include "common/error.h"
#include "kernels/common/online_softmax.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/mma_layout.h"

namespace pagedllm::cuda {

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kMmaRows = kFlashMmaRows;  // 64: 16 per warp
constexpr int kMmaKeys = 64;             // keys per K/V tile

static_assert(kMmaRows == kWarps * 16, "each warp owns one m16 tile of query rows");

// ---------------------------------------------------------------- PTX wrappers (sm_80+)

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16 bytes global -> shared without passing through registers; src_bytes = 0 writes zeros instead of reading.
__device__ __forceinline__ void cp_async_16(uint32_t destination, const void* source, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(destination), "l"(source), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i. Without .trans, lane l receives
// row l/4, columns 2(l%4) and 2(l%4)+1 of each matrix; with .trans, rows 2(l%4) and 2(l%4)+1 of column l/4.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// D = A·B + D for a 16x16 f16 A (row-major fragments), a 16x8 f16 B (column fragments) and 16x8 f32 D.
// Fragment layout (lane l, g = l/4, t = l%4): A reg0 = (g, 2t..2t+1), reg1 = (g+8, 2t..), reg2 = (g, 2t+8..),
// reg3 = (g+8, 2t+8..); B reg0 = (k 2t..2t+1, n g), reg1 = (k 2t+8.., n g); D c0,c1 = (g, 2t..2t+1),
// c2,c3 = (g+8, 2t..2t+1).
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float low, float high) {
  const __half2 pair = __floats2half2_rn(low, high);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// ---------------------------------------------------------------- the tensor-core kernel

// Rows of the tile: row r is token r / heads, query head head_begin + r % heads of the group.
struct TileRows {
  int heads;            // query heads in the tile
  int tokens;           // query tokens in the tile
  int rows;             // tokens * heads
  int first_position;   // position of the tile's first token
  int last_position;    // position of its last token
  int64_t first_query;  // row of q/out of the tile's first token
};

__device__ __forceinline__ TileRows tile_rows(const AttentionLaunch& a, const FlashTile& tile, const DeviceSeq& s,
                                              int tokens_per_tile, int heads_per_tile) {
  const int group = a.n_head / a.n_head_kv;
  TileRows t;
  t.heads = min(heads_per_tile, group - tile.head_begin);
  t.tokens = min(tokens_per_tile, s.n_new - tile.token_begin);
  t.rows = t.tokens * t.heads;
  t.first_position = s.context_length - s.n_new + tile.token_begin;
  t.last_position = t.first_position + t.tokens - 1;
  t.first_query = static_cast<int64_t>(s.first_row) + tile.token_begin;
  return t;
}

// Shared memory: Q [64][kStride], K [2][64][kStride], V [2][64][kStride] halves; rows padded by 16 bytes so the
// eight row addresses of an ldmatrix fall in different banks.
template <int kHeadDim>
constexpr int mma_stride() {
  return kHeadDim + 8;
}
template <int kHeadDim>
constexpr size_t mma_shared_bytes() {
  return static_cast<size_t>(kMmaRows + 4 * kMmaKeys) * mma_stride<kHeadDim>() * sizeof(__half);
}

template <int kHeadDim>
__global__ void __launch_bounds__(kThreads) flash_attention_mma_kernel(AttentionLaunch a, const FlashTile* tiles,
                                                                       int tokens_per_tile, int heads_per_tile) {
  constexpr int kStride = mma_stride<kHeadDim>();
  constexpr int kChunks = kHeadDim / 8;    // 16-byte chunks per K/V row
  constexpr int kDimSteps = kHeadDim / 16; // k-steps of Q·Kᵀ, pairs of n-tiles of P·V
  constexpr int kKeyTiles = kMmaKeys / 8;  // n-tiles of the score block
  extern __shared__ uint4 shared_words[];
  __half* q_shared = reinterpret_cast<__half*>(shared_words);  // [64][kStride]
  __half* k_shared = q_shared + kMmaRows * kStride;            // [2][64][kStride]
  __half* v_shared = k_shared + 2 * kMmaKeys * kStride;        // [2][64][kStride]

  const FlashTile tile = tiles[blockIdx.x];
  const int kv_head = blockIdx.y;
  const DeviceSeq s = a.seqs[tile.seq];
  const TileRows t = tile_rows(a, tile, s, tokens_per_tile, heads_per_tile);
  const int group = a.n_head / a.n_head_kv;
  const int first_head = kv_head * group + tile.head_begin;
  const int32_t* table = a.block_tables + s.table_offset;
  const int64_t slot_stride = static_cast<int64_t>(a.n_head_kv) * kHeadDim;  // elements per slot

  // Q tile -> shared f16; rows past the tile are zero.
  for (int i = threadIdx.x; i < kMmaRows * (kHeadDim / 4); i += kThreads) {
    const int r = i / (kHeadDim / 4);
    const int d = (i % (kHeadDim / 4)) * 4;
    float4 value = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (r < t.rows) {
      const int64_t query = t.first_query + r / t.heads;
      const int head = first_head + r % t.heads;
      value = *reinterpret_cast<const float4*>(a.q + (query * a.n_head + head) * kHeadDim + d);
    }
    uint2 packed;
    packed.x = pack_half2(value.x, value.y);
    packed.y = pack_half2(value.z, value.w);
    *reinterpret_cast<uint2*>(q_shared + r * kStride + d) = packed;
  }

  // The oldest position any row of the tile sees: 0, or the first row's sliding-window start.
  const int oldest_position = a.window > 0 ? max(0, t.first_position - a.window + 1) : 0;
  // K/V tile `tile_index` -> buffer; positions past the tile's last token or before oldest_position are zero-filled
  // (never read from the pool: they may lie past the block table, or in blocks the cache gave back).
  auto load_kv_tile = [&](int tile_index, int buffer) {
    const int key_begin = tile_index * kMmaKeys;
    for (int i = threadIdx.x; i < kMmaKeys * kChunks; i += kThreads) {
      const int key = i / kChunks;
      const int chunk = i % kChunks;
      const int position = key_begin + key;
      const uint16_t* k_source = a.k_pool;
      const uint16_t* v_source = a.v_pool;
      int bytes = 0;
      if (position <= t.last_position && position >= oldest_position) {
        const int64_t block = table[position / a.block_size];
        const int64_t slot = block * a.block_size + position % a.block_size;
        const int64_t offset = slot * slot_stride + static_cast<int64_t>(kv_head) * kHeadDim + chunk * 8;
        k_source += offset;
        v_source += offset;
        bytes = 16;
      }
      const int element = (buffer * kMmaKeys + key) * kStride + chunk * 8;
      cp_async_16(shared_address(k_shared + element), k_source, bytes);
      cp_async_16(shared_address(v_shared + element), v_source, bytes);
    }
  };

  const int n_key_tiles = t.last_position / kMmaKeys + 1;
  const int first_key_tile = oldest_position / kMmaKeys;
  load_kv_tile(first_key_tile, first_key_tile & 1);
  cp_async_commit();
  __syncthreads();  // Q is in shared memory

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // The lane's accumulator elements 0, 1 lie in row0 and 2, 3 in row1, at columns first_column and + 1.
  const int row0 = warp * 16 + accumulator_coord(lane, 0).row;
  const int row1 = warp * 16 + accumulator_coord(lane, 2).row;
  const int first_column = accumulator_coord(lane, 0).col;
  // A row outside the tile gets position -1: every key is masked and it is never written.
  const int position0 = row0 < t.rows ? t.first_position + row0 / t.heads : -1;
  const int position1 = row1 < t.rows ? t.first_position + row1 / t.heads : -1;
  const int warp_last_row = min(warp * 16 + 15, t.rows - 1);
  const int warp_last_position = warp * 16 < t.rows ? t.first_position + warp_last_row / t.heads : -1;

  // This warp's Q fragments for every k-step (the lane addresses: kernels/cuda/mma_layout.h).
  uint32_t q_fragments[kDimSteps][4];
  {
    const TileCoord source = ldmatrix_q_source(lane);
#pragma unroll
    for (int step = 0; step < kDimSteps; ++step) {
      ldmatrix_x4(q_fragments[step],
                  shared_address(q_shared + (warp * 16 + source.row) * kStride + step * 16 + source.col));
    }
  }

  float output[2 * kDimSteps][4];  // [n-tile of 8 dims][c0..c3]
#pragma unroll
  for (int j = 0; j < 2 * kDimSteps; ++j) output[j][0] = output[j][1] = output[j][2] = output[j][3] = 0.0f;
  SoftmaxState state0 = softmax_state_empty(), state1 = softmax_state_empty();  // sums are this lane's part

  for (int key_tile = first_key_tile; key_tile < n_key_tiles; ++key_tile) {
    const int buffer = key_tile & 1;
    if (key_tile + 1 < n_key_tiles) {
      load_kv_tile(key_tile + 1, buffer ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // the tile's K/V are visible to every warp

    const int key_begin = key_tile * kMmaKeys;
    if (key_begin <= warp_last_position) {
      const __half* k_tile = k_shared + buffer * kMmaKeys * kStride;
      const __half* v_tile = v_shared + buffer * kMmaKeys * kStride;

      // S = Q·Kᵀ. Each x4 load gives the B fragments of key n-tiles 2 pair (regs 0, 1) and 2 pair + 1 (2, 3).
      float scores[kKeyTiles][4];
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) scores[j][0] = scores[j][1] = scores[j][2] = scores[j][3] = 0.0f;
      {
        const TileCoord source = ldmatrix_k_source(lane);
#pragma unroll
        for (int step = 0; step < kDimSteps; ++step) {
#pragma unroll
          for (int pair = 0; pair < kKeyTiles / 2; ++pair) {
            uint32_t b[4];
            ldmatrix_x4(b, shared_address(k_tile + (pair * 16 + source.row) * kStride + step * 16 + source.col));
            mma_16816(scores[2 * pair], q_fragments[step], b[0], b[1]);
            mma_16816(scores[2 * pair + 1], q_fragments[step], b[2], b[3]);
          }
        }
      }

      // Scale, causal mask, and the tile maximum of each of the lane's two rows (shared by the 4 lanes of a row).
      float tile_max0 = -INFINITY, tile_max1 = -INFINITY;
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const TileCoord at = accumulator_coord(lane, c);  // row g or g + 8 of the warp, key column
          const int key = key_begin + j * 8 + at.col;
          const int position = at.row < 8 ? position0 : position1;
          const bool seen = key <= position && (a.window <= 0 || key > position - a.window);
          const float value = seen ? scores[j][c] * a.scale : -INFINITY;
          scores[j][c] = value;
          if (c < 2) {
            tile_max0 = fmaxf(tile_max0, value);
          } else {
            tile_max1 = fmaxf(tile_max1, value);
          }
        }
      }
#pragma unroll
      for (int offset = 1; offset < 4; offset <<= 1) {
        tile_max0 = fmaxf(tile_max0, __shfl_xor_sync(kFullWarpMask, tile_max0, offset));
        tile_max1 = fmaxf(tile_max1, __shfl_xor_sync(kFullWarpMask, tile_max1, offset));
      }
      const float factor0 = softmax_rescale(state0, tile_max0);
      const float factor1 = softmax_rescale(state1, tile_max1);
      if (factor0 != 1.0f || factor1 != 1.0f) {
#pragma unroll
        for (int j = 0; j < 2 * kDimSteps; ++j) {
          output[j][0] *= factor0;
          output[j][1] *= factor0;
          output[j][2] *= factor1;
          output[j][3] *= factor1;
        }
      }
      // Probabilities; a masked score contributes exactly 0 (never exp(-inf - -inf)).
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          SoftmaxState& state = c < 2 ? state0 : state1;
          const float p = scores[j][c] == -INFINITY ? 0.0f : expf(scores[j][c] - state.max);
          state.sum += p;
          scores[j][c] = p;
        }
      }

      // O += P·V. P's A fragments are the score accumulators re-packed; each transposed x4 load gives the B
      // fragments of dim n-tiles 2 pair (regs 0, 1) and 2 pair + 1 (regs 2, 3).
      {
        const TileCoord source = ldmatrix_v_source(lane);
#pragma unroll
        for (int key_step = 0; key_step < kMmaKeys / 16; ++key_step) {
          uint32_t p_fragment[4];
#pragma unroll
          for (int reg = 0; reg < 4; ++reg) {
            const AccumulatorPair from = p_register_source(key_step, reg);
            p_fragment[reg] = pack_half2(scores[from.tile][from.first_element], scores[from.tile][from.first_element + 1]);
          }
#pragma unroll
          for (int pair = 0; pair < kDimSteps; ++pair) {
            uint32_t b[4];
            ldmatrix_x4_trans(b, shared_address(v_tile + (key_step * 16 + source.row) * kStride + pair * 16 +
                                                source.col));
            mma_16816(output[2 * pair], p_fragment, b[0], b[1]);
            mma_16816(output[2 * pair + 1], p_fragment, b[2], b[3]);
          }
        }
      }
    }
    __syncthreads();  // every warp is done with this buffer before the next iteration refills it
  }

  // The four lanes of a row hold parts of its sum.
#pragma unroll
  for (int offset = 1; offset < 4; offset <<= 1) {
    state0.sum += __shfl_xor_sync(kFullWarpMask, state0.sum, offset);
    state1.sum += __shfl_xor_sync(kFullWarpMask, state1.sum, offset);
  }
  const float normalizer0 = softmax_normalizer(state0);
  const float normalizer1 = softmax_normalizer(state1);
  if (row0 < t.rows) {
    float* out = a.out + ((t.first_query + row0 / t.heads) * a.n_head + first_head + row0 % t.heads) * kHeadDim;
#pragma unroll
    for (int j = 0; j < 2 * kDimSteps; ++j) {
      *reinterpret_cast<float2*>(out + j * 8 + first_column) =
          make_float2(output[j][0] * normalizer0, output[j][1] * normalizer0);
    }
  }
  if (row1 < t.rows) {
    float* out = a.out + ((t.first_query + row1 / t.heads) * a.n_head + first_head + row1 % t.heads) * kHeadDim;
#pragma unroll
    for (int j = 0; j < 2 * kDimSteps; ++j) {
      *reinterpret_cast<float2*>(out + j * 8 + first_column) =
          make_float2(output[j][2] * normalizer1, output[j][3] * normalizer1);
    }
  }
}

// ---------------------------------------------------------------- the generic kernel (any head_dim <= 256)

constexpr int kGenericRows = kFlashGenericRows;  // 16: 4 per warp
constexpr int kGenericKeys = 32;                 // one key per lane

// Shared memory (floats): K and V tiles [32][head_dim + 1] (padded: lane j reads row j), Q and the output
// accumulators [16][head_dim], and the rows' softmax states.
size_t generic_shared_bytes(int head_dim) {
  return (2 * static_cast<size_t>(kGenericKeys) * (head_dim + 1) + 2 * static_cast<size_t>(kGenericRows) * head_dim) *
             sizeof(float) +
         kGenericRows * sizeof(SoftmaxState);
}

__global__ void __launch_bounds__(kThreads) flash_attention_generic_kernel(AttentionLaunch a, const FlashTile* tiles,
                                                                           int tokens_per_tile, int heads_per_tile) {
  extern __shared__ uint4 shared_words[];
  const int head_dim = a.head_dim;
  const int key_stride = head_dim + 1;
  float* k_shared = reinterpret_cast<float*>(shared_words);        // [32][head_dim + 1]
  float* v_shared = k_shared + kGenericKeys * key_stride;           // [32][head_dim + 1]
  float* q_shared = v_shared + kGenericKeys * key_stride;           // [16][head_dim]
  float* acc_shared = q_shared + kGenericRows * head_dim;           // [16][head_dim]
  auto* states = reinterpret_cast<SoftmaxState*>(acc_shared + kGenericRows * head_dim);  // [16]

  const FlashTile tile = tiles[blockIdx.x];
  const int kv_head = blockIdx.y;
  const DeviceSeq s = a.seqs[tile.seq];
  const TileRows t = tile_rows(a, tile, s, tokens_per_tile, heads_per_tile);
  const int group = a.n_head / a.n_head_kv;
  const int first_head = kv_head * group + tile.head_begin;
  const int32_t* table = a.block_tables + s.table_offset;
  const int64_t slot_stride = static_cast<int64_t>(a.n_head_kv) * head_dim;

  for (int i = threadIdx.x; i < kGenericRows * head_dim; i += kThreads) {
    const int r = i / head_dim, d = i % head_dim;
    float value = 0.0f;
    if (r < t.rows) {
      const int64_t query = t.first_query + r / t.heads;
      value = a.q[(query * a.n_head + first_head + r % t.heads) * head_dim + d];
    }
    q_shared[i] = value;
    acc_shared[i] = 0.0f;
  }
  if (threadIdx.x < kGenericRows) states[threadIdx.x] = softmax_state_empty();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int n_key_tiles = t.last_position / kGenericKeys + 1;
  const int oldest_position = a.window > 0 ? max(0, t.first_position - a.window + 1) : 0;
  for (int key_tile = oldest_position / kGenericKeys; key_tile < n_key_tiles; ++key_tile) {
    const int key_begin = key_tile * kGenericKeys;
    __syncthreads();  // the previous tile is consumed (and, the first time, Q and the states are ready)
    for (int i = threadIdx.x; i < kGenericKeys * head_dim; i += kThreads) {
      const int key = i / head_dim, d = i % head_dim;
      const int position = key_begin + key;
      float k_value = 0.0f, v_value = 0.0f;
      if (position <= t.last_position && position >= oldest_position) {
        const int64_t block = table[position / a.block_size];
        const int64_t slot = block * a.block_size + position % a.block_size;
        const int64_t offset = slot * slot_stride + static_cast<int64_t>(kv_head) * head_dim + d;
        k_value = fp16_to_f32(a.k_pool[offset]);
        v_value = fp16_to_f32(a.v_pool[offset]);
      }
      k_shared[key * key_stride + d] = k_value;
      v_shared[key * key_stride + d] = v_value;
    }
    __syncthreads();

    for (int r = warp; r < t.rows; r += kWarps) {
      const int position = t.first_position + r / t.heads;
      if (key_begin > position) continue;  // the whole tile is in this row's future (uniform over the warp)
      const int key = key_begin + lane;
      float score = -INFINITY;
      if (key <= position && (a.window <= 0 || key > position - a.window)) {
        float dot = 0.0f;
        for (int d = 0; d < head_dim; ++d) dot += q_shared[r * head_dim + d] * k_shared[lane * key_stride + d];
        score = dot * a.scale;
      }
      SoftmaxState state = states[r];
      const float factor = softmax_rescale(state, warp_max(score));
      const float p = score == -INFINITY ? 0.0f : expf(score - state.max);
      state.sum += warp_sum(p);
      for (int d0 = 0; d0 < head_dim; d0 += 32) {
        const int d = d0 + lane;
        float acc = d < head_dim ? acc_shared[r * head_dim + d] * factor : 0.0f;
#pragma unroll 8
        for (int j = 0; j < kGenericKeys; ++j) {
          const float pj = __shfl_sync(kFullWarpMask, p, j);
          if (d < head_dim) acc += pj * v_shared[j * key_stride + d];
        }
        if (d < head_dim) acc_shared[r * head_dim + d] = acc;
      }
      __syncwarp();
      if (lane == 0) states[r] = state;
      __syncwarp();
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < t.rows * head_dim; i += kThreads) {
    const int r = i / head_dim, d = i % head_dim;
    const int64_t query = t.first_query + r / t.heads;
    a.out[(query * a.n_head + first_head + r % t.heads) * head_dim + d] =
        acc_shared[i] * softmax_normalizer(states[r]);
  }
}

// Raises a kernel's dynamic shared memory limit once (the default is 48 KB).
template <typename Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes, size_t& allowed) {
  if (bytes <= allowed) return;
  PAGEDLLM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           static_cast<int>(bytes)));
  allowed = bytes;
}

template <int kHeadDim>
void launch_mma(const AttentionLaunch& args, const FlashTile* tiles, int n_tiles, int tokens_per_tile,
                int heads_per_tile, cudaStream_t stream) {
  static thread_local size_t allowed = 48 << 10;
  constexpr size_t bytes = mma_shared_bytes<kHeadDim>();
  allow_shared_memory(flash_attention_mma_kernel<kHeadDim>, bytes, allowed);
  const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(args.n_head_kv));
  flash_attention_mma_kernel<kHeadDim><<<grid, kThreads, bytes, stream>>>(args, tiles, tokens_per_tile,
                                                                         heads_per_tile);
  PAGEDLLM_CUDA_CHECK_LAUNCH("flash_attention_mma_kernel");
}

}  // namespace

void flash_attention(const AttentionLaunch& args, const FlashTile* tiles, int n_tiles, int tokens_per_tile,
                     int heads_per_tile, cudaStream_t stream) {
  if (n_tiles <= 0) return;
  if (tokens_per_tile * heads_per_tile > flash_kernel_rows(args.head_dim)) {
    fail("internal: flash tiles of {} x {} rows exceed the kernel's {}", tokens_per_tile, heads_per_tile,
         flash_kernel_rows(args.head_dim));
  }
  if (args.head_dim == 64) {
    launch_mma<64>(args, tiles, n_tiles, tokens_per_tile, heads_per_tile, stream);
  } else if (args.head_dim == 128) {
    launch_mma<128>(args, tiles, n_tiles, tokens_per_tile, heads_per_tile, stream);
  } else {
    if (args.head_dim < 1 || args.head_dim > kFlashGenericMaxHeadDim) {
      fail("attention: head_dim {} is not supported on the GPU (at most {})", args.head_dim,
           kFlashGenericMaxHeadDim);
    }
    static thread_local size_t allowed = 48 << 10;
    const size_t bytes = generic_shared_bytes(args.head_dim);
    allow_shared_memory(flash_attention_generic_kernel, bytes, allowed);
    const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(args.n_head_kv));
    flash_attention_generic_kernel<<<grid, kThreads, bytes, stream>>>(args, tiles, tokens_per_tile, heads_per_tile);
    PAGEDLLM_CUDA_CHECK_LAUNCH("flash_attention_generic_kernel");
  }
}

}  // namespace pagedllm::cuda
