#pragma once
// How much memory this machine can still give a process, so that a request for more fails with a message naming
// the flag that asked for it instead of in an allocator.
#include <cstdint>

namespace pagedllm {

// MemAvailable from /proc/meminfo (bytes), lowered to the cgroup limit when one applies; 0 when unknown.
uint64_t available_memory_bytes();

}  // namespace pagedllm
