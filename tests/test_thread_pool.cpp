// The thread pool: every item runs exactly once in the documented static shares under their own index, also
// when threads outnumber cores and the caller takes shares over; exceptions reach the caller; nested calls run
// serially; back-to-back jobs (spinning workers) and jobs after a long pause (sleeping workers) both complete.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/thread_pool.h"

using namespace pagedllm;

TEST_CASE("parallel_for covers every item once with static ranges per thread") {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    for (int64_t n : {0, 1, 2, 3, 7, 100, 1001}) {
      CAPTURE(threads);
      CAPTURE(n);
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::vector<int> owner(static_cast<size_t>(n), -1);
      pool.parallel_for(n, [&](int64_t begin, int64_t end, int thread_index) {
        CHECK(begin < end);
        CHECK(begin == n * thread_index / threads);
        CHECK(end == n * (thread_index + 1) / threads);
        for (int64_t i = begin; i < end; ++i) {
          hits[i].fetch_add(1);
          owner[i] = thread_index;
        }
      });
      for (int64_t i = 0; i < n; ++i) CHECK(hits[i].load() == 1);
    }
  }
}

TEST_CASE("the calling thread runs share 0 and workers run the other shares when it is busy") {
  ThreadPool pool(3);
  std::vector<std::thread::id> ids(3);
  std::atomic<int> others_started{0};
  pool.parallel_for(3, [&](int64_t, int64_t, int thread_index) {
    ids[thread_index] = std::this_thread::get_id();
    if (thread_index != 0) {
      others_started += 1;
      return;
    }
    // The caller only takes over shares after its own, so while it waits here shares 1 and 2 can only run on the
    // workers. The deadline turns a pool whose workers never run into a failed check instead of a hang.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (others_started.load() < 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  });
  CHECK(ids[0] == std::this_thread::get_id());
  CHECK(ids[1] != ids[0]);
  CHECK(ids[2] != ids[0]);
  CHECK(ids[1] != ids[2]);
}

TEST_CASE("with far more threads than cores every share still runs exactly once, under its own index") {
  // Most of the 64 workers are not scheduled when a job starts, so the caller takes over their shares.
  ThreadPool pool(64);
  for (int job = 0; job < 300; ++job) {
    const int64_t n = 64 + job % 7;
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    std::vector<std::atomic<int>> share_runs(64);
    pool.parallel_for(n, [&](int64_t begin, int64_t end, int thread_index) {
      share_runs[thread_index] += 1;
      CHECK(begin == n * thread_index / 64);
      for (int64_t i = begin; i < end; ++i) hits[i] += 1;
    });
    for (int64_t i = 0; i < n; ++i) REQUIRE(hits[i].load() == 1);
    for (int t = 0; t < 64; ++t) REQUIRE(share_runs[t].load() == 1);
  }
}

TEST_CASE("an exception thrown on any thread reaches the caller and the pool keeps working") {
  ThreadPool pool(3);
  for (int thrower = 0; thrower < 3; ++thrower) {
    CHECK_THROWS_WITH_AS(pool.parallel_for(3,
                                           [&](int64_t, int64_t, int thread_index) {
                                             if (thread_index == thrower) throw std::runtime_error("boom");
                                           }),
                         "boom", std::runtime_error);
  }
  std::atomic<int64_t> sum{0};
  pool.parallel_for(1000, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) sum += i;
  });
  CHECK(sum.load() == 999 * 1000 / 2);
}

TEST_CASE("a nested parallel_for runs serially on the thread that calls it") {
  ThreadPool pool(2);
  std::atomic<int> inner_items{0};
  pool.parallel_for(2, [&](int64_t, int64_t, int outer_index) {
    pool.parallel_for(10, [&](int64_t begin, int64_t end, int inner_index) {
      CHECK(begin == 0);
      CHECK(end == 10);
      CHECK(inner_index == outer_index);
      inner_items += static_cast<int>(end - begin);
    });
  });
  CHECK(inner_items.load() == 20);
}

TEST_CASE("many short jobs in a row and jobs after the workers fell asleep all complete") {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 20000; ++job) {
    pool.parallel_for(4, [&](int64_t begin, int64_t end, int) { total += end - begin; });
  }
  CHECK(total.load() == 80000);
  for (int job = 0; job < 3; ++job) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // well past the spin time: workers sleep
    pool.parallel_for(4, [&](int64_t begin, int64_t end, int) { total += end - begin; });
  }
  CHECK(total.load() == 80012);
}

TEST_CASE("a pool needs at least one thread") {
  CHECK_THROWS_AS(ThreadPool(0), Error);
  CHECK(default_thread_count() >= 1);
}
