#include "engine/scheduler.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>

#include <fmt/format.h>

#include "common/error.h"
#include "kernels/backend.h"

namespace pagedllm {

std::string_view finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::None: return "none";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::ContextFull: return "context";
    case FinishReason::CacheFull: return "kv_cache_full";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
  }
  return "none";
}

struct Scheduler::Sample {
  std::vector<int32_t> generated;  // [n_generated]
  std::string text;
  size_t emitted = 0;              // bytes of `text` already handed to the sink
  std::unique_ptr<Sampler> sampler;                  // from the first admission to the end (keeps its RNG state
  std::unique_ptr<StreamingDetokenizer> detokenizer; // across preemptions)
  FinishReason finish = FinishReason::None;
  bool cut_at_stop_string = false;
};

struct Scheduler::RequestState {
  GenerationRequest request;
  TokenSink* sink = nullptr;
  int64_t serial = 0;
  std::vector<Sample> samples;  // [n]
  int unfinished = 0;
  size_t longest_stop = 0;      // bytes of the longest stop string
  Clock::time_point submitted;
  Clock::time_point first_admitted;
  Clock::time_point first_token;
  bool admitted = false;
  bool sampled = false;
  int reused_prompt_tokens = 0;
  int preemptions = 0;
  std::string error;            // set when the request ends early with an error
  FinishReason failure = FinishReason::None;
};

// What the scheduler runs: the K/V of one token stream. Before a request's first token is sampled its n samples
// share one sequence (the prompt); afterwards each sample has its own (forked) sequence.
struct Scheduler::Sequence {
  RequestState* request = nullptr;
  std::vector<int> samples;      // indices into request->samples: all n until the first token, then one
  std::vector<int32_t> tokens;   // [n_tokens] prompt + this sample's generated ids: what its K/V must hold
  SeqId id = -1;                 // the cache manager's sequence while running, -1 while waiting
  int64_t admission = 0;         // admission counter: larger is younger
  int reserved_blocks = 0;       // contiguous layout: blocks reserved for it
  bool scheduled = false;        // in this step's plan
  bool done = false;             // finished this step; leaves running_ at the end of it

  // Queue order: requests first come first served; a preempted sample rejoins where its request stands.
  std::pair<int64_t, int> order() const { return {request->serial, samples.front()}; }
};

Scheduler::Scheduler(ModelRunner& runner, const Tokenizer* tokenizer, const SchedulerConfig& config)
    : runner_(runner),
      cache_(runner.num_blocks(), runner.block_size(), config.prefix_cache && config.layout == KvLayout::Paged),
      tokenizer_(tokenizer),
      config_(config),
      batch_(std::make_unique<ForwardBatch>()) {
  if (config.max_seqs < 1) fail("--max-seqs {} must be at least 1", config.max_seqs);
  if (config.max_batch_tokens < 1) fail("--max-batch-tokens {} must be at least 1", config.max_batch_tokens);
  const int64_t cache_tokens = static_cast<int64_t>(cache_.num_blocks()) * cache_.block_size();
  max_sequence_tokens_ = static_cast<int>(std::min<int64_t>(runner.n_ctx(), cache_tokens));
  cache_bound_ = cache_tokens < runner.n_ctx();
  if (config.layout == KvLayout::Contiguous) {
    if (reserved_blocks_per_sequence() > cache_.num_blocks()) {
      fail("--kv-layout contiguous reserves {} blocks per sequence (a context of {} tokens) but the KV cache holds "
           "only {} blocks; lower -c or raise --kv-mem",
           reserved_blocks_per_sequence(), runner.n_ctx(), cache_.num_blocks());
    }
  } else {
    // vLLM's 1% watermark: admitting into the last free blocks only to preempt at the next decode wastes prefill.
    watermark_blocks_ = cache_.num_blocks() / 100;
  }
  stats_.kv_blocks_total = cache_.num_blocks();
}

Scheduler::~Scheduler() = default;

int Scheduler::reserved_blocks_per_sequence() const { return cache_.blocks_for_tokens(runner_.n_ctx()); }

int Scheduler::kv_blocks_in_use() const {
  if (config_.layout == KvLayout::Contiguous) return reserved_blocks_;
  return cache_.num_blocks() - cache_.free_blocks();
}

int Scheduler::computed(const Sequence& sequence) const {
  return sequence.id >= 0 ? cache_.context_length(sequence.id) : 0;
}

int Scheduler::remaining(const Sequence& sequence) const {
  return static_cast<int>(sequence.tokens.size()) - computed(sequence);
}

// ------------------------------------------------------------------------------------------------ requests

