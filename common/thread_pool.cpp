#include "common/thread_pool.h"

#include <chrono>

#include "common/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace pagedllm {
namespace {

// How long a worker keeps polling after its last job before it sleeps. Long enough to bridge the serial work
// between the parallel loops of a decode step (norms, sampling), short enough that an idle pool costs nothing.
constexpr auto kSpinDuration = std::chrono::microseconds(500);
// Polls with the pause instruction alone for this many rounds (tens of microseconds), then yields the core in
// between polls, so that a waiting thread does not starve the one it waits for when threads outnumber cores.
constexpr uint32_t kPureSpinRounds = 1024;

// Index of this thread inside the job it is running, -1 outside any job; lets a nested parallel_for run serially
// instead of deadlocking on the pool it is already part of.
thread_local int current_thread_index = -1;

inline void cpu_relax(uint32_t round) {
  if (round >= kPureSpinRounds) {
    std::this_thread::yield();
    return;
  }
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Sets current_thread_index for the lifetime of a share, also when the share throws.
class ThreadIndexScope {
 public:
  explicit ThreadIndexScope(int index) { current_thread_index = index; }
  ~ThreadIndexScope() { current_thread_index = -1; }
  ThreadIndexScope(const ThreadIndexScope&) = delete;
  ThreadIndexScope& operator=(const ThreadIndexScope&) = delete;
};

}  // namespace

int default_thread_count() {
  const unsigned count = std::thread::hardware_concurrency();
  return count == 0 ? 1 : static_cast<int>(count);
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
  if (n_threads < 1) fail("thread count must be at least 1, got {}", n_threads);
  share_claimed_ = std::make_unique<std::atomic<bool>[]>(static_cast<size_t>(n_threads));
  for (int t = 0; t < n_threads; ++t) share_claimed_[t].store(true);  // nothing to claim before the first job
  workers_.reserve(static_cast<size_t>(n_threads - 1));
  for (int t = 1; t < n_threads; ++t) workers_.emplace_back([this, t] { worker_loop(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(sleep_mutex_);
    stopping_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::run_share(int share) {
  const int64_t begin = job_items_ * share / n_threads_;
  const int64_t end = job_items_ * (share + 1) / n_threads_;
  if (begin >= end) return;
  ThreadIndexScope scope(share);
  try {
    (*job_)(begin, end, share);
  } catch (...) {
    std::lock_guard lock(job_error_mutex_);
    if (!job_error_) job_error_ = std::current_exception();
  }
}

void ThreadPool::parallel_for(int64_t n_items, const RangeFunction& fn) {
  if (n_items <= 0) return;
  if (current_thread_index >= 0) {  // nested inside a job: this thread does it all
    fn(0, n_items, current_thread_index);
    return;
  }
  if (n_threads_ == 1) {
    ThreadIndexScope scope(0);
    fn(0, n_items, 0);
    return;
  }
  std::lock_guard caller_lock(callers_mutex_);
  // Every share of the previous job has finished, so no thread reads the job fields while they change. The
  // release stores of the claims publish them to whoever claims a share, even a worker still on an old generation.
  job_ = &fn;
  job_items_ = n_items;
  job_error_ = nullptr;
  shares_left_.store(n_threads_ - 1, std::memory_order_relaxed);
  for (int t = 1; t < n_threads_; ++t) share_claimed_[t].store(false, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  // Pairs with the sleeper's increment-then-check: if it incremented before our bump it is told, otherwise its
  // check sees the bump. Taking the mutex orders the notify after its wait began.
  if (sleeping_workers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard lock(sleep_mutex_); }
    wake_.notify_all();
  }
  run_share(0);
  for (int t = 1; t < n_threads_; ++t) {  // shares whose worker has not started yet
    if (claim_share(t)) {
      run_share(t);
      shares_left_.fetch_sub(1, std::memory_order_release);
    }
  }
  for (uint32_t round = 0; shares_left_.load(std::memory_order_acquire) != 0; ++round) cpu_relax(round);
  job_ = nullptr;
  if (job_error_) std::rethrow_exception(job_error_);
}

void ThreadPool::worker_loop(int thread_index) {
  uint64_t seen_generation = 0;
  for (;;) {
    auto spin_start = std::chrono::steady_clock::now();
    for (uint32_t round = 0; generation_.load(std::memory_order_acquire) == seen_generation; ++round) {
      cpu_relax(round);
      if (round % 64 != 63 || std::chrono::steady_clock::now() - spin_start < kSpinDuration) continue;
      std::unique_lock lock(sleep_mutex_);
      sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen_generation; });
      sleeping_workers_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen_generation = generation_.load(std::memory_order_acquire);
    if (stopping_.load()) return;
    // A worker that wakes late may find its share taken by the caller, or already reset for a newer job; the
    // claim decides, and job_ is read only after a successful one.
    if (claim_share(thread_index)) {
      run_share(thread_index);
      shares_left_.fetch_sub(1, std::memory_order_release);
    }
  }
}

}  // namespace pagedllm
