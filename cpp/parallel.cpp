// parallel.cpp — see parallel.h.
#include "fastconv/parallel.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "fastconv/config.h"
#include "fastconv/error.h"

namespace fastconv {
namespace {

int default_threads() {
  if (const std::optional<int64_t> v = env_int("FASTCONV_NUM_THREADS")) return int(*v);
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : int(hc);
}

// True on pool workers and on a caller while its job runs: nested calls then run serially.
thread_local bool t_in_worker = false;

struct InParallelScope {
  InParallelScope() { t_in_worker = true; }
  ~InParallelScope() { t_in_worker = false; }
};

// Waking a sleeping thread costs tens of microseconds (more when its core has gone idle), which is
// a large share of a 0.2-1 ms kernel call. So a worker that finished a job, and a caller waiting
// for its workers, first spin for a short while (200 us) before blocking on the condition variable;
// back-to-back calls in a training loop then hand over without a wake-up.
// FASTCONV_SPIN_US overrides it (0: block at once), for A/B runs and for machines shared with
// other busy processes.
// Read first on a calling thread (threads_locked), never first in a worker: a bad value throws.
std::chrono::microseconds spin_time() {
  static const std::chrono::microseconds t(env_int("FASTCONV_SPIN_US").value_or(200));
  return t;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

template <class Pred>
bool spin_until(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + spin_time();
  for (int i = 0;; ++i) {
    if (pred()) return true;
    cpu_relax();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) return false;
  }
}

// A job: [0, ntasks) is cut into `nchunks` ranges, the first ntasks % nchunks of them one task
// longer, which the caller and the workers claim in turn from `next`: threads claiming in step
// then get equal shares (100 images on 2 threads: 4 x 13 then 4 x 12, 50 images a thread, where
// chunks of ntasks / (4 x threads) = 12 were 8 x 12 + 4, one thread doing 52). It lives
// in a shared_ptr that every thread taking part holds, so a worker that arrives after the caller
// has returned still finds valid counters: it claims nothing (next >= nchunks) and never touches
// fn, which is only called for claimed tasks, all finished before the caller returns.
struct Job {
  Job(const ChunkFn& f, int64_t n, int64_t c) : fn(f), ntasks(n), nchunks(c) {}
  const ChunkFn& fn;
  const int64_t ntasks, nchunks;
  std::atomic<int64_t> next{0}, done{0};
  std::mutex mu;  // guards error and pairs with cv for the caller's wait
  std::condition_variable cv;
  std::exception_ptr error;