void Scheduler::submit(GenerationRequest request, TokenSink* sink) {
  const Clock::time_point now = Clock::now();
  const auto n_prompt = static_cast<int64_t>(request.prompt.size());
  const int32_t n_vocab = static_cast<int32_t>(runner_.model().config.n_vocab);
  std::string error;
  auto session = sessions_.end();
  if (request.session != kNoSession) session = sessions_.find(request.session);
  if (request.n < 1 || request.n > kMaxSamples) {
    error = fmt::format("n = {} is out of range (1..{})", request.n, kMaxSamples);
  } else if (request.max_tokens < 1 && !(request.max_tokens == 0 && request.logits == LogitsWanted::All)) {
    error = fmt::format("max_tokens = {} must be a positive number of tokens", request.max_tokens);
  } else if (request.prompt.empty()) {
    error = "the prompt is empty and the model adds no BOS token: nothing to condition on";
  } else if (n_prompt > max_sequence_tokens_ || (n_prompt == max_sequence_tokens_ && request.max_tokens != 0)) {
    // A request that only scores its prompt (max_tokens 0) may fill the sequence: nothing comes after it.
    error = fmt::format("the prompt is {} tokens, which leaves no room to generate: a sequence may hold at most {} "
                        "tokens ({})", n_prompt, max_sequence_tokens_,
                        cache_bound_ ? "the whole KV cache; raise --kv-mem" : "the context; raise -c");
  } else if (auto bad = std::find_if(request.prompt.begin(), request.prompt.end(),
                                     [&](int32_t id) { return id < 0 || id >= n_vocab; });
             bad != request.prompt.end()) {
    error = fmt::format("prompt token id {} is outside the vocabulary of {} tokens", *bad, n_vocab);
  } else if (std::any_of(request.stop.begin(), request.stop.end(), [](const std::string& s) { return s.empty(); })) {
    error = "a stop string is empty";
  } else if (request.session != kNoSession && (session == sessions_.end() || session->second.busy)) {
    error = session == sessions_.end() ? "the session does not exist" : "the session is already generating";
  } else if (request.session != kNoSession && request.n != 1) {
    error = "a request that continues a session draws one sample";
  } else if (!request.forced_tokens.empty() && request.n != 1) {
    error = "a request with forced tokens draws one sample";
  } else if (auto bad_forced = std::find_if(request.forced_tokens.begin(), request.forced_tokens.end(),
                                            [&](int32_t id) { return id < 0 || id >= n_vocab; });
             bad_forced != request.forced_tokens.end()) {
    error = fmt::format("forced token id {} is outside the vocabulary of {} tokens", *bad_forced, n_vocab);
  } else {
    try {
      validate_sampling_params(request.sampling);
    } catch (const Error& e) {
      error = e.what();
    }
  }
  if (!error.empty()) {
    fail_request(std::move(request), sink, std::move(error), now);
    return;
  }
  if (session != sessions_.end()) session->second.busy = true;

  auto state = std::make_unique<RequestState>();
  state->serial = next_serial_++;
  state->sink = sink;
  state->submitted = now;
  state->samples.resize(static_cast<size_t>(request.n));
  state->unfinished = request.n;
  for (const std::string& stop : request.stop) state->longest_stop = std::max(state->longest_stop, stop.size());
  state->request = std::move(request);

  auto sequence = std::make_unique<Sequence>();
  sequence->request = state.get();
  for (int i = 0; i < state->request.n; ++i) sequence->samples.push_back(i);
  sequence->tokens = state->request.prompt;
  // Serials only grow, so the newest request belongs at the back.
  waiting_.push_back(std::move(sequence));
  requests_.emplace(state->serial, std::move(state));
}

void Scheduler::cancel(RequestId id) { cancel_requests_.push_back(id); }

void Scheduler::fail_request(GenerationRequest request, TokenSink* sink, std::string error,
                             Clock::time_point submitted) {
  RequestResult result;
  result.id = request.id;
  result.error = std::move(error);
  result.failure = FinishReason::Error;
  result.prompt_tokens = static_cast<int>(request.prompt.size());
  result.latency_seconds = std::chrono::duration<double>(Clock::now() - submitted).count();
  stats_.requests_finished += 1;
  stats_.requests_failed += 1;
  deliver(std::move(result), sink);
}

void Scheduler::deliver(RequestResult result, TokenSink* sink) {
  if (sink != nullptr) {
    sink->on_finish(std::move(result));
  } else {
    finished_.push_back(std::move(result));
  }
}

std::vector<RequestResult> Scheduler::take_finished() {
  std::vector<RequestResult> out;
  out.swap(finished_);
  return out;
}

// ------------------------------------------------------------------------------------------------ sessions

SessionId Scheduler::open_session() {
  const SessionId id = next_session_++;
  sessions_.emplace(id, Session{});
  return id;
}

void Scheduler::close_session(SessionId id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return;
  if (it->second.busy) fail("internal: closing a session while its request runs");
  if (it->second.sequence >= 0) cache_.release(it->second.sequence);
  sessions_.erase(it);
}

