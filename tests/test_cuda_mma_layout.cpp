// The tensor-core flash kernel's index arithmetic (kernels/cuda/mma_layout.h) against an emulation of the PTX
// instructions it feeds, on the CPU in every build: one warp computes S = Q·Kᵀ and O = P·V exactly as
// flash_attention.cu sequences it (ldmatrix.x4 for Q and K, ldmatrix.x4.trans for V, mma.m16n8k16, the score
// accumulators re-packed as P's A fragments), and every accumulator must land on the matrix element the kernel
// believes it holds. The emulation implements the fragment layouts as the PTX ISA documents them, independently of
// mma_layout.h; a wrong lane address, operand order or re-packing shows up as a wrong element here.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cuda/mma_layout.h"

using namespace pagedllm::cuda;

namespace {

constexpr int kLanes = 32;

using Pair = std::array<float, 2>;           // one 32-bit register: two f16 values (low first)
using Registers4 = std::array<Pair, 4>;       // an x4 ldmatrix result / an A fragment
using Accumulator = std::array<float, 4>;     // c0..c3

// A row-major matrix standing in for a shared-memory tile.
struct Matrix {
  int rows, cols;
  std::vector<float> values;
  Matrix(int r, int c) : rows(r), cols(c), values(static_cast<size_t>(r) * c, 0.0f) {}
  float& at(int r, int c) {
    REQUIRE(r >= 0);
    REQUIRE(r < rows);
    REQUIRE(c >= 0);
    REQUIRE(c < cols);
    return values[static_cast<size_t>(r) * cols + c];
  }
};

// ldmatrix.sync.aligned.m8n8.x4(.trans).b16: lane 8i + r supplies the address of row r of matrix i (8
// consecutive elements). Without .trans lane l receives, in register i, elements (l/4, 2(l%4)) and
// (l/4, 2(l%4) + 1) of matrix i; with .trans, elements (2(l%4), l/4) and (2(l%4) + 1, l/4).
std::array<Registers4, kLanes> emulate_ldmatrix_x4(Matrix& m, const std::array<TileCoord, kLanes>& addresses,
                                                   bool transposed) {
  std::array<Registers4, kLanes> out{};
  for (int matrix = 0; matrix < 4; ++matrix) {
    float tile[8][8];
    for (int r = 0; r < 8; ++r) {
      const TileCoord address = addresses[static_cast<size_t>(8 * matrix + r)];
      for (int c = 0; c < 8; ++c) tile[r][c] = m.at(address.row, address.col + c);
    }
    for (int lane = 0; lane < kLanes; ++lane) {
      for (int h = 0; h < 2; ++h) {
        out[static_cast<size_t>(lane)][static_cast<size_t>(matrix)][static_cast<size_t>(h)] =
            transposed ? tile[2 * (lane % 4) + h][lane / 4] : tile[lane / 4][2 * (lane % 4) + h];
      }
    }
  }
  return out;
}

// mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32, g = lane/4, t = lane%4:
//   A (16x16): a0,a1: (g, 2t+h); a2,a3: (g+8, 2t+h); a4,a5: (g, 2t+8+h); a6,a7: (g+8, 2t+8+h)
//   B (16x8):  b0,b1: (2t+h, g); b2,b3: (2t+8+h, g)
//   C (16x8):  c0,c1: (g, 2t+h); c2,c3: (g+8, 2t+h)
void emulate_mma(std::array<Accumulator, kLanes>& d, const std::array<Registers4, kLanes>& a,
                 const std::array<std::array<Pair, 2>, kLanes>& b) {
  double A[16][16], B[16][8], C[16][8];
  int a_set[16][16] = {}, b_set[16][8] = {}, c_set[16][8] = {};
  for (int lane = 0; lane < kLanes; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 8; ++i) {
      const int row = g + ((i / 2) % 2) * 8;
      const int col = 2 * t + (i % 2) + (i >= 4 ? 8 : 0);
      A[row][col] = a[static_cast<size_t>(lane)][static_cast<size_t>(i / 2)][static_cast<size_t>(i % 2)];
      ++a_set[row][col];
    }
    for (int i = 0; i < 4; ++i) {
      const int row = 2 * t + (i % 2) + (i >= 2 ? 8 : 0);
      B[row][g] = b[static_cast<size_t>(lane)][static_cast<size_t>(i / 2)][static_cast<size_t>(i % 2)];
      ++b_set[row][g];
    }
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i % 2);
      C[row][col] = d[static_cast<size_t>(lane)][static_cast<size_t>(i)];
      ++c_set[row][col];
    }
  }
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) REQUIRE(a_set[r][c] == 1);
    for (int c = 0; c < 8; ++c) {
      REQUIRE(b_set[r][c] == 1);
      REQUIRE(c_set[r][c] == 1);
    }
  }
  for (int lane = 0; lane < kLanes; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i % 2);
      double sum = C[row][col];
      for (int k = 0; k < 16; ++k) sum += A[row][k] * B[k][col];
      d[static_cast<size_t>(lane)][static_cast<size_t>(i)] = static_cast<float>(sum);
    }
  }
}

