#include "engine/kv_pool.h"

#include <cstring>
#include <new>
#include <stdexcept>

#include <fmt/format.h>

#include "common/error.h"
#include "kernels/cpu/f16_rows.h"

namespace pagedllm {

size_t kv_bytes_per_block(const KvShape& shape, int block_size, KvDtype dtype) {
  return 2 * static_cast<size_t>(shape.n_layer) * static_cast<size_t>(block_size) *
         static_cast<size_t>(shape.n_head_kv) * static_cast<size_t>(shape.head_dim) * kv_dtype_size(dtype);
}

int kv_blocks_for_budget(size_t budget_bytes, const KvShape& shape, int block_size, KvDtype dtype) {
  const size_t per_block = kv_bytes_per_block(shape, block_size, dtype);
  if (per_block == 0) fail("KV cache: cannot size blocks for a model shape with a zero dimension");
  const size_t blocks = budget_bytes / per_block;
  return blocks > static_cast<size_t>(INT32_MAX) ? INT32_MAX : static_cast<int>(blocks);
}

KvPool::KvPool(const KvShape& shape, int num_blocks, int block_size, KvDtype dtype)
    : shape_(shape), num_blocks_(num_blocks), block_size_(block_size), dtype_(dtype) {
  if (shape.n_layer < 1 || shape.n_head_kv < 1 || shape.head_dim < 1)
    fail("KV pool: invalid shape (n_layer {}, n_head_kv {}, head_dim {})", shape.n_layer, shape.n_head_kv,
         shape.head_dim);
  if (num_blocks < 1 || block_size < 1)
    fail("KV pool: invalid size ({} blocks of {} tokens)", num_blocks, block_size);
  const size_t total = kv_bytes_per_block(shape, block_size, dtype) * static_cast<size_t>(num_blocks);
  try {
    storage_.resize(total);
  } catch (const std::bad_alloc&) {
    fail("KV pool: cannot allocate {:.1f} MiB for {} blocks", static_cast<double>(total) / (1024.0 * 1024.0),
         num_blocks);
  } catch (const std::length_error&) {
    fail("KV pool: {} blocks are more than this machine can address", num_blocks);
  }
}

size_t KvPool::pool_bytes() const {
  return static_cast<size_t>(num_blocks_) * static_cast<size_t>(block_size_) * slot_elements() * kv_dtype_size(dtype_);
}

void KvPool::check_slot(int32_t slot) const {
  if (slot < 0 || static_cast<int64_t>(slot) >= static_cast<int64_t>(num_blocks_) * block_size_)
    throw std::out_of_range(fmt::format("KV pool: slot {} outside {} blocks of {}", slot, num_blocks_, block_size_));
}

void KvPool::write(int layer, const float* k, const float* v, std::span<const int32_t> slot_mapping) {
  if (layer < 0 || layer >= shape_.n_layer) throw std::out_of_range(fmt::format("KV pool: no layer {}", layer));
  const size_t row = slot_elements();                        // elements per slot
  const size_t row_bytes = row * kv_dtype_size(dtype_);
  uint8_t* k_pool = storage_.data() + layer_offset(layer, 0);  // [num_blocks * block_size, n_head_kv, head_dim]
  uint8_t* v_pool = storage_.data() + layer_offset(layer, 1);
  for (size_t t = 0; t < slot_mapping.size(); ++t) {
    const int32_t slot = slot_mapping[t];
    check_slot(slot);
    uint8_t* k_dst = k_pool + static_cast<size_t>(slot) * row_bytes;
    uint8_t* v_dst = v_pool + static_cast<size_t>(slot) * row_bytes;
    const float* k_src = k + t * row;  // [n_head_kv, head_dim]
    const float* v_src = v + t * row;
    if (dtype_ == KvDtype::F16) {
      f32_row_to_f16(k_src, reinterpret_cast<uint16_t*>(k_dst), static_cast<int>(row));
      f32_row_to_f16(v_src, reinterpret_cast<uint16_t*>(v_dst), static_cast<int>(row));
    } else {
      std::memcpy(k_dst, k_src, row_bytes);
      std::memcpy(v_dst, v_src, row_bytes);
    }
  }
}

void KvPool::copy_block(int32_t src, int32_t dst) {
  if (src < 0 || src >= num_blocks_ || dst < 0 || dst >= num_blocks_)
    throw std::out_of_range(fmt::format("KV pool: copy {} -> {} outside {} blocks", src, dst, num_blocks_));
  if (src == dst) return;
  const size_t block_bytes = static_cast<size_t>(block_size_) * slot_elements() * kv_dtype_size(dtype_);
  for (int layer = 0; layer < shape_.n_layer; ++layer) {
    for (int which = 0; which < 2; ++which) {
      uint8_t* pool = storage_.data() + layer_offset(layer, which);
      std::memcpy(pool + static_cast<size_t>(dst) * block_bytes, pool + static_cast<size_t>(src) * block_bytes,
                  block_bytes);
    }
  }
}

void KvPool::apply_copies(std::span<const BlockCopy> copies) {
  for (const BlockCopy& copy : copies) copy_block(copy.src, copy.dst);
}

void KvPool::read(int layer, int which, int32_t slot, float* out) const {
  if (layer < 0 || layer >= shape_.n_layer) throw std::out_of_range(fmt::format("KV pool: no layer {}", layer));
  check_slot(slot);
  const size_t row = slot_elements();
  const uint8_t* source = storage_.data() + layer_offset(layer, which) + static_cast<size_t>(slot) * row *
                                                                               kv_dtype_size(dtype_);
  if (dtype_ == KvDtype::F16) f16_row_to_f32(reinterpret_cast<const uint16_t*>(source), out, static_cast<int>(row));
  else std::memcpy(out, source, row * sizeof(float));
}

}  // namespace pagedllm
