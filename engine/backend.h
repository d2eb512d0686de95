#pragma once
// The seam between the engine and the hardware. A backend owns the weights as it needs them and the K/V pools;
// the engine owns the paging (KvCacheManager) and tells the backend, per forward, where to write and read.
#include <cstdint>
#include <span>
#include <string>

#include "engine/batch.h"
#include "engine/kv_cache.h"

namespace pagedllm {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Executes copy-on-write block copies (all layers, K and V) in order, before the next forward.
  virtual void copy_blocks(std::span<const BlockCopy> copies) = 0;
  // One forward over the batch: writes the new tokens' K/V through the slot mapping, attends over each
  // sequence's block table, and writes logits for `batch.logit_rows`. logits: [logit_rows.size(), n_vocab].
  virtual void forward(const BatchInput& batch, float* logits) = 0;
  // Bytes of the K/V pools.
  virtual uint64_t kv_pool_bytes() const = 0;
};

}  // namespace pagedllm
