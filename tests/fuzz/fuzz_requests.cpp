// libFuzzer target for the request lines of `pagedllm batch` (cli/batch_files.cpp): every line must become a
// request or a request with an error message, never a crash, undefined behaviour or an escaping exception, and what
// batch then does with the line (its sampling options, its id, its error record as JSON text) must work for any
// line. The input is split at newlines, as a request file is. Built by scripts/fuzz.sh with clang, AddressSanitizer
// and UndefinedBehaviorSanitizer; scripts/fuzz.sh seeds it with request lines of every field.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cli/batch_files.h"
#include "common/error.h"
#include "engine/sampler.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pagedllm;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  int line_number = 1;
  for (size_t start = 0; start <= input.size(); ++line_number) {
    const size_t newline = input.find('\n', start);
    const size_t end = newline == std::string_view::npos ? input.size() : newline;
    const RequestLine line = parse_request_line(input.substr(start, end - start), line_number);
    if (line.error.empty()) {
      const SamplingParams params = sampling_for(line, SamplingParams{});
      try {
        validate_sampling_params(params);
      } catch (const Error&) {
      }
    }
    const std::string record = record_text(error_record(line, line.error.empty() ? "fuzz" : line.error));
    if (record.empty() || id_key(line.id).empty()) __builtin_trap();
    start = end + 1;
  }
  return 0;
}
