// parallel.cpp — see parallel.h.
#include "fastconv/parallel.h"

#include <pthread.h>

#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "fastconv/error.h"

namespace fastconv {
namespace {

int default_threads() {
  if (const char* env = std::getenv("FASTCONV_NUM_THREADS")) {
    char* end = nullptr;
    long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && v >= 1 && v <= 4096) return int(v);
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : int(hc);
}

// True on pool workers and on a caller while its job runs: nested calls then run serially.
thread_local bool t_in_worker = false;

struct InParallelScope {
  InParallelScope() { t_in_worker = true; }
  ~InParallelScope() { t_in_worker = false; }
};

class Pool {
 public:
  explicit Pool(int nthreads) : nthreads_(nthreads) {
    for (int i = 1; i < nthreads_; ++i) workers_.emplace_back([this, i] { worker(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_start_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return nthreads_; }

  void run(int64_t ntasks, int parts, const ChunkFn& fn) {
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &fn;
      ntasks_ = ntasks;
      parts_ = parts;
      pending_ = parts - 1;
      error_ = nullptr;
      ++generation_;
    }
    cv_start_.notify_all();
    run_chunk(0);
    std::unique_lock<std::mutex> lk(m_);
    cv_done_.wait(lk, [this] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void run_chunk(int part) {
    const int64_t begin = ntasks_ * part / parts_, end = ntasks_ * (part + 1) / parts_;
    if (begin >= end) return;
    try {
      (*job_)(begin, end, part);
    } catch (...) {
      std::lock_guard<std::mutex> lk(m_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void worker(int idx) {
    t_in_worker = true;
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(m_);
        cv_start_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (idx >= parts_) continue;  // not needed for this job
      }
      run_chunk(idx);
      std::lock_guard<std::mutex> lk(m_);
      if (--pending_ == 0) cv_done_.notify_one();
    }
  }

  const int nthreads_;
  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_start_, cv_done_;
  uint64_t generation_ = 0;
  const ChunkFn* job_ = nullptr;
  int64_t ntasks_ = 0;
  int parts_ = 1;
  int pending_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

// One job at a time (kernels release the GIL, so two Python threads may call in together).
std::mutex g_run_mutex;
Pool* g_pool = nullptr;  // created lazily; leaked (not joined) in a forked child
int g_threads = 0;

void atfork_prepare() { g_run_mutex.lock(); }
void atfork_parent() { g_run_mutex.unlock(); }
void atfork_child() {
  // The pool's threads do not exist in the child: forget it (its memory is leaked on purpose)
  // and build a new one on first use.
  g_pool = nullptr;
  new (&g_run_mutex) std::mutex();
}

struct AtforkRegistration {
  AtforkRegistration() { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); }
} g_atfork_registration;

int threads_locked() {
  if (g_threads == 0) g_threads = default_threads();
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

int parallel_parts(int64_t ntasks) {
  if (t_in_worker) return 1;
  const int t = get_num_threads();
  return int(ntasks < t ? (ntasks < 1 ? 1 : ntasks) : t);
}

void parallel_for(int64_t ntasks, const ChunkFn& fn) {
  if (ntasks <= 0) return;
  if (t_in_worker) {  // nested: stay on this thread
    fn(0, ntasks, 0);
    return;
  }
  std::lock_guard<std::mutex> lk(g_run_mutex);
  const int t = threads_locked();
  const int parts = int(ntasks < t ? ntasks : t);
  if (parts == 1) {
    InParallelScope scope;
    fn(0, ntasks, 0);
    return;
  }
  if (g_pool == nullptr) g_pool = new Pool(t);
  InParallelScope scope;
  g_pool->run(ntasks, parts, fn);
}

}  // namespace fastconv
