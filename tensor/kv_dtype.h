#pragma once
// The element type of the paged K/V pools. Shared by the engine (which sizes and fills the pools) and the kernels
// (which read them), so it lives below both.
#include <cstddef>
#include <string_view>

namespace pagedllm {

enum class KvDtype { F16, F32 };

inline constexpr size_t kv_dtype_size(KvDtype dtype) { return dtype == KvDtype::F16 ? 2 : 4; }
inline constexpr std::string_view kv_dtype_name(KvDtype dtype) { return dtype == KvDtype::F16 ? "f16" : "f32"; }

}  // namespace pagedllm
