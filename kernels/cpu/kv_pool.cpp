#include "kernels/cpu/kv_pool.h"

#include <cstring>
#include <new>
#include <stdexcept>

#include <fmt/format.h>

#include "common/error.h"
#include "kernels/cpu/f16_rows.h"
#include "kernels/cpu/quant_rows.h"

namespace pagedllm {

KvPool::KvPool(const KvGeometry& geometry) : geometry_(geometry) {
  const KvGeometry& g = geometry;
  if (g.n_layer < 1 || g.n_head_kv < 1 || g.head_dim < 1)
    fail("KV pool: invalid shape (n_layer {}, n_head_kv {}, head_dim {})", g.n_layer, g.n_head_kv, g.head_dim);
  if (g.num_blocks < 1 || g.block_size < 1)
    fail("KV pool: invalid size ({} blocks of {} tokens)", g.num_blocks, g.block_size);
  if (g.head_dim % kv_dtype_block_elements(g.dtype) != 0)
    fail("KV pool: {} rows are blocks of {} elements, which head_dim {} is not a multiple of", kv_dtype_name(g.dtype),
         kv_dtype_block_elements(g.dtype), g.head_dim);
  const int num_blocks = g.num_blocks;
  const size_t total = g.pool_bytes();
  storage_.reset(static_cast<uint8_t*>(std::calloc(total, 1)));
  if (!storage_) {
    fail("KV pool: cannot allocate {:.1f} MiB for {} blocks", static_cast<double>(total) / (1024.0 * 1024.0),
         num_blocks);
  }
  storage_bytes_ = total;
}

size_t KvPool::layer_pool_bytes() const {
  return static_cast<size_t>(num_blocks()) * static_cast<size_t>(block_size()) * geometry_.slot_bytes();
}

void KvPool::check_slot(int32_t slot) const {
  if (slot < 0 || static_cast<int64_t>(slot) >= static_cast<int64_t>(num_blocks()) * block_size())
    throw std::out_of_range(fmt::format("KV pool: slot {} outside {} blocks of {}", slot, num_blocks(), block_size()));
}

void KvPool::write(int layer, const float* k, const float* v, std::span<const int32_t> slot_mapping) {
  if (layer < 0 || layer >= geometry_.n_layer) throw std::out_of_range(fmt::format("KV pool: no layer {}", layer));
  const size_t row = slot_elements();                        // elements per slot
  const size_t row_bytes = geometry_.slot_bytes();
  uint8_t* k_pool = storage_.get() + layer_offset(layer, 0);  // [num_blocks * block_size, n_head_kv, head_dim]
  uint8_t* v_pool = storage_.get() + layer_offset(layer, 1);
  for (size_t t = 0; t < slot_mapping.size(); ++t) {
    const int32_t slot = slot_mapping[t];
    check_slot(slot);
    uint8_t* k_dst = k_pool + static_cast<size_t>(slot) * row_bytes;
    uint8_t* v_dst = v_pool + static_cast<size_t>(slot) * row_bytes;
    const float* k_src = k + t * row;  // [n_head_kv, head_dim]
    const float* v_src = v + t * row;
    switch (dtype()) {
      case KvDtype::F16:
        f32_row_to_f16(k_src, reinterpret_cast<uint16_t*>(k_dst), static_cast<int>(row));
        f32_row_to_f16(v_src, reinterpret_cast<uint16_t*>(v_dst), static_cast<int>(row));
        break;
      case KvDtype::F32:
        std::memcpy(k_dst, k_src, row_bytes);
        std::memcpy(v_dst, v_src, row_bytes);
        break;
      // Every head's row is whole blocks, so the slot's heads one after another are one row of blocks.
      case KvDtype::Q8_0:
        f32_row_to_q8_0(k_src, reinterpret_cast<BlockQ8_0*>(k_dst), static_cast<int>(row));
        f32_row_to_q8_0(v_src, reinterpret_cast<BlockQ8_0*>(v_dst), static_cast<int>(row));
        break;
      case KvDtype::Q4_0:
        f32_row_to_q4_0(k_src, reinterpret_cast<BlockQ4_0*>(k_dst), static_cast<int>(row));
        f32_row_to_q4_0(v_src, reinterpret_cast<BlockQ4_0*>(v_dst), static_cast<int>(row));
        break;
    }
  }
}

void KvPool::copy_block(int32_t src, int32_t dst) {
  if (src < 0 || src >= num_blocks() || dst < 0 || dst >= num_blocks())
    throw std::out_of_range(fmt::format("KV pool: copy {} -> {} outside {} blocks", src, dst, num_blocks()));
  if (src == dst) return;
  const size_t block_bytes = static_cast<size_t>(block_size()) * geometry_.slot_bytes();
  for (int layer = 0; layer < geometry_.n_layer; ++layer) {
    for (int which = 0; which < 2; ++which) {
      uint8_t* pool = storage_.get() + layer_offset(layer, which);
      std::memcpy(pool + static_cast<size_t>(dst) * block_bytes, pool + static_cast<size_t>(src) * block_bytes,
                  block_bytes);
    }
  }
}

void KvPool::apply_copies(std::span<const BlockCopy> copies) {
  for (const BlockCopy& copy : copies) copy_block(copy.src, copy.dst);
}

void KvPool::read(int layer, int which, int32_t slot, float* out) const {
  if (layer < 0 || layer >= geometry_.n_layer) throw std::out_of_range(fmt::format("KV pool: no layer {}", layer));
  check_slot(slot);
  const int row = static_cast<int>(slot_elements());
  const uint8_t* source = storage_.get() + layer_offset(layer, which) + static_cast<size_t>(slot) *
                                                                               geometry_.slot_bytes();
  switch (dtype()) {
    case KvDtype::F16: f16_row_to_f32(reinterpret_cast<const uint16_t*>(source), out, row); break;
    case KvDtype::F32: std::memcpy(out, source, static_cast<size_t>(row) * sizeof(float)); break;
    case KvDtype::Q8_0: q8_0_row_to_f32(reinterpret_cast<const BlockQ8_0*>(source), out, row); break;
    case KvDtype::Q4_0: q4_0_row_to_f32(reinterpret_cast<const BlockQ4_0*>(source), out, row); break;
  }
}

}  // namespace pagedllm
