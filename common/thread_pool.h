#pragma once
// A fixed set of worker threads for data-parallel loops in the CPU kernels.
//
// A decode step calls parallel_for about ten times per layer, each job lasting tens of microseconds, so a job must
// reach the workers in well under a microsecond: workers that just finished a job spin on a generation counter for
// a short while (kSpinDuration) and only then sleep on a condition variable. Idle workers therefore stop using CPU
// shortly after the last job.
//
// The items are split statically into one share per thread. The calling thread runs share 0, then takes over any
// share whose worker has not started it yet, so a worker that is asleep or not scheduled (more threads than free
// cores) delays nothing: the caller never waits for a worker that has not begun, only for shares in progress.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace pagedllm {

// std::thread::hardware_concurrency(), at least 1.
int default_thread_count();

class ThreadPool {
 public:
  using RangeFunction = std::function<void(int64_t begin, int64_t end, int thread_index)>;

  // n_threads counts the calling thread, so ThreadPool(1) starts no workers. Throws Error when n_threads < 1.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Splits [0, n_items) into size() contiguous shares (share t is [n·t/size, n·(t+1)/size)) and calls
  // fn(begin, end, t) once for each non-empty one: share 0 on the calling thread, share t on worker t or, when that
  // worker has not picked it up by the time the caller is free, on the calling thread. Either way a share's index
  // t is never in use by two threads at once, so per-thread scratch may be indexed by t. Returns when every call has
  // returned; the first exception thrown by any of them is rethrown here. Calls from several threads are
  // serialized; a nested call from inside fn runs all its items serially on the thread that makes it.
  void parallel_for(int64_t n_items, const RangeFunction& fn);

 private:
  void worker_loop(int thread_index);
  void run_share(int share);
  // Claims share t (t >= 1) for the calling thread; false when someone else already has it.
  bool claim_share(int share) { return !share_claimed_[share].exchange(true, std::memory_order_acq_rel); }

  const int n_threads_;
  std::vector<std::thread> workers_;

  std::mutex callers_mutex_;  // one parallel_for at a time

  // The current job. Written by the caller before it releases the claims; read only by whoever claims a share.
  const RangeFunction* job_ = nullptr;
  int64_t job_items_ = 0;
  std::exception_ptr job_error_;
  std::mutex job_error_mutex_;

  std::unique_ptr<std::atomic<bool>[]> share_claimed_;  // [n_threads]; true between jobs, share 0 unused
  alignas(64) std::atomic<uint64_t> generation_{0};    // bumped once per job; workers wait for it to change
  alignas(64) std::atomic<int> shares_left_{0};        // shares 1.. of the current job not yet finished
  alignas(64) std::atomic<int> sleeping_workers_{0};   // workers blocked (or about to block) on wake_
  std::atomic<bool> stopping_{false};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
};

}  // namespace pagedllm