std::vector<int32_t> Scheduler::session_tokens(SessionId id) const {
  auto it = sessions_.find(id);
  if (it == sessions_.end() || it->second.sequence < 0) return {};
  return it->second.tokens;
}

bool Scheduler::evict_idle_session(SessionId keep) {
  for (auto& [id, session] : sessions_) {
    if (id == keep || session.sequence < 0) continue;
    cache_.release(session.sequence);
    session.sequence = -1;
    session.tokens.clear();
    return true;
  }
  return false;
}

// ------------------------------------------------------------------------------------------------ planning

void Scheduler::schedule(Sequence& sequence, int n_tokens) {
  sequence.scheduled = true;
  plan_.push_back(Planned{&sequence, n_tokens});
}

int Scheduler::tokens_that_fit(const Sequence& sequence, int wanted, int available_blocks) const {
  if (wanted <= 0 || available_blocks < 0) return 0;
  if (cache_.blocks_needed(sequence.id, wanted) <= available_blocks) return wanted;
  // Fill the free slots of the blocks it holds, then as many new blocks as are available.
  const int held = static_cast<int>(cache_.block_table(sequence.id).size());
  const int slack = held * cache_.block_size() - cache_.context_length(sequence.id);
  int n = static_cast<int>(
      std::min<int64_t>(wanted, slack + static_cast<int64_t>(available_blocks) * cache_.block_size()));
  // A shared last block needs one more for its copy: shrink until it fits.
  while (n > 0 && cache_.blocks_needed(sequence.id, n) > available_blocks) n = std::max(0, n - cache_.block_size());
  return n;
}

bool Scheduler::prefix_in_flight(const Sequence& candidate) const {
  const auto block_size = static_cast<size_t>(cache_.block_size());
  // match_prefix never attaches the last token: only full blocks before it can be shared.
  const size_t shareable = (candidate.tokens.size() - 1) / block_size * block_size;
  if (shareable == 0) return false;
  for (const auto& s : running_) {
    if (remaining(*s) <= 1) continue;  // its full prompt blocks are computed and registered already
    const size_t limit = std::min(shareable, s->tokens.size());
    const auto mismatch = std::mismatch(candidate.tokens.begin(), candidate.tokens.begin() + static_cast<long>(limit),
                                        s->tokens.begin());
    const size_t common_blocks = static_cast<size_t>(mismatch.first - candidate.tokens.begin()) / block_size;
    if (common_blocks > 0 && static_cast<size_t>(computed(*s)) < common_blocks * block_size) return true;
  }
  return false;
}

// Blocks a waiting sequence takes from the free pool at admission: its whole prompt, less what its session's
// sequence already holds (plus one for a copy of a partly kept block).
int Scheduler::admission_blocks(const Sequence& sequence) const {
  const int prompt_blocks = cache_.blocks_for_tokens(static_cast<int>(sequence.tokens.size()));
  const SessionId session_id = sequence.request->request.session;
  if (session_id == kNoSession) return prompt_blocks;
  const Session& session = sessions_.at(session_id);
  if (session.sequence < 0) return prompt_blocks;
  const int held = static_cast<int>(cache_.block_table(session.sequence).size());
  return std::max(0, prompt_blocks - held) + 1;
}

bool Scheduler::can_admit(const Sequence& sequence, int committed_blocks) const {
  // An empty machine always admits the oldest request: submit() made sure a lone sequence fits, and idle
  // sessions were given up for it first.
  if (running_.empty()) return true;
  // A prompt whose first blocks another sequence is computing right now waits for them to be registered (a step or
  // a few), rather than computing and storing them a second time.
  if (cache_.prefix_caching() && prefix_in_flight(sequence)) return false;
  int seats = 0;
  for (const auto& s : running_) seats += static_cast<int>(s->samples.size());
  if (seats + static_cast<int>(sequence.samples.size()) > config_.max_seqs) return false;
  // The whole prompt must fit beside what running sequences still need for theirs. Prefix-cache hits are not
  // credited: a hit on a cached (unheld) block takes that block from the free pool just the same.
  if (admission_blocks(sequence) + watermark_blocks_ > cache_.free_blocks() - committed_blocks) return false;
  if (config_.layout == KvLayout::Contiguous) {
    const int reservation = reserved_blocks_per_sequence() * static_cast<int>(sequence.samples.size());
    if (reserved_blocks_ + reservation > cache_.num_blocks()) return false;
  }
  return true;
}

