#pragma once
// What the batch scheduler is asked to do (a GenerationRequest: a tokenized prompt, how much to generate, how to
// sample, how many samples) and what it hands back (a RequestResult: one Completion per sample). Input parsing and
// output records live in cli/batch_files.h; the scheduling itself in engine/scheduler.h.
#include <cstdint>
#include <string>
#include <vector>

#include "engine/sampler.h"

namespace pagedllm {

struct GenerationRequest {
  int64_t id = 0;                  // the caller's handle; results carry it back
  std::vector<int32_t> prompt;     // [n_prompt] token ids, BOS included when the model wants one
  int max_tokens = 256;            // most tokens generated per sample (> 0)
  int n = 1;                       // parallel samples sharing the prompt's blocks (1..kMaxSamples)
  SamplingParams sampling;         // sample i draws with seed + i (when the seed is fixed)
  std::vector<std::string> stop;   // a sample ends when its text contains one of these (the text is cut before it)
  bool ignore_eos = false;         // keep generating past end-of-generation tokens
};

inline constexpr int kMaxSamples = 256;

enum class FinishReason {
  None,    // still generating
  Stop,    // an end-of-generation token or a stop string
  Length,  // max_tokens reached, or the sequence filled its context (or the whole KV cache)
  Error,   // the request could not run; RequestResult::error says why
};

struct Completion {
  std::vector<int32_t> tokens;  // [n_generated] generated ids (an end-of-generation token is not included)
  std::string text;             // their text, cut before a matched stop string
  FinishReason finish = FinishReason::None;
};

struct RequestResult {
  int64_t id = 0;
  std::vector<Completion> completions;  // [n] in sample order; empty when the request failed before running
  std::string error;                    // non-empty when the request failed
  int prompt_tokens = 0;
  int64_t completion_tokens = 0;        // over all samples
  double latency_seconds = 0;           // from submit() to the last sample's end
  double queue_seconds = 0;             // from submit() to the first admission
  int preemptions = 0;                  // times any of its sequences was preempted (and later recomputed)
};

inline const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::None: return "none";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Error: return "error";
  }
  return "none";
}

}  // namespace pagedllm
