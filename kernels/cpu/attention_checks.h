#pragma once
// The contract checks both attention implementations run before touching memory: a violated contract is a bug in
// the caller, reported as std::invalid_argument instead of an out-of-bounds read.
#include "kernels/cpu/attention.h"

namespace pagedllm {

void check_attention_args(const AttentionArgs& args);

}  // namespace pagedllm