void Scheduler::admit(std::unique_ptr<Sequence> sequence) {
  RequestState& request = *sequence->request;
  const bool first_admission = !request.admitted;
  if (first_admission) {
    request.admitted = true;
    request.first_admitted = Clock::now();
    for (size_t i = 0; i < request.samples.size(); ++i) {
      SamplingParams params = request.request.sampling;
      if (params.seed != kRandomSeed) params.seed += i;  // distinct but reproducible streams, as `run --parallel`
      request.samples[i].sampler = std::make_unique<Sampler>(params);
      if (tokenizer_ != nullptr) request.samples[i].detokenizer = std::make_unique<StreamingDetokenizer>(*tokenizer_);
    }
  }
  const SessionId session_id = request.request.session;
  Session* session = session_id == kNoSession ? nullptr : &sessions_.at(session_id);
  int reused = 0;
  if (session != nullptr && session->sequence >= 0) {
    // Continue the conversation: keep the longest common token prefix, but always compute the last prompt token.
    const std::vector<int32_t>& cached = session->tokens;
    const size_t comparable = std::min(cached.size(), sequence->tokens.size() - 1);
    size_t common = 0;
    while (common < comparable && cached[common] == sequence->tokens[common]) ++common;
    sequence->id = session->sequence;
    session->sequence = -1;
    session->tokens.clear();
    cache_.truncate(sequence->id, static_cast<int>(common));
    reused = static_cast<int>(common);
  } else {
    sequence->id = cache_.create_sequence();
    reused = cache_.match_prefix(sequence->id, sequence->tokens);
  }
  if (first_admission) request.reused_prompt_tokens = reused;
  sequence->admission = next_admission_++;
  if (config_.layout == KvLayout::Contiguous) {
    sequence->reserved_blocks = reserved_blocks_per_sequence() * static_cast<int>(sequence->samples.size());
    reserved_blocks_ += sequence->reserved_blocks;
  }
  running_.push_back(std::move(sequence));
}

void Scheduler::release(Sequence& sequence, bool keep_for_session) {
  if (sequence.id >= 0) {
    const SessionId session_id = sequence.request->request.session;
    if (keep_for_session && session_id != kNoSession) {
      // The conversation's K/V stays for its next request: the tokens computed so far.
      Session& session = sessions_.at(session_id);
      session.sequence = sequence.id;
      session.tokens.assign(sequence.tokens.begin(), sequence.tokens.begin() + computed(sequence));
    } else {
      cache_.release(sequence.id);
    }
  }
  sequence.id = -1;
  reserved_blocks_ -= sequence.reserved_blocks;
  sequence.reserved_blocks = 0;
}

void Scheduler::preempt(Sequence& sequence) {
  stats_.preemptions += 1;
  stats_.preempted_tokens += computed(sequence);
  sequence.request->preemptions += 1;
  release(sequence, /*keep_for_session=*/false);
  sequence.scheduled = false;
  auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& s) { return s.get() == &sequence; });
  std::unique_ptr<Sequence> owned = std::move(*it);
  running_.erase(it);
  // Back to the front of the queue, in request order: it arrived before everything that never ran.
  auto position = std::upper_bound(waiting_.begin(), waiting_.end(), owned->order(),
                                   [](const auto& order, const auto& s) { return order < s->order(); });
  waiting_.insert(position, std::move(owned));
}

bool Scheduler::plan_step() {
  plan_.clear();
  for (auto& s : running_) s->scheduled = false;
  int budget = config_.max_batch_tokens;
  int promised = 0;          // blocks this step's planned work takes from the free pool
  int promised_decodes = 0;  // of those, for decodes
  auto available = [&] { return cache_.free_blocks() - promised; };

  // 1. Decodes, oldest first. One that needs a block when none is free preempts the youngest running sequence.
  //    Everything after index i is unvisited, so the youngest (the back) is never already planned; when it is the
  //    decode itself, that decode is the one preempted.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    Sequence& s = *running_[i];
    if (remaining(s) != 1) continue;
    int need = cache_.blocks_needed(s.id, 1);
    bool preempted_itself = false;
    while (need > available()) {
      if (evict_idle_session(kNoSession)) {
        need = cache_.blocks_needed(s.id, 1);
        continue;
      }
      Sequence& victim = *running_.back();
      preempted_itself = &victim == &s;
      preempt(victim);
      if (preempted_itself) break;
      need = cache_.blocks_needed(s.id, 1);
    }
    if (preempted_itself) break;
    schedule(s, 1);
    promised += need;
    promised_decodes += need;
    budget -= 1;
  }

  // 2. Prompt chunks of sequences still prefilling, oldest first, as far as tokens and blocks allow.
  int outstanding_prefill = 0;  // blocks prefilling sequences will still take to finish their prompts
  for (auto& p : running_) {
    Sequence& s = *p;
    if (s.scheduled || remaining(s) <= 0) continue;
    outstanding_prefill += cache_.blocks_needed(s.id, remaining(s));
    if (budget <= 0) continue;
    const int n = tokens_that_fit(s, std::min(budget, remaining(s)), available());
    if (n == 0) continue;
    promised += cache_.blocks_needed(s.id, n);
    schedule(s, n);
    budget -= n;
  }

  // 3. Waiting sequences join, first come first served (no overtaking: a big prompt is not starved by small ones).
  //    An idle session's cached conversation is given up when it is all that keeps the next one out.
  while (!waiting_.empty() && budget > 0) {
    const Sequence& front = *waiting_.front();
    while (admission_blocks(front) + watermark_blocks_ > available() &&
           evict_idle_session(front.request->request.session)) {
    }
    if (!can_admit(front, promised_decodes + outstanding_prefill)) break;
    std::unique_ptr<Sequence> next = std::move(waiting_.front());
    waiting_.pop_front();
    admit(std::move(next));
    Sequence& s = *running_.back();
    outstanding_prefill += cache_.blocks_needed(s.id, remaining(s));
    const int n = tokens_that_fit(s, std::min(budget, remaining(s)), available());
    if (n == 0) continue;
    promised += cache_.blocks_needed(s.id, n);
    schedule(s, n);
    budget -= n;
  }

  if (!plan_.empty()) return true;
  // Nothing fits: prefilling sequences hold the blocks each other need. Free the youngest and plan again.
  if (!running_.empty()) preempt(*running_.back());
  return false;
}

