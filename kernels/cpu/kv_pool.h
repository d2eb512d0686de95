#pragma once
// The CPU backend's K/V storage: per layer, a K pool and a V pool of [num_blocks, block_size, n_head_kv, head_dim]
// elements in F16 (the default, half the memory and bandwidth), F32, or Q8_0 / Q4_0 (each head's row of head_dim
// elements stored as head_dim / 32 blocks: 8.5 or 4.5 bits an element). Physical slot s (a block id times the block
// size plus an offset) is row s of the [num_blocks * block_size, n_head_kv, head_dim] view. Written through the
// batch's slot mapping (quantizing on the way in), read by the attention kernels through the block tables. Whole
// blocks are copied as bytes, so copy-on-write and the prefix cache are the same for every type.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <vector>

#include "kernels/backend.h"

namespace pagedllm {

class KvPool {
 public:
  // Throws pagedllm::Error for a non-positive dimension or when the memory cannot be allocated.
  explicit KvPool(const KvGeometry& geometry);

  // Stores the K and V rows of n new tokens at their slots. k, v: [n_tokens, n_head_kv, head_dim];
  // slot_mapping: [n_tokens].
  void write(int layer, const float* k, const float* v, std::span<const int32_t> slot_mapping);
  // Copies one block (every layer, K and V): the copy-on-write the cache manager recorded.
  void copy_block(int32_t src, int32_t dst);
  void apply_copies(std::span<const BlockCopy> copies);  // in order: a later copy may overwrite an earlier source

  // [num_blocks, block_size, n_head_kv, head_dim] of dtype() (kv_row_bytes per head row): what AttentionArgs::k_pool
  // / v_pool take.
  const void* k_data(int layer) const { return storage_.get() + layer_offset(layer, 0); }
  const void* v_data(int layer) const { return storage_.get() + layer_offset(layer, 1); }
  // One slot's K or V rows widened to f32, for tests and debugging. out: [n_head_kv, head_dim].
  void read_k(int layer, int32_t slot, float* out) const { read(layer, 0, slot, out); }
  void read_v(int layer, int32_t slot, float* out) const { read(layer, 1, slot, out); }

  size_t size_bytes() const { return storage_bytes_; }
  KvDtype dtype() const { return geometry_.dtype; }
  int num_blocks() const { return geometry_.num_blocks; }
  int block_size() const { return geometry_.block_size; }
  const KvGeometry& geometry() const { return geometry_; }

 private:
  size_t slot_elements() const {
    return static_cast<size_t>(geometry_.n_head_kv) * static_cast<size_t>(geometry_.head_dim);
  }
  size_t layer_pool_bytes() const;  // one layer's K (or V) pool
  size_t layer_offset(int layer, int which) const { return (static_cast<size_t>(layer) * 2 + which) * layer_pool_bytes(); }
  void check_slot(int32_t slot) const;
  void read(int layer, int which, int32_t slot, float* out) const;

  KvGeometry geometry_;
  struct FreeStorage {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  // [n_layer, 2 (K, V), num_blocks, block_size, n_head_kv, head_dim] of dtype. From calloc, which maps a large block
  // as zero pages the system commits when first written: a pool sized for a long context costs memory only as
  // tokens fill it (a vector would write every byte up front, so -c 2000000 held 1.3 GB before the first token).
  std::unique_ptr<uint8_t[], FreeStorage> storage_;
  size_t storage_bytes_ = 0;
};

}  // namespace pagedllm