std::array<std::array<Pair, 2>, kLanes> b_fragment(const std::array<Registers4, kLanes>& loaded, int first) {
  std::array<std::array<Pair, 2>, kLanes> b{};
  for (int lane = 0; lane < kLanes; ++lane) {
    b[static_cast<size_t>(lane)][0] = loaded[static_cast<size_t>(lane)][static_cast<size_t>(first)];
    b[static_cast<size_t>(lane)][1] = loaded[static_cast<size_t>(lane)][static_cast<size_t>(first + 1)];
  }
  return b;
}

}  // namespace

TEST_CASE("flash MMA layout: Q·Kᵀ and P·V computed through the emulated ldmatrix/mma land where the kernel reads them") {
  constexpr int kRows = 16;      // one warp's query rows
  constexpr int kHeadDim = 32;   // two k-steps of Q·Kᵀ, two pairs of dim n-tiles of P·V
  constexpr int kKeys = 32;      // four key n-tiles, two k-steps of P·V
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> small(-4, 4);  // small integers: every product and sum is exact
  Matrix q(kRows, kHeadDim), k(kKeys, kHeadDim), v(kKeys, kHeadDim);
  for (float& x : q.values) x = static_cast<float>(small(rng));
  for (float& x : k.values) x = static_cast<float>(small(rng));
  for (float& x : v.values) x = static_cast<float>(small(rng));

  // Q fragments, as the kernel loads them.
  std::array<std::array<Registers4, kLanes>, kHeadDim / 16> q_fragments;
  for (int step = 0; step < kHeadDim / 16; ++step) {
    std::array<TileCoord, kLanes> addresses;
    for (int lane = 0; lane < kLanes; ++lane) {
      const TileCoord source = ldmatrix_q_source(lane);
      addresses[static_cast<size_t>(lane)] = TileCoord{source.row, step * 16 + source.col};
    }
    q_fragments[static_cast<size_t>(step)] = emulate_ldmatrix_x4(q, addresses, false);
  }

  // S = Q·Kᵀ.
  std::array<std::array<Accumulator, kLanes>, kKeys / 8> scores{};
  for (int step = 0; step < kHeadDim / 16; ++step) {
    for (int pair = 0; pair < kKeys / 16; ++pair) {
      std::array<TileCoord, kLanes> addresses;
      for (int lane = 0; lane < kLanes; ++lane) {
        const TileCoord source = ldmatrix_k_source(lane);
        addresses[static_cast<size_t>(lane)] = TileCoord{pair * 16 + source.row, step * 16 + source.col};
      }
      const auto loaded = emulate_ldmatrix_x4(k, addresses, false);
      emulate_mma(scores[static_cast<size_t>(2 * pair)], q_fragments[static_cast<size_t>(step)], b_fragment(loaded, 0));
      emulate_mma(scores[static_cast<size_t>(2 * pair + 1)], q_fragments[static_cast<size_t>(step)],
                  b_fragment(loaded, 2));
    }
  }
  // Every accumulator holds the score the kernel's masking assigns to it: row accumulator_coord().row, key
  // 8 j + accumulator_coord().col.
  Matrix expected_scores(kRows, kKeys);
  for (int r = 0; r < kRows; ++r) {
    for (int key = 0; key < kKeys; ++key) {
      float dot = 0.0f;
      for (int d = 0; d < kHeadDim; ++d) dot += q.at(r, d) * k.at(key, d);
      expected_scores.at(r, key) = dot;
    }
  }
  for (int j = 0; j < kKeys / 8; ++j) {
    for (int lane = 0; lane < kLanes; ++lane) {
      for (int c = 0; c < 4; ++c) {
        const TileCoord at = accumulator_coord(lane, c);
        CHECK(scores[static_cast<size_t>(j)][static_cast<size_t>(lane)][static_cast<size_t>(c)] ==
              expected_scores.at(at.row, 8 * j + at.col));
      }
    }
  }

  // O = P·V with P = the scores, re-packed as A fragments.
  std::array<std::array<Accumulator, kLanes>, kHeadDim / 8> output{};
  for (int key_step = 0; key_step < kKeys / 16; ++key_step) {
    std::array<Registers4, kLanes> p_fragment{};
    for (int lane = 0; lane < kLanes; ++lane) {
      for (int reg = 0; reg < 4; ++reg) {
        const AccumulatorPair from = p_register_source(key_step, reg);
        const Accumulator& source = scores[static_cast<size_t>(from.tile)][static_cast<size_t>(lane)];
        p_fragment[static_cast<size_t>(lane)][static_cast<size_t>(reg)] =
            Pair{source[static_cast<size_t>(from.first_element)], source[static_cast<size_t>(from.first_element + 1)]};
      }
    }
    for (int pair = 0; pair < kHeadDim / 16; ++pair) {
      std::array<TileCoord, kLanes> addresses;
      for (int lane = 0; lane < kLanes; ++lane) {
        const TileCoord source = ldmatrix_v_source(lane);
        addresses[static_cast<size_t>(lane)] = TileCoord{key_step * 16 + source.row, pair * 16 + source.col};
      }
      const auto loaded = emulate_ldmatrix_x4(v, addresses, true);
      emulate_mma(output[static_cast<size_t>(2 * pair)], p_fragment, b_fragment(loaded, 0));
      emulate_mma(output[static_cast<size_t>(2 * pair + 1)], p_fragment, b_fragment(loaded, 2));
    }
  }
  for (int j = 0; j < kHeadDim / 8; ++j) {
    for (int lane = 0; lane < kLanes; ++lane) {
      for (int c = 0; c < 4; ++c) {
        const TileCoord at = accumulator_coord(lane, c);
        double expected = 0.0;
        for (int key = 0; key < kKeys; ++key) expected += double(expected_scores.at(at.row, key)) * v.at(key, 8 * j + at.col);
        CHECK(output[static_cast<size_t>(j)][static_cast<size_t>(lane)][static_cast<size_t>(c)] == expected);
      }
    }
  }
}

TEST_CASE("flash MMA layout: each ldmatrix.x4 address set covers its 16 x 16 tile once, 16-byte aligned") {
  for (auto source : {ldmatrix_q_source, ldmatrix_k_source, ldmatrix_v_source}) {
    int covered[16][16] = {};
    for (int lane = 0; lane < kLanes; ++lane) {
      const TileCoord at = source(lane);
      CHECK(at.col % 8 == 0);  // 8 f16 = 16 bytes from a 16-byte aligned row start
      for (int c = 0; c < 8; ++c) ++covered[at.row][at.col + c];
    }
    for (auto& row : covered)
      for (int count : row) CHECK(count == 1);
  }
}