// ------------------------------------------------------------------------------------------------ running

void Scheduler::build_batch() {
  ForwardBatch& batch = *batch_;
  batch.clear();
  plan_rows_.clear();
  for (const Planned& p : plan_) {
    Sequence& s = *p.sequence;
    const int first_position = computed(s);
    const std::optional<std::vector<int32_t>> slots = cache_.append_slots(s.id, p.n_tokens);
    if (!slots) throw std::logic_error("scheduler: the KV cache ran out of blocks inside a planned step");
    SeqView view;
    view.first_row = batch.n_tokens();
    view.n_new = p.n_tokens;
    view.context_length = first_position + p.n_tokens;
    for (int i = 0; i < p.n_tokens; ++i) {
      batch.tokens.push_back(s.tokens[static_cast<size_t>(first_position + i)]);
      batch.positions.push_back(first_position + i);
      batch.slot_mapping.push_back((*slots)[static_cast<size_t>(i)]);
    }
    PlannedRows rows{static_cast<int>(batch.logit_rows.size()), 0,
                     view.context_length == static_cast<int>(s.tokens.size())};
    const int first_row = view.first_row;
    if (s.request->request.logits == LogitsWanted::All) {
      for (int i = 0; i < p.n_tokens; ++i) batch.logit_rows.push_back(first_row + i);
      rows.n_logit_rows = p.n_tokens;
    } else if (rows.ends_tokens) {
      batch.logit_rows.push_back(first_row + p.n_tokens - 1);
      rows.n_logit_rows = 1;
    }
    plan_rows_.push_back(rows);
    batch.seqs.push_back(view);
  }
  // Block tables are read only after every append: an append can reallocate a table's storage.
  for (size_t i = 0; i < plan_.size(); ++i) batch.seqs[i].block_table = cache_.block_table(plan_[i].sequence->id);
}

bool Scheduler::step() {
  cancel_flagged(/*mid_step=*/false);
  if (idle()) return false;
  const size_t attempts_allowed = running_.size() + waiting_.size() + 2;
  for (size_t attempt = 0; !plan_step(); ++attempt) {
    if (attempt >= attempts_allowed) throw std::logic_error("scheduler: no sequence can make progress");
  }
  stats_.steps += 1;

  build_batch();
  const std::vector<BlockCopy> copies = cache_.take_pending_copies();
  std::span<const float> logits;
  try {
    logits = runner_.run(*batch_, copies);
  } catch (const Error& e) {
    // What a failed forward left in the cache cannot be trusted: every request of the batch fails with its message.
    for (const Planned& p : plan_) {
      if (p.sequence->request->unfinished > 0) end_request_early(*p.sequence->request, FinishReason::Error, e.what());
    }
    std::erase_if(running_, [](const auto& s) { return s->done; });
    for (int64_t serial : finished_serials_) requests_.erase(serial);
    finished_serials_.clear();
    return true;
  }
  for (const Planned& p : plan_) {
    const Sequence& s = *p.sequence;
    const int end = computed(s);
    cache_.commit_tokens(s.id, std::span<const int32_t>(s.tokens).subspan(static_cast<size_t>(end - p.n_tokens),
                                                                         static_cast<size_t>(p.n_tokens)));
  }
  stats_.peak_running = std::max(stats_.peak_running, static_cast<int>(running_.size()));
  record_usage();
  // Asked for during the forward: nothing more is sampled or shown for those requests.
  cancel_flagged(/*mid_step=*/true);

  const auto n_vocab = static_cast<size_t>(runner_.model().config.n_vocab);
  auto logits_row = [&](int row) { return logits.subspan(static_cast<size_t>(row) * n_vocab, n_vocab); };
  for (size_t i = 0; i < plan_.size(); ++i) {
    Sequence& s = *plan_[i].sequence;
    const PlannedRows& rows = plan_rows_[i];
    if (s.done || rows.n_logit_rows == 0) continue;
    // LogitsWanted::All: every row but the one sampled from (handle_logits reports that one).
    const int reported = rows.n_logit_rows - (rows.ends_tokens ? 1 : 0);
    if (reported > 0 && s.request->sink != nullptr) {
      const int first_position = computed(s) - plan_[i].n_tokens;
      for (int k = 0; k < reported; ++k) {
        s.request->sink->on_logits(s.request->request.id, s.samples.front(), first_position + k,
                                   logits_row(rows.first_logit_row + k));
      }
    }
    if (rows.ends_tokens) handle_logits(s, logits_row(rows.first_logit_row + rows.n_logit_rows - 1));
  }
  stats_.peak_running = std::max(stats_.peak_running, static_cast<int>(running_.size()));
  std::erase_if(running_, [](const auto& s) { return s->done; });
  // Finished requests go last: sequences of this step pointed at them until now.
  for (int64_t serial : finished_serials_) requests_.erase(serial);
  finished_serials_.clear();
  return true;
}

