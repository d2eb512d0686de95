#pragma once
// What the scheduler is asked to do (a GenerationRequest: a tokenized prompt, how much to generate, how to sample,
// how many samples), how it ends (FinishReason), what it hands back (a RequestResult: one Completion per sample),
// and the sink through which it streams. run, chat and batch all speak these.
#include <atomic>
#include <climits>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampler.h"

namespace pagedllm {

using RequestId = int64_t;
using SessionId = int64_t;
inline constexpr SessionId kNoSession = -1;
inline constexpr int kMaxSamples = 256;
inline constexpr int kUnlimitedTokens = INT_MAX;  // max_tokens for "until an end token or the context is full"

// Which logits a request's sink receives (TokenSink::on_logits), besides the tokens.
enum class LogitsWanted {
  None,
  Generated,  // the logits each generated token is drawn from
  All,        // those, and the logits after every prompt token (a perplexity needs them)
};

struct GenerationRequest {
  RequestId id = 0;                // the caller's handle; results carry it back
  std::vector<int32_t> prompt;     // [n_prompt] token ids, BOS included when the model wants one
  int max_tokens = 256;            // most tokens generated per sample (> 0; kUnlimitedTokens for no limit; 0 only
                                   // with LogitsWanted::All: score the prompt, generate nothing)
  int n = 1;                       // parallel samples sharing the prompt's blocks (1..kMaxSamples)
  SamplingParams sampling;         // sample i draws with seed + i (when the seed is fixed)
  std::vector<std::string> stop;   // a sample ends when its text contains one of these (the text is cut before it)
  bool ignore_eos = false;         // keep generating past end-of-generation tokens
  // A conversation kept in the cache between requests (Scheduler::open_session): the request continues the
  // session's sequence from the longest token prefix its prompt shares with it, and leaves its own K/V there.
  SessionId session = kNoSession;
  // Checked at every step; once true the request finishes as Cancelled (e.g. Ctrl-C). Must outlive the request.
  const std::atomic<bool>* cancel = nullptr;
  // Teacher forcing: when not empty, these are the generated tokens, in order, whatever the logits say (the sampler
  // is not consulted and end tokens do not stop it); the sample ends after them.
  std::vector<int32_t> forced_tokens;
  LogitsWanted logits = LogitsWanted::None;
};

enum class FinishReason {
  None,         // still generating
  Stop,         // an end-of-generation token or a stop string
  Length,       // max_tokens reached
  ContextFull,  // the sequence filled its context (-c)
  CacheFull,    // the sequence filled the whole KV cache, which is smaller than the context
  Cancelled,    // cancelled by the caller
  Error,        // the request could not run or failed; RequestResult::error says why
};

// "stop", "length", "context", "kv_cache_full", "cancelled", "error" ("none" while generating).
std::string_view finish_reason_name(FinishReason reason);

struct Completion {
  std::vector<int32_t> tokens;  // [n_generated] generated ids (an end-of-generation token is not included)
  std::string text;             // their text, cut before a matched stop string
  FinishReason finish = FinishReason::None;
};

struct RequestResult {
  RequestId id = 0;
  std::vector<Completion> completions;  // [n] in sample order; empty when the request failed before running
  std::string error;                    // non-empty when the request failed
  FinishReason failure = FinishReason::None;  // Error or Cancelled when the whole request ended so
  int prompt_tokens = 0;
  int reused_prompt_tokens = 0;         // prompt tokens whose K/V was already cached at admission (prefix or session)
  int64_t completion_tokens = 0;        // over all samples
  double latency_seconds = 0;           // from submit() to the last sample's end
  double queue_seconds = 0;             // from submit() to the first admission
  double first_token_seconds = 0;       // from submit() to the first sampled token
  int preemptions = 0;                  // times any of its sequences was preempted (and later recomputed)
};

// Where a request's output goes as it is made. Called on the thread that runs Scheduler::step().
class TokenSink {
 public:
  virtual ~TokenSink() = default;
  // New text of sample `sample` (never a split UTF-8 character; text that could still turn out to start a stop
  // string is held back until it cannot).
  virtual void on_text(RequestId id, int sample, std::string_view text) {
    (void)id;
    (void)sample;
    (void)text;
  }
  // With GenerationRequest::logits: the logits computed at `position` (the distribution of the token after it).
  // logits: [n_vocab], valid during the call.
  virtual void on_logits(RequestId id, int sample, int32_t position, std::span<const float> logits) {
    (void)id;
    (void)sample;
    (void)position;
    (void)logits;
  }
  // The request is over: every sample's completion, or the error.
  virtual void on_finish(RequestResult result) = 0;
};

}  // namespace pagedllm
