#include "engine/scheduler.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "common/error.h"

namespace pagedllm {

struct Scheduler::Sample {
  std::vector<int32_t> generated;  // [n_generated]
  std::string text;
  std::unique_ptr<Sampler> sampler;                  // from the first admission to the end (keeps its RNG state
  std::unique_ptr<StreamingDetokenizer> detokenizer; // across preemptions)
  FinishReason finish = FinishReason::None;
  bool cut_at_stop_string = false;
};

struct Scheduler::RequestState {
  GenerationRequest request;
  int64_t serial = 0;
  std::vector<Sample> samples;  // [n]
  int unfinished = 0;
  size_t longest_stop = 0;      // bytes of the longest stop string
  Clock::time_point submitted;
  Clock::time_point first_admitted;
  bool admitted = false;
  int preemptions = 0;
};

// What the scheduler runs: the K/V of one token stream. Before a request's first token is sampled its n samples
// share one sequence (the prompt); afterwards each sample has its own (forked) sequence.
struct Scheduler::Sequence {
  RequestState* request = nullptr;
  std::vector<int> samples;      // indices into request->samples: all n until the first token, then one
  std::vector<int32_t> tokens;   // [n_tokens] prompt + this sample's generated ids: what its K/V must hold
  SeqId kv = -1;                 // the cache manager's sequence while running, -1 while waiting
  int n_computed = 0;            // leading tokens whose K/V is stored
  int64_t admission = 0;         // admission counter: larger is younger
  int reserved_blocks = 0;       // contiguous layout: blocks reserved for it
  bool scheduled = false;        // in this step's plan
  bool done = false;             // finished this step; leaves running_ at the end of it