void Scheduler::run_until_idle(const std::function<void()>& after_step) {
  while (step()) {
    if (after_step) after_step();
  }
}

void Scheduler::cancel_flagged(bool mid_step) {
  std::vector<RequestState*> cancelled;
  for (auto& [serial, request] : requests_) {
    if (request->unfinished == 0) continue;
    const bool flagged = request->request.cancel != nullptr && request->request.cancel->load();
    const bool asked = std::find(cancel_requests_.begin(), cancel_requests_.end(), request->request.id) !=
                       cancel_requests_.end();
    if (flagged || asked) cancelled.push_back(request.get());
  }
  cancel_requests_.clear();
  for (RequestState* request : cancelled) end_request_early(*request, FinishReason::Cancelled, "");
  if (cancelled.empty() || mid_step) return;
  std::erase_if(running_, [](const auto& s) { return s->done; });
  for (int64_t serial : finished_serials_) requests_.erase(serial);
  finished_serials_.clear();
}

void Scheduler::end_request_early(RequestState& request, FinishReason reason, const std::string& error) {
  if (!error.empty() && request.error.empty()) request.error = error;
  if (reason == FinishReason::Error) request.failure = FinishReason::Error;
  for (auto& s : running_) {
    if (s->request != &request || s->done) continue;
    s->done = true;
    // A cancelled conversation keeps what it computed; an error leaves nothing trustworthy behind.
    release(*s, /*keep_for_session=*/reason == FinishReason::Cancelled);
  }
  std::erase_if(waiting_, [&](const auto& s) { return s->request == &request; });
  for (size_t i = 0; i < request.samples.size(); ++i) {
    if (request.samples[i].finish == FinishReason::None) finish_sample(request, static_cast<int>(i), reason);
  }
}

void Scheduler::handle_logits(Sequence& sequence, std::span<const float> logits) {
  RequestState& request = *sequence.request;
  if (!std::all_of(logits.begin(), logits.end(), [](float v) { return std::isfinite(v); })) {
    end_request_early(request, FinishReason::Error,
                      fmt::format("the model computed non-finite logits (NaN or infinity) at position {}: its weights "
                                  "or settings are broken", sequence.tokens.size() - 1));
    return;
  }
  if (!request.sampled) {
    request.sampled = true;
    request.first_token = Clock::now();
  }
  const GenerationRequest& r = request.request;
  if (r.logits != LogitsWanted::None && request.sink != nullptr) {
    for (int sample : sequence.samples) {
      request.sink->on_logits(r.id, sample, static_cast<int32_t>(sequence.tokens.size()) - 1, logits);
    }
  }
  if (r.max_tokens == 0) {  // scoring only: the prompt's logits were the point
    sequence.done = true;
    release(sequence, /*keep_for_session=*/true);
    for (int sample : sequence.samples) finish_sample(request, sample, FinishReason::Length);
    return;
  }
  if (sequence.samples.size() == 1) {
    const int sample = sequence.samples.front();
    Sample& state = request.samples[static_cast<size_t>(sample)];
    const bool forced = !r.forced_tokens.empty();
    const int32_t token = forced ? r.forced_tokens[state.generated.size()] : state.sampler->sample(logits, sequence.tokens);
    if (accept_token(sequence, sample, token)) {
      sequence.done = true;
      release(sequence, /*keep_for_session=*/true);
    }
    return;
  }

  // The prompt's logits give every sample its first token; then the samples fork the prompt's blocks.
  std::vector<int32_t> first_tokens;  // [n_samples]
  for (int sample : sequence.samples) {
    first_tokens.push_back(request.samples[static_cast<size_t>(sample)].sampler->sample(logits, sequence.tokens));
  }
  std::vector<Sequence*> forks{&sequence};  // [n_samples]
  auto position = std::find_if(running_.begin(), running_.end(), [&](const auto& s) { return s.get() == &sequence; });
  const int reservation_each = sequence.reserved_blocks / static_cast<int>(sequence.samples.size());
  for (size_t k = 1; k < sequence.samples.size(); ++k) {
    auto child = std::make_unique<Sequence>();
    child->request = &request;
    child->samples = {sequence.samples[k]};
    child->tokens = sequence.tokens;
    child->id = cache_.fork(sequence.id);
    child->admission = sequence.admission;  // as old as its parent: preemption takes younger requests first
    child->reserved_blocks = reservation_each;
    child->scheduled = true;
    forks.push_back(child.get());
    position = running_.insert(std::next(position), std::move(child));
  }
  sequence.reserved_blocks = reservation_each;
  sequence.samples.resize(1);
  for (size_t k = 0; k < forks.size(); ++k) {
    Sequence& s = *forks[k];
    if (accept_token(s, s.samples.front(), first_tokens[k])) {
      s.done = true;
      release(s, /*keep_for_session=*/true);
    }
  }
}

