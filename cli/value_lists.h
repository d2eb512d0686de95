#pragma once
// The value lists of `pagedllm bench`, in llama-bench's syntax: "1,2,4", ranges "1-8", multiplicative steps
// "64-4096*2" and additive steps "16-128+16", mixed freely ("1,8-32*2").
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pagedllm::cli {

// Every value of `text`, in the order written. Throws pagedllm::Error naming `flag` for an empty element
// ("1,,2"), a range that runs backwards ("8-1"), a step that would never reach the end (+0, *1), a value below
// `minimum`, anything that is not a whole number, or more than `max_values` values.
std::vector<int64_t> parse_int_list(std::string_view text, std::string_view flag, int64_t minimum,
                                    size_t max_values = 4096);

// Comma-separated words ("f16,q8_0"); empty elements are an Error naming `flag`.
std::vector<std::string> parse_word_list(std::string_view text, std::string_view flag);

}  // namespace pagedllm::cli
