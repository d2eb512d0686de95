#pragma once
// A fixed set of worker threads for data-parallel loops in the CPU kernels.
//
// A decode step calls parallel_for about ten times per layer, each job lasting tens of microseconds, so a job must
// reach the workers in well under a microsecond: workers that just finished a job spin on a generation counter for
// a short while (kSpinDuration) and only then sleep on a condition variable. The caller runs a share of the items
// itself and spins until the others are done. Idle workers therefore stop using CPU shortly after the last job.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
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

  // Splits [0, n_items) into size() contiguous ranges (thread t gets [n·t/size, n·(t+1)/size)) and calls
  // fn(begin, end, t) for each non-empty one, t = 0 on the calling thread. Returns when all calls have returned;
  // the first exception thrown by any of them is rethrown here. Calls from several threads are serialized; a
  // nested call from inside fn runs serially on the calling thread.
  void parallel_for(int64_t n_items, const RangeFunction& fn);

 private:
  void worker_loop(int thread_index);
  void run_share(int thread_index);

  const int n_threads_;
  std::vector<std::thread> workers_;

  std::mutex callers_mutex_;  // one parallel_for at a time

  // The current job. Written by the caller before generation_ is bumped, read by workers after they see the bump.
  const RangeFunction* job_ = nullptr;
  int64_t job_items_ = 0;
  std::exception_ptr job_error_;
  std::mutex job_error_mutex_;

  alignas(64) std::atomic<uint64_t> generation_{0};  // bumped once per job; workers wait for it to change
  alignas(64) std::atomic<int> pending_workers_{0};   // workers still running the current job
  alignas(64) std::atomic<int> sleeping_workers_{0};  // workers blocked (or about to block) on wake_
  std::atomic<bool> stopping_{false};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
};

}  // namespace pagedllm
