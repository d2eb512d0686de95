#pragma once
// Perplexity of a model on a text, by the method llama.cpp's llama-perplexity uses, so that the two give the same
// number on the same file and settings: the text is tokenized once (BOS first when the model wants one), cut into
// consecutive chunks of n_ctx tokens (the tail that does not fill a chunk is dropped), and each chunk is evaluated
// from an empty cache with its first token replaced by BOS (when the model has one). Only the second half of a
// chunk is scored, so that every scored token has at least n_ctx/2 tokens of context: the logits at positions
// n_ctx/2 .. n_ctx-2 predict the tokens after them. PPL = exp(mean negative log-likelihood), and its error is the
// standard error of that mean carried through exp (ppl * sqrt(var(nll) / (count - 1))).
//
// The chunks are requests to the one driver (engine/scheduler.h) with LogitsWanted::All and nothing generated;
// several chunks may share a forward when the batch allows.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace pagedllm {

class Scheduler;

// -log softmax(logits)[target]: the negative log-likelihood of `target` under one row of logits.
// logits: [n_vocab]. The maximum is taken in float and the sum of exponentials in double, as llama-perplexity does.
double token_nll(std::span<const float> logits, int32_t target);

// Running sums of the scored tokens' negative log-likelihoods.
struct NllTotals {
  double nll = 0;   // sum of nll
  double nll2 = 0;  // sum of nll^2
  int64_t count = 0;

  void add(const NllTotals& other) {
    nll += other.nll;
    nll2 += other.nll2;
    count += other.count;
  }
  double perplexity() const;  // exp(nll / count); 0 when nothing was scored
  // The standard error of the perplexity (0 when fewer than two tokens or no spread).
  double perplexity_error() const;
};

struct PerplexityPlan {
  int n_ctx = 512;      // tokens per chunk (>= 3: a chunk must score at least one token)
  int max_chunks = -1;  // at most this many chunks; -1: every whole chunk of the text
};

// Throws pagedllm::Error naming -c when n_ctx is too small to score a token, or --chunks when it is neither
// positive nor -1.
void check_perplexity_plan(const PerplexityPlan& plan);

// The chunks `plan` gives `n_tokens` tokens: min(max_chunks, n_tokens / n_ctx). Throws pagedllm::Error as
// check_perplexity_plan does, and naming the text when it holds fewer than 2 * n_ctx tokens (the least
// llama-perplexity accepts).
int perplexity_chunks(int64_t n_tokens, const PerplexityPlan& plan);

struct PerplexityChunk {
  int index = 0;         // 0-based, in text order
  NllTotals chunk;       // this chunk's scored tokens
  NllTotals running;     // chunks 0..index together
};

// Evaluates the chunks on `scheduler` (whose runner's context must hold n_ctx tokens); `tokens` is the whole
// tokenized text, BOS included; `bos` is the model's BOS id, or -1 for a model that adds none. `on_chunk` is called
// once per chunk, in text order, as soon as it and every earlier chunk are done; `after_step` (if set) after every
// forward (for a progress display). Returns the totals over all chunks. Throws pagedllm::Error when a chunk fails
// (its message says why).
NllTotals evaluate_perplexity(Scheduler& scheduler, std::span<const int32_t> tokens, int32_t bos,
                              const PerplexityPlan& plan, const std::function<void(const PerplexityChunk&)>& on_chunk,
                              const std::function<void()>& after_step = {});

}  // namespace pagedllm