  int remaining() const { return static_cast<int>(tokens.size()) - n_computed; }
  // Queue order: requests first come first served; a preempted sample rejoins where its request stands.
  std::pair<int64_t, int> order() const { return {request->serial, samples.front()}; }
};

Scheduler::Scheduler(Engine& engine, const Tokenizer* tokenizer, const SchedulerConfig& config)
    : engine_(engine), cache_(engine.cache()), tokenizer_(tokenizer), config_(config) {
  if (config.max_seqs < 1) fail("--max-seqs {} must be at least 1", config.max_seqs);
  if (config.max_batch_tokens < 1) fail("--max-batch-tokens {} must be at least 1", config.max_batch_tokens);
  const int64_t cache_tokens = static_cast<int64_t>(cache_.num_blocks()) * cache_.block_size();
  max_sequence_tokens_ = static_cast<int>(std::min<int64_t>(engine.n_ctx(), cache_tokens));
  if (config.layout == KvLayout::Contiguous) {
    if (reserved_blocks_per_sequence() > cache_.num_blocks()) {
      fail("--kv-layout contiguous reserves {} blocks per sequence (a context of {} tokens) but the KV cache holds "
           "only {} blocks; lower -c or raise --kv-mem",
           reserved_blocks_per_sequence(), engine.n_ctx(), cache_.num_blocks());
    }
  } else {
    // vLLM's 1% watermark: admitting into the last free blocks only to preempt at the next decode wastes prefill.
    watermark_blocks_ = cache_.num_blocks() / 100;
  }
  stats_.kv_blocks_total = cache_.num_blocks();
}

Scheduler::~Scheduler() = default;

int Scheduler::reserved_blocks_per_sequence() const { return cache_.blocks_for_tokens(engine_.n_ctx()); }

int Scheduler::kv_blocks_in_use() const {
  if (config_.layout == KvLayout::Contiguous) return reserved_blocks_;
  return cache_.num_blocks() - cache_.free_blocks();
}

// ------------------------------------------------------------------------------------------------ requests

void Scheduler::submit(GenerationRequest request) {
  const Clock::time_point now = Clock::now();
  const auto n_prompt = static_cast<int64_t>(request.prompt.size());
  const int32_t n_vocab = static_cast<int32_t>(engine_.model().config.n_vocab);
  std::string error;
  if (request.n < 1 || request.n > kMaxSamples) {
    error = fmt::format("n = {} is out of range (1..{})", request.n, kMaxSamples);
  } else if (request.max_tokens < 1) {
    error = fmt::format("max_tokens = {} must be a positive number of tokens", request.max_tokens);
  } else if (request.prompt.empty()) {
    error = "the prompt is empty and the model adds no BOS token: nothing to condition on";
  } else if (n_prompt >= max_sequence_tokens_) {
    const bool cache_bound = max_sequence_tokens_ < engine_.n_ctx();
    error = fmt::format("the prompt is {} tokens, which leaves no room to generate: a sequence may hold at most {} "
                        "tokens ({})", n_prompt, max_sequence_tokens_,
                        cache_bound ? "the whole KV cache; raise --kv-mem" : "the context; raise -c");
  } else if (auto bad = std::find_if(request.prompt.begin(), request.prompt.end(),
                                     [&](int32_t id) { return id < 0 || id >= n_vocab; });
             bad != request.prompt.end()) {
    error = fmt::format("prompt token id {} is outside the vocabulary of {} tokens", *bad, n_vocab);
  } else if (std::any_of(request.stop.begin(), request.stop.end(), [](const std::string& s) { return s.empty(); })) {
    error = "a stop string is empty";
  } else {
    try {
      validate_sampling_params(request.sampling);
    } catch (const Error& e) {
      error = e.what();
    }
  }
  if (!error.empty()) {
    fail_request(std::move(request), std::move(error), now);
    return;
  }

  auto state = std::make_unique<RequestState>();
  state->serial = next_serial_++;
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

void Scheduler::fail_request(GenerationRequest request, std::string error, Clock::time_point submitted) {
  RequestResult result;
  result.id = request.id;
  result.error = std::move(error);
  result.prompt_tokens = static_cast<int>(request.prompt.size());
  result.latency_seconds = std::chrono::duration<double>(Clock::now() - submitted).count();
  stats_.requests_finished += 1;
  stats_.requests_failed += 1;
  finished_.push_back(std::move(result));
}

std::vector<RequestResult> Scheduler::take_finished() {
  std::vector<RequestResult> out;
  out.swap(finished_);
  return out;
}

// ------------------------------------------------------------------------------------------------ planning

void Scheduler::schedule(Sequence& sequence, int n_tokens) {
  sequence.scheduled = true;
  plan_.push_back(Planned{&sequence, n_tokens});
}

int Scheduler::tokens_that_fit(const Sequence& sequence, int wanted, int available_blocks) const {
  if (wanted <= 0 || available_blocks < 0) return 0;
  if (cache_.blocks_needed(sequence.kv, wanted) <= available_blocks) return wanted;
  // Fill the free slots of the blocks it holds, then as many new blocks as are available.
  const int held = static_cast<int>(cache_.block_table(sequence.kv).size());
  const int slack = held * cache_.block_size() - cache_.context_length(sequence.kv);
  int n = static_cast<int>(
      std::min<int64_t>(wanted, slack + static_cast<int64_t>(available_blocks) * cache_.block_size()));
  // A shared last block needs one more for its copy: shrink until it fits.
  while (n > 0 && cache_.blocks_needed(sequence.kv, n) > available_blocks) n = std::max(0, n - cache_.block_size());
  return n;
}

bool Scheduler::prefix_in_flight(const Sequence& candidate) const {
  const auto block_size = static_cast<size_t>(cache_.block_size());
  // match_prefix never attaches the last token: only full blocks before it can be shared.
  const size_t shareable = (candidate.tokens.size() - 1) / block_size * block_size;
  if (shareable == 0) return false;
  for (const auto& s : running_) {
    if (s->remaining() <= 1) continue;  // its full prompt blocks are computed and registered already
    const size_t limit = std::min(shareable, s->tokens.size());
    const auto mismatch = std::mismatch(candidate.tokens.begin(), candidate.tokens.begin() + static_cast<long>(limit),
                                        s->tokens.begin());
    const size_t common_blocks = static_cast<size_t>(mismatch.first - candidate.tokens.begin()) / block_size;
    if (common_blocks > 0 && static_cast<size_t>(s->n_computed) < common_blocks * block_size) return true;
  }
  return false;
}

bool Scheduler::can_admit(const Sequence& sequence, int committed_blocks) const {
  // An empty machine always admits the oldest request: submit() made sure a lone sequence fits.
  if (running_.empty()) return true;
  // A prompt whose first blocks another sequence is computing right now waits for them to be registered (a step or
  // a few), rather than computing and storing them a second time.
  if (cache_.prefix_caching() && prefix_in_flight(sequence)) return false;
  int seats = 0;
  for (const auto& s : running_) seats += static_cast<int>(s->samples.size());
  if (seats + static_cast<int>(sequence.samples.size()) > config_.max_seqs) return false;
  // The whole prompt must fit beside what running sequences still need for theirs. Prefix-cache hits are not
  // credited: a hit on a cached (unheld) block takes that block from the free pool just the same.
  const int prompt_blocks = cache_.blocks_for_tokens(static_cast<int>(sequence.tokens.size()));
  if (prompt_blocks + watermark_blocks_ > cache_.free_blocks() - committed_blocks) return false;
  if (config_.layout == KvLayout::Contiguous) {
    const int reservation = reserved_blocks_per_sequence() * static_cast<int>(sequence.samples.size());
    if (reserved_blocks_ + reservation > cache_.num_blocks()) return false;
  }
  return true;
}

void Scheduler::admit(std::unique_ptr<Sequence> sequence) {
  RequestState& request = *sequence->request;
  if (!request.admitted) {
    request.admitted = true;
    request.first_admitted = Clock::now();
    for (size_t i = 0; i < request.samples.size(); ++i) {
      SamplingParams params = request.request.sampling;
      if (params.seed != kRandomSeed) params.seed += i;  // distinct but reproducible streams, as `run --parallel`
      request.samples[i].sampler = std::make_unique<Sampler>(params);
      if (tokenizer_ != nullptr) request.samples[i].detokenizer = std::make_unique<StreamingDetokenizer>(*tokenizer_);
    }
  }
  sequence->kv = cache_.create_sequence();
  sequence->n_computed = cache_.match_prefix(sequence->kv, sequence->tokens);
  sequence->admission = next_admission_++;
  if (config_.layout == KvLayout::Contiguous) {
    sequence->reserved_blocks = reserved_blocks_per_sequence() * static_cast<int>(sequence->samples.size());
    reserved_blocks_ += sequence->reserved_blocks;
  }
  running_.push_back(std::move(sequence));
}

void Scheduler::release(Sequence& sequence) {
  if (sequence.kv >= 0) cache_.release(sequence.kv);
  sequence.kv = -1;
  reserved_blocks_ -= sequence.reserved_blocks;
  sequence.reserved_blocks = 0;
}

void Scheduler::preempt(Sequence& sequence) {
  stats_.preemptions += 1;
  stats_.preempted_tokens += sequence.n_computed;
  sequence.request->preemptions += 1;
  release(sequence);
  sequence.n_computed = 0;
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
    if (s.remaining() != 1) continue;
    int need = cache_.blocks_needed(s.kv, 1);
    bool preempted_itself = false;
    while (need > available()) {
      Sequence& victim = *running_.back();
      preempted_itself = &victim == &s;
      preempt(victim);
      if (preempted_itself) break;
      need = cache_.blocks_needed(s.kv, 1);
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
    if (s.scheduled || s.remaining() <= 0) continue;
    outstanding_prefill += cache_.blocks_needed(s.kv, s.remaining());
    if (budget <= 0) continue;
    const int n = tokens_that_fit(s, std::min(budget, s.remaining()), available());
    if (n == 0) continue;
    promised += cache_.blocks_needed(s.kv, n);
    schedule(s, n);
    budget -= n;
  }

  // 3. Waiting sequences join, first come first served (no overtaking: a big prompt is not starved by small ones).
  while (!waiting_.empty() && budget > 0) {
    if (!can_admit(*waiting_.front(), promised_decodes + outstanding_prefill)) break;
    std::unique_ptr<Sequence> next = std::move(waiting_.front());
    waiting_.pop_front();
    admit(std::move(next));
    Sequence& s = *running_.back();
    outstanding_prefill += cache_.blocks_needed(s.kv, s.remaining());
    const int n = tokens_that_fit(s, std::min(budget, s.remaining()), available());
    if (n == 0) continue;
    promised += cache_.blocks_needed(s.kv, n);
    schedule(s, n);
    budget -= n;
  }

  if (!plan_.empty()) return true;
  // Nothing fits: prefilling sequences hold the blocks each other need. Free the youngest and plan again.
  if (!running_.empty()) preempt(*running_.back());
  return false;
}

// ------------------------------------------------------------------------------------------------ running

bool Scheduler::step() {
  if (idle()) return false;
  const size_t attempts_allowed = running_.size() + waiting_.size() + 2;
  for (size_t attempt = 0; !plan_step(); ++attempt) {
    if (attempt >= attempts_allowed) throw std::logic_error("scheduler: no sequence can make progress");
  }
  stats_.steps += 1;

  work_.clear();
  for (const Planned& p : plan_) {
    Sequence& s = *p.sequence;
    const auto tokens = std::span<const int32_t>(s.tokens).subspan(static_cast<size_t>(s.n_computed),
                                                                   static_cast<size_t>(p.n_tokens));
    work_.push_back(Engine::Work{s.kv, tokens, s.n_computed + p.n_tokens == static_cast<int>(s.tokens.size())});
  }
  const std::span<const float> logits = engine_.step(work_);
  stats_.peak_running = std::max(stats_.peak_running, static_cast<int>(running_.size()));
  record_usage();

  const auto n_vocab = static_cast<size_t>(engine_.model().config.n_vocab);
  size_t row = 0;
  for (const Planned& p : plan_) {
    Sequence& s = *p.sequence;
    s.n_computed += p.n_tokens;
    if (s.remaining() > 0) continue;
    handle_logits(s, logits.subspan(row * n_vocab, n_vocab));
    ++row;
  }
  stats_.peak_running = std::max(stats_.peak_running, static_cast<int>(running_.size()));
  std::erase_if(running_, [](const auto& s) { return s->done; });
  // Finished requests go last: sequences of this step pointed at them until now.
  for (int64_t serial : finished_serials_) requests_.erase(serial);
  finished_serials_.clear();
  return true;
}

void Scheduler::handle_logits(Sequence& sequence, std::span<const float> logits) {
  RequestState& request = *sequence.request;
  if (sequence.samples.size() == 1) {
    const int sample = sequence.samples.front();
    const int32_t token = request.samples[static_cast<size_t>(sample)].sampler->sample(logits, sequence.tokens);
    if (accept_token(sequence, sample, token)) {
      sequence.done = true;
      release(sequence);
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
    child->kv = cache_.fork(sequence.kv);
    child->n_computed = sequence.n_computed;
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
      release(s);
    }
  }
}

bool Scheduler::accept_token(Sequence& sequence, int sample_index, int32_t token) {
  RequestState& request = *sequence.request;
  Sample& sample = request.samples[static_cast<size_t>(sample_index)];
  const GenerationRequest& r = request.request;
  if (!r.ignore_eos && tokenizer_ != nullptr && tokenizer_->is_end_of_generation(token)) {
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
  }
  if (static_cast<int>(sample.generated.size()) >= r.max_tokens ||
      static_cast<int>(sequence.tokens.size()) >= max_sequence_tokens_) {
    finish_sample(request, sample_index, FinishReason::Length);
    return true;
  }
  return false;
}

void Scheduler::finish_sample(RequestState& request, int sample_index, FinishReason reason) {
  Sample& sample = request.samples[static_cast<size_t>(sample_index)];
  sample.finish = reason;
  if (sample.detokenizer && !sample.cut_at_stop_string) sample.text += sample.detokenizer->flush();
  sample.sampler.reset();
  sample.detokenizer.reset();
  if (--request.unfinished == 0) finish_request(request);
}

void Scheduler::finish_request(RequestState& request) {
  const Clock::time_point now = Clock::now();
  RequestResult result;
  result.id = request.request.id;
  result.prompt_tokens = static_cast<int>(request.request.prompt.size());
  for (Sample& sample : request.samples) {
    result.completion_tokens += static_cast<int64_t>(sample.generated.size());
    result.completions.push_back(Completion{std::move(sample.generated), std::move(sample.text), sample.finish});
  }
  result.latency_seconds = std::chrono::duration<double>(now - request.submitted).count();
  result.queue_seconds = std::chrono::duration<double>(request.first_admitted - request.submitted).count();
  result.preemptions = request.preemptions;
  stats_.requests_finished += 1;
  stats_.prompt_tokens += result.prompt_tokens;
  stats_.generated_tokens += result.completion_tokens;
  finished_.push_back(std::move(result));
  finished_serials_.push_back(request.serial);
}

void Scheduler::record_usage() {
  const CacheStats c = cache_.stats();
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
  if (c.sequences != static_cast<int>(running_.size())) {
    return fmt::format("the cache holds {} sequences but {} are running", c.sequences, running_.size());
  }
  int reserved = 0;
  for (const auto& s : running_) {
    if (s->kv < 0 || !cache_.has_sequence(s->kv)) return "a running sequence has no cache sequence";
    if (s->done) return "a finished sequence is still running";
    if (cache_.context_length(s->kv) != s->n_computed) {
      return fmt::format("sequence {} stores {} tokens but computed {}", s->kv, cache_.context_length(s->kv),
                         s->n_computed);
    }
    if (s->n_computed > static_cast<int>(s->tokens.size())) return "a sequence computed more tokens than it has";
    if (static_cast<int>(s->tokens.size()) > max_sequence_tokens_) return "a sequence grew past its limit";
    reserved += s->reserved_blocks;
  }
  for (size_t i = 0; i < waiting_.size(); ++i) {
    const Sequence& s = *waiting_[i];
    if (s.kv != -1 || s.n_computed != 0 || s.reserved_blocks != 0) return "a waiting sequence holds K/V";
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
  if (idle() && c.blocks_used != 0) return fmt::format("idle but {} blocks are still held", c.blocks_used);
  return {};
}

}  // namespace pagedllm
