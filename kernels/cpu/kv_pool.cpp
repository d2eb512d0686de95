#include "kernels/cpu/kv_pool.h"

#include <cstring>
#include <new>
#include <stdexcept>

#include <fmt/format.h>

#include "common/error.h"
#include "kernels/cpu/f16_rows.h"

namespace pagedllm {

KvPool::KvPool(const KvGeometry& geometry) : geometry_(geometry) {
  const KvGeometry& g = geometry;
  if (g.n_layer < 1 || g.n_head_kv < 1 || g.head_dim < 1)
    fail("KV pool: invalid shape (n_layer {}, n_head_kv {}, head_dim {})", g.n_layer, g.n_head_kv, g.head_dim);
  if (g.num_blocks < 1 || g.block_size < 1)
    fail("KV pool: invalid size ({} blocks of {} tokens)", g.num_blocks, g.block_size);
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
  return static_cast<size_t>(num_blocks()) * static_cast<size_t>(block_size()) * slot_elements() *
         kv_dtype_size(dtype());
}

void KvPool::check_slot(int32_t slot) const {
  if (slot < 0 || static_cast<int64_t>(slot) >= static_cast<int64_t>(num_blocks()) * block_size())
    throw std::out_of_range(fmt::format("KV pool: slot {} outside {} blocks of {}", slot, num_blocks(), block_size()));
}

void KvPool::write(int layer, const float* k, const float* v, std::span<const int32_t> slot_mapping) {
  if (layer < 0 || layer >= geometry_.n_layer) throw std::out_of_range(fmt::format("KV pool: no layer {}", layer));
  const size_t row = slot_elements();                        // elements per slot
  const size_t row_bytes = row * kv_dtype_size(dtype());
  uint8_t* k_pool = storage_.get() + layer_offset(layer, 0);  // [num_blocks * block_size, n_head_kv, head_dim]
  uint8_t* v_pool = storage_.get() + layer_offset(layer, 1);
  for (size_t t = 0; t < slot_mapping.size(); ++t) {
    const int32_t slot = slot_mapping[t];
    check_slot(slot);
    uint8_t* k_dst = k_pool + static_cast<size_t>(slot) * row_bytes;
    uint8_t* v_dst = v_pool + static_cast<size_t>(slot) * row_bytes;
    const float* k_src = k + t * row;  // [n_head_kv, head_dim]
    const float* v_src = v + t * row;
    if (dtype() == KvDtype::F16) {
      f32_row_to_f16(k_src, reinterpret_cast<uint16_t*>(k_dst), static_cast<int>(row));
      f32_row_to_f16(v_src, reinterpret_cast<uint16_t*>(v_dst), static_cast<int>(row));
    } else {
      std::memcpy(k_dst, k_src, row_bytes);
      std::memcpy(v_dst, v_src, row_bytes);
    }
  }
}

void KvPool::copy_block(int32_t src, int32_t dst) {
  if (src < 0 || src >= num_blocks() || dst < 0 || dst >= num_blocks())
    throw std::out_of_range(fmt::format("KV pool: copy {} -> {} outside {} blocks", src, dst, num_blocks()));
  if (src == dst) return;
  const size_t block_bytes = static_cast<size_t>(block_size()) * slot_elements() * kv_dtype_size(dtype());
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
  const size_t row = slot_elements();
  const uint8_t* source = storage_.get() + layer_offset(layer, which) + static_cast<size_t>(slot) * row *
                                                                               kv_dtype_size(dtype());
  if (dtype() == KvDtype::F16) f16_row_to_f32(reinterpret_cast<const uint16_t*>(source), out, static_cast<int>(row));
  else std::memcpy(out, source, row * sizeof(float));
}

}  // namespace pagedllm