bool Scheduler::accept_token(Sequence& sequence, int sample_index, int32_t token) {
  RequestState& request = *sequence.request;
  Sample& sample = request.samples[static_cast<size_t>(sample_index)];
  const GenerationRequest& r = request.request;
  const bool forced = !r.forced_tokens.empty();
  if (!forced && !r.ignore_eos && tokenizer_ != nullptr && tokenizer_->is_end_of_generation(token)) {
    finish_sample(request, sample_index, FinishReason::Stop);
    return true;
  }
  sample.generated.push_back(token);
  sequence.tokens.push_back(token);
  stats_.sampled_tokens += 1;
  if (sample.detokenizer) {
    const size_t old_size = sample.text.size();
    sample.text += sample.detokenizer->push(token);
    if (!r.stop.empty() && sample.text.size() > old_size) {
      // A match must end in the new text (an earlier one would have stopped the sample already).
      const size_t from = old_size + 1 > request.longest_stop ? old_size + 1 - request.longest_stop : 0;
      size_t cut = std::string::npos;
      for (const std::string& stop : r.stop) cut = std::min(cut, sample.text.find(stop, from));
      if (cut != std::string::npos) {
        sample.text.resize(cut);
        sample.cut_at_stop_string = true;
        finish_sample(request, sample_index, FinishReason::Stop);
        return true;
      }
    }
    emit_text(request, sample_index, /*final=*/false);
  }
  if (static_cast<int>(sample.generated.size()) >= r.max_tokens ||
      (forced && sample.generated.size() >= r.forced_tokens.size())) {
    finish_sample(request, sample_index, FinishReason::Length);
    return true;
  }
  if (static_cast<int>(sequence.tokens.size()) >= max_sequence_tokens_) {
    if (cache_bound_) stats_.cache_full_samples += 1;
    finish_sample(request, sample_index, cache_bound_ ? FinishReason::CacheFull : FinishReason::ContextFull);
    return true;
  }
  return false;
}

void Scheduler::emit_text(RequestState& request, int sample_index, bool final) {
  Sample& sample = request.samples[static_cast<size_t>(sample_index)];
  if (request.sink == nullptr) return;
  // Text that could still be the start of a stop string is held back until the sample ends or moves past it.
  const size_t held = final || request.longest_stop == 0 ? 0 : request.longest_stop - 1;
  const size_t safe = sample.text.size() > held ? sample.text.size() - held : 0;
  if (safe <= sample.emitted) return;
  request.sink->on_text(request.request.id, sample_index,
                        std::string_view(sample.text).substr(sample.emitted, safe - sample.emitted));
  sample.emitted = safe;
}

void Scheduler::finish_sample(RequestState& request, int sample_index, FinishReason reason) {
  Sample& sample = request.samples[static_cast<size_t>(sample_index)];
  sample.finish = reason;
  if (sample.detokenizer && !sample.cut_at_stop_string) sample.text += sample.detokenizer->flush();
  emit_text(request, sample_index, /*final=*/true);
  sample.sampler.reset();
  sample.detokenizer.reset();
  if (--request.unfinished == 0) finish_request(request);
}