  void work(int thread) {
    for (;;) {
      const int64_t k = next.fetch_add(1, std::memory_order_relaxed);
      if (k >= nchunks) return;
      const int64_t q = ntasks / nchunks, r = ntasks % nchunks;
      const int64_t b = k * q + (k < r ? k : r), e = b + q + (k < r ? 1 : 0);
      try {
        fn(b, e, thread);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!error) error = std::current_exception();
      }
      if (done.fetch_add(e - b, std::memory_order_acq_rel) + (e - b) == ntasks) {
        std::lock_guard<std::mutex> lk(mu);
        cv.notify_all();
      }
    }
  }
};

class Pool {
 public:
  explicit Pool(int nthreads) : nthreads_(nthreads) {
    for (int i = 1; i < nthreads_; ++i) workers_.emplace_back([this, i] { worker(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_.store(true);
    }
    cv_start_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return nthreads_; }

  // The caller waits for the tasks to be done, not for the workers: a worker that starts late
  // finds fewer (or no) chunks left.
  void run(int64_t ntasks, int64_t nchunks, const ChunkFn& fn) {
    auto job = std::make_shared<Job>(fn, ntasks, nchunks);
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = job;  // stays published until the next job replaces it (late workers claim nothing)
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_start_.notify_all();
    job->work(0);
    auto finished = [&] { return job->done.load(std::memory_order_acquire) == ntasks; };
    if (!spin_until(finished)) {
      std::unique_lock<std::mutex> lk(job->mu);
      job->cv.wait(lk, finished);
    }
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void worker(int idx) {
    t_in_worker = true;
    uint64_t seen = 0;
    for (;;) {
      auto fresh = [&] {
        return stop_.load(std::memory_order_acquire) ||
               generation_.load(std::memory_order_acquire) != seen;
      };
      spin_until(fresh);
      std::shared_ptr<Job> job;
      {
        // Read the generation and its job together, under the lock the caller publishes them with.
        std::unique_lock<std::mutex> lk(m_);
        cv_start_.wait(lk, fresh);
        if (stop_.load(std::memory_order_acquire)) return;
        seen = generation_.load(std::memory_order_acquire);
        job = job_;
      }
      job->work(idx);
    }
  }

  const int nthreads_;
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_start_;
  std::atomic<uint64_t> generation_{0};
  std::shared_ptr<Job> job_;
  std::atomic<bool> stop_{false};
};

// One job at a time (kernels release the GIL, so two Python threads may call in together).
std::mutex g_run_mutex;
Pool* g_pool = nullptr;  // created lazily; leaked (not joined) in a forked child
int g_threads = 0;
TeamParallelFn g_team = nullptr;  // set_team_parallel: an OpenMP runtime's GOMP_parallel

// One parallel_for on an OpenMP team: every team thread takes the next thread index and claims
// chunks of the job like a pool worker; GOMP_parallel returns when the whole team has finished.
struct TeamRun {
  Job* job;
  std::atomic<int> next_thread{0};
};

void team_body(void* arg) {
  auto* run = static_cast<TeamRun*>(arg);
  const int thread = run->next_thread.fetch_add(1, std::memory_order_relaxed);
  const bool outer = t_in_worker;
  t_in_worker = true;  // nested parallel_for calls stay on this thread
  run->job->work(thread);
  t_in_worker = outer;
}

void atfork_prepare() { g_run_mutex.lock(); }
void atfork_parent() { g_run_mutex.unlock(); }
void atfork_child() {
  // The pool's threads do not exist in the child: forget it (its memory is leaked on purpose)
  // and build a new one on first use.
  g_pool = nullptr;
  g_team = nullptr;  // the OpenMP runtime's threads are not ours to rely on in the child
  new (&g_run_mutex) std::mutex();
}

struct AtforkRegistration {
  AtforkRegistration() { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }
} g_atfork_registration;

int threads_locked() {
  if (g_threads == 0) {
    spin_time();  // the environment parsed here, on the caller, before any worker runs
    g_threads = default_threads();
  }
  return g_threads;
}

}  // namespace

int get_num_threads() {
  std::lock_guard<std::mutex> lk(g_run_mutex);
  return threads_locked();
}

void set_num_threads(int n) {
  FC_CHECK(n >= 1 && n <= 4096, "num_threads must be between 1 and 4096, got ", n);
  std::lock_guard<std::mutex> lk(g_run_mutex);
  if (g_pool != nullptr && g_pool->size() != n) {
    delete g_pool;
    g_pool = nullptr;
  }
  g_threads = n;
}

void parallel_for(int64_t ntasks, const ChunkFn& fn) {
  if (ntasks <= 0) return;
  if (t_in_worker) {  // nested: stay on this thread
    fn(0, ntasks, 0);
    return;
  }
  std::lock_guard<std::mutex> lk(g_run_mutex);
  const int t = threads_locked();
  InParallelScope scope;
  if (t == 1 || ntasks == 1) {
    fn(0, ntasks, 0);
    return;
  }
  const int64_t nchunks = ntasks < 4 * int64_t(t) ? ntasks : 4 * int64_t(t);
  if (g_team != nullptr) {
    Job job(fn, ntasks, nchunks);
    TeamRun run{&job};
    g_team(team_body, &run, unsigned(t), 0);
    if (job.error) std::rethrow_exception(job.error);
    return;
  }
  if (g_pool == nullptr) g_pool = new Pool(t);
  g_pool->run(ntasks, nchunks, fn);
}

void set_team_parallel(TeamParallelFn fn) {
  std::lock_guard<std::mutex> lk(g_run_mutex);
  g_team = fn;
  if (fn != nullptr && g_pool != nullptr) {  // its workers would only sit idle from now on
    delete g_pool;
    g_pool = nullptr;
  }
}

bool team_parallel_set() {
  std::lock_guard<std::mutex> lk(g_run_mutex);
  return g_team != nullptr;
}

void parallel_for_parts(int64_t ntasks, int parts, const ChunkFn& fn) {
  if (ntasks <= 0) return;
  parallel_for(parts, [&](int64_t pb, int64_t pe, int) {
    for (int64_t part = pb; part < pe; ++part) {
      const int64_t begin = ntasks * part / parts, end = ntasks * (part + 1) / parts;
      if (begin < end) fn(begin, end, int(part));
    }
  });
}

int reduction_parts(int64_t ntasks) {
  if (t_in_worker) return 1;
  const int t = get_num_threads();
  if (t == 1 || ntasks <= 1) return 1;
  return int(ntasks < 2 * t ? ntasks : 2 * t);
}

}  // namespace fastconv
