#pragma once
// The one driver of generation: run, chat and batch all submit requests here, and their text comes back through a
// TokenSink. Iteration-level (continuous) batching over one KV memory budget.
//
// Every step() builds one batched forward: running sequences that decode come first (one token each, oldest first),
// then prompt chunks of sequences still prefilling, then waiting requests join while the token budget
// (max_batch_tokens), the seat budget (max_seqs) and the free blocks allow. Sequences that finish leave at the end
// of the step, so the next one admits more. The scheduler is the only caller of the KV cache manager: it allocates
// every slot, builds the slot mapping and block tables, and hands them with the copy-on-write copies to the model
// runner, which only reads them.
//
// Memory: admission asks the cache manager for the blocks of the whole prompt (the prefix cache may supply some;
// a prompt whose first blocks a running sequence is still computing waits until they are registered);
// when a decoding sequence needs a block and none is free, the youngest running sequence is preempted: its blocks
// are freed and it goes back to the front of the waiting queue, to be recomputed from its prompt and the tokens it
// already generated (its sampler keeps its state, so the result does not change). Nothing fails for lack of
// blocks; a request fails only when it could never fit (a prompt longer than the context or the whole cache).
//
// n > 1: the prompt is prefilled once; its logits give every sample its first token, then the samples fork the
// prompt's blocks (copy-on-write on their first write into the shared last block).
//
// Sessions: a conversation (chat) keeps its sequence in the cache between requests. A request of a session starts
// from the longest common token prefix of its prompt and the session's cached tokens (the sequence is cut back to
// it, always leaving the last prompt token to compute), and when it ends, finished or cancelled, its sequence stays
// with the session. An idle session's sequence is given up when a request could not be admitted otherwise.
//
// KvLayout::Contiguous is the baseline of systems before paged attention: each sequence reserves blocks for the
// full context (n_ctx) at admission, so concurrency is bounded by reservations, not by tokens actually stored. The
// physical storage is still the paged cache; only admission and the usage figures follow the reservation.
//
// Not thread-safe: one thread submits and steps (a request's cancel flag may be set from anywhere).
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/model_runner.h"
#include "engine/request.h"
#include "tokenizer/tokenizer.h"

namespace pagedllm {

enum class KvLayout { Paged, Contiguous };

struct SchedulerConfig {
  int max_seqs = 64;           // sequences holding K/V at once (a request with n samples counts n)
  int max_batch_tokens = 512;  // tokens per forward: decodes first, prefill chunks fill the rest
  KvLayout layout = KvLayout::Paged;
  bool prefix_cache = false;   // register full prompt blocks and reuse them across requests (paged layout only)
};

struct SchedulerStats {
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t preempted_tokens = 0;    // K/V rows discarded by preemptions (recomputed later)
  int64_t requests_finished = 0;   // including failed ones
  int64_t requests_failed = 0;
  int64_t prompt_tokens = 0;       // of finished requests, once per request
  int64_t generated_tokens = 0;    // of finished requests, every sample
  int64_t sampled_tokens = 0;      // generated so far, finished or not (for progress)
  int64_t cache_full_samples = 0;  // samples that ended because the whole KV cache was full
  int peak_running = 0;            // sequences holding K/V at the same time
  int kv_blocks_total = 0;
  int peak_kv_blocks = 0;          // paged: blocks held; contiguous: blocks reserved
  int peak_shared_blocks = 0;
  // Sampled after every forward and summed, so the ratios below are averages over steps.
  int64_t sampled_steps = 0;
  int64_t allocated_slots = 0;     // paged: slots of held blocks; contiguous: slots of reserved blocks
  int64_t wasted_slots = 0;        // of those, slots holding no token
  int64_t logical_tokens = 0;      // tokens of every sequence (a shared prompt counts per sequence)
  int64_t stored_tokens = 0;       // tokens physically stored (a shared prompt counts once)

  double waste_percent() const {
    return allocated_slots == 0 ? 0.0 : 100.0 * static_cast<double>(wasted_slots) / static_cast<double>(allocated_slots);
  }
  // K/V memory that sharing (forks, prefix cache) saved against storing every sequence's tokens separately.
  double sharing_saved_percent() const {
    return logical_tokens == 0 ? 0.0
                               : 100.0 * (1.0 - static_cast<double>(stored_tokens) / static_cast<double>(logical_tokens));
  }
};

class Scheduler {
 public:
  // tokenizer: turns samples into text and knows the end-of-generation tokens; null gives token ids only (no text,
  // no end token, no stop strings). Throws pagedllm::Error when the configuration cannot run even one sequence.
  Scheduler(ModelRunner& runner, const Tokenizer* tokenizer, const SchedulerConfig& config);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request; `sink` (which must outlive it) receives its text and its end; without one, the result waits
  // in take_finished(). A request that can never run (empty prompt, token ids outside the vocabulary, a prompt
  // with no room to generate, bad parameters) finishes at once with an error result.
  void submit(GenerationRequest request, TokenSink* sink = nullptr);
  // Ends the request at the next step, as Cancelled. Unknown or finished ids are ignored.
  void cancel(RequestId id);

  SessionId open_session();
  // Gives the session's cached sequence back to the pool. A request of the session must not be running.
  void close_session(SessionId session);
  // Tokens whose K/V the session's sequence holds (empty when it holds none).
  std::vector<int32_t> session_tokens(SessionId session) const;