void Scheduler::finish_request(RequestState& request) {
  const Clock::time_point now = Clock::now();
  RequestResult result;
  result.id = request.request.id;
  result.prompt_tokens = static_cast<int>(request.request.prompt.size());
  result.reused_prompt_tokens = request.reused_prompt_tokens;
  for (Sample& sample : request.samples) {
    result.completion_tokens += static_cast<int64_t>(sample.generated.size());
    result.completions.push_back(Completion{std::move(sample.generated), std::move(sample.text), sample.finish});
  }
  result.error = request.error;
  result.failure = request.failure;
  auto since_submit = [&](Clock::time_point t) { return std::chrono::duration<double>(t - request.submitted).count(); };
  result.latency_seconds = since_submit(now);
  result.queue_seconds = request.admitted ? since_submit(request.first_admitted) : result.latency_seconds;
  result.first_token_seconds = request.sampled ? since_submit(request.first_token) : result.latency_seconds;
  result.preemptions = request.preemptions;
  stats_.requests_finished += 1;
  if (!result.error.empty()) stats_.requests_failed += 1;
  stats_.prompt_tokens += result.prompt_tokens;
  stats_.generated_tokens += result.completion_tokens;
  if (request.request.session != kNoSession) sessions_.at(request.request.session).busy = false;
  finished_serials_.push_back(request.serial);
  deliver(std::move(result), request.sink);
}

void Scheduler::record_usage() {
  const CacheStats c = cache_.stats();
  last_step_cache_ = c;
  const int64_t block_size = c.block_size;
  stats_.sampled_steps += 1;
  int blocks = 0;
  if (config_.layout == KvLayout::Contiguous) {
    // Each sequence owns its reserved region: a forked prompt is stored once per sample, nothing is shared.
    blocks = reserved_blocks_;
    stats_.allocated_slots += blocks * block_size;
    stats_.wasted_slots += blocks * block_size - c.tokens_logical;
    stats_.logical_tokens += c.tokens_logical;
    stats_.stored_tokens += c.tokens_logical;
  } else {
    blocks = c.blocks_used;
    stats_.allocated_slots += blocks * block_size;
    stats_.wasted_slots += c.slots_wasted;
    stats_.logical_tokens += c.tokens_logical;
    stats_.stored_tokens += c.tokens_stored;
    stats_.peak_shared_blocks = std::max(stats_.peak_shared_blocks, c.blocks_shared);
  }
  stats_.peak_kv_blocks = std::max(stats_.peak_kv_blocks, blocks);
}

// ------------------------------------------------------------------------------------------------ checks

std::string Scheduler::check_invariants() const {
  if (std::string problem = cache_.check_invariants(); !problem.empty()) return "cache: " + problem;
  const CacheStats c = cache_.stats();
  int idle_sessions = 0;
  for (const auto& [id, session] : sessions_) {
    if (session.sequence < 0) continue;
    ++idle_sessions;
    if (!cache_.has_sequence(session.sequence)) return fmt::format("session {} holds no cache sequence", id);
    if (cache_.context_length(session.sequence) != static_cast<int>(session.tokens.size())) {
      return fmt::format("session {} stores {} tokens but lists {}", id, cache_.context_length(session.sequence),
                         session.tokens.size());
    }
  }
  if (c.sequences != static_cast<int>(running_.size()) + idle_sessions) {
    return fmt::format("the cache holds {} sequences but {} are running and {} sessions idle", c.sequences,
                       running_.size(), idle_sessions);
  }
  int reserved = 0;
  for (const auto& s : running_) {
    if (s->id < 0 || !cache_.has_sequence(s->id)) return "a running sequence has no cache sequence";
    if (s->done) return "a finished sequence is still running";
    if (computed(*s) > static_cast<int>(s->tokens.size())) return "a sequence computed more tokens than it has";
    if (static_cast<int>(s->tokens.size()) > max_sequence_tokens_) return "a sequence grew past its limit";
    reserved += s->reserved_blocks;
  }
  for (size_t i = 0; i < waiting_.size(); ++i) {
    const Sequence& s = *waiting_[i];
    if (s.id != -1 || s.reserved_blocks != 0) return "a waiting sequence holds K/V";
    if (i > 0 && !(waiting_[i - 1]->order() < s.order())) return "the waiting queue is out of order";
  }
  if (reserved != reserved_blocks_) return fmt::format("{} blocks reserved but {} counted", reserved, reserved_blocks_);
  auto has_finished_sample = [](const Sequence& s) {
    return std::any_of(s.samples.begin(), s.samples.end(), [&](int sample) {
      return s.request->samples[static_cast<size_t>(sample)].finish != FinishReason::None;
    });
  };
  for (const auto& s : running_) {
    if (has_finished_sample(*s)) return "a running sequence belongs to a finished sample";
  }
  for (const auto& s : waiting_) {
    if (has_finished_sample(*s)) return "a waiting sequence belongs to a finished sample";
  }
  for (const auto& [serial, request] : requests_) {
    int unfinished = 0;
    for (const Sample& sample : request->samples) unfinished += sample.finish == FinishReason::None ? 1 : 0;
    if (unfinished != request->unfinished) return fmt::format("request {} miscounts its unfinished samples", serial);
  }
  if (idle() && idle_sessions == 0 && c.blocks_used != 0) {
    return fmt::format("idle but {} blocks are still held", c.blocks_used);
  }
  return {};
}

}  // namespace pagedllm