  // One iteration: plan, forward, sample, retire. False (and nothing done) when idle.
  bool step();
  // Steps until every request has finished; `after_step` (if set) is called after each.
  void run_until_idle(const std::function<void()>& after_step = {});
  bool idle() const { return running_.empty() && waiting_.empty(); }

  // Results of the requests finished since the last call without a sink, in the order they finished.
  std::vector<RequestResult> take_finished();

  int running_sequences() const { return static_cast<int>(running_.size()); }
  int waiting_sequences() const { return static_cast<int>(waiting_.size()); }
  // Blocks in use now: held (paged) or reserved (contiguous).
  int kv_blocks_in_use() const;
  // The longest a sequence may grow (prompt + generated): the context, or the whole cache when that is smaller.
  int max_sequence_tokens() const { return max_sequence_tokens_; }
  const SchedulerStats& stats() const { return stats_; }
  const SchedulerConfig& config() const { return config_; }
  const KvCacheManager& cache() const { return cache_; }
  // The cache as it was after the last forward, before that step's finished sequences let go of their blocks: what
  // a run's report describes.
  const CacheStats& cache_at_last_step() const { return last_step_cache_; }
  const ModelRunner& runner() const { return runner_; }
  ModelRunner& runner() { return runner_; }

  // Empty when the scheduler's bookkeeping agrees with the cache manager's (and the cache's own invariants hold),
  // else the first violation. For tests.
  std::string check_invariants() const;

 private:
  struct Sample;
  struct RequestState;
  struct Sequence;
  struct Session {
    SeqId sequence = -1;          // the cache's sequence while idle; -1 while a request uses it, or none is held
    std::vector<int32_t> tokens;  // [context_length] ids whose K/V it holds, when idle
    bool busy = false;            // a request of the session is queued or running
  };
  using Clock = std::chrono::steady_clock;

  struct Planned {
    Sequence* sequence;
    int n_tokens;
  };

  bool plan_step();  // fills plan_; false when nothing could be planned
  void schedule(Sequence& sequence, int n_tokens);
  int computed(const Sequence& sequence) const;
  int remaining(const Sequence& sequence) const;
  int tokens_that_fit(const Sequence& sequence, int wanted, int available_blocks) const;
  bool can_admit(const Sequence& sequence, int committed_blocks) const;
  bool prefix_in_flight(const Sequence& candidate) const;
  int admission_blocks(const Sequence& sequence) const;
  bool evict_idle_session(SessionId keep);
  void admit(std::unique_ptr<Sequence> sequence);
  void preempt(Sequence& sequence);
  // Gives the sequence's blocks back, or, with keep_for_session, leaves them (and its tokens) with its session.
  void release(Sequence& sequence, bool keep_for_session);
  void build_batch();
  void handle_logits(Sequence& sequence, std::span<const float> logits);
  bool accept_token(Sequence& sequence, int sample_index, int32_t token);
  void emit_text(RequestState& request, int sample_index, bool final);
  void finish_sample(RequestState& request, int sample_index, FinishReason reason);
  void finish_request(RequestState& request);
  void end_request_early(RequestState& request, FinishReason reason, const std::string& error);
  // Ends the requests whose cancel flag is set or whose cancel() was asked. Between steps (mid_step false) their
  // sequences leave at once; during one, at its end.
  void cancel_flagged(bool mid_step);
  void fail_request(GenerationRequest request, TokenSink* sink, std::string error, Clock::time_point submitted);
  void deliver(RequestResult result, TokenSink* sink);
  void record_usage();
  int reserved_blocks_per_sequence() const;

  ModelRunner& runner_;
  KvCacheManager cache_;
  const Tokenizer* tokenizer_;
  SchedulerConfig config_;
  int max_sequence_tokens_ = 0;
  bool cache_bound_ = false;  // the whole cache, not the context, limits a sequence's length
  int watermark_blocks_ = 0;  // kept free at admission so that running sequences can grow without preempting
  int64_t next_serial_ = 0;
  int64_t next_admission_ = 0;
  SessionId next_session_ = 0;
  int reserved_blocks_ = 0;  // contiguous layout: blocks reserved by running sequences

  std::unordered_map<int64_t, std::unique_ptr<RequestState>> requests_;  // unfinished requests by serial
  std::unordered_map<SessionId, Session> sessions_;
  std::deque<std::unique_ptr<Sequence>> waiting_;        // by (request serial, first sample): FIFO, preempted first
  std::vector<std::unique_ptr<Sequence>> running_;       // by admission: oldest first, youngest last
  std::vector<Planned> plan_;
  std::unique_ptr<ForwardBatch> batch_;
  struct PlannedRows {
    int first_logit_row;  // the chunk's first row in the forward's logits
    int n_logit_rows;     // all its rows (LogitsWanted::All), or its last one when it ends its tokens, or none
    bool ends_tokens;     // the chunk computes its sequence's last token: its last row is sampled from
  };
  std::vector<PlannedRows> plan_rows_;  // [plan_.size()]
  std::vector<RequestResult> finished_;
  std::vector<int64_t> finished_serials_;  // requests finished this step, erased from requests_ at its end
  std::vector<RequestId> cancel_requests_;
  SchedulerStats stats_;
  CacheStats last_step_cache_;
};

}  // namespace pagedllm
