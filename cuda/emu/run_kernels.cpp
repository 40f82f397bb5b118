// run_kernels.cpp — the CUDA entry points of cuda/*.cu, built for the CPU emulator, behind a C ABI
// that tests/cuda_emu.py loads with ctypes (no pybind11, no CUDA toolkit needed). Pointers are
// host arrays (the emulator's device memory); geometry arrives as int64 arrays (layout below) and
// goes through the same make_conv2d_params / make_pool2d_params as the real bindings.
// Every function returns 0 on success, 1 for a ValueError, 2 for a CUDA (launch) error;
// fc_emu_last_error() holds the message.
#include <dlfcn.h>

#include <cstdint>
#include <exception>
#include <string>

#include "common.cuh"
#include "fastconv/ops.h"
#include "fastconv/ops_cuda.h"

using namespace fastconv;

namespace {

std::string g_error;

// conv: N, C, H, W, K, KH, KW, stride h, w, pad mode (0 explicit, 1 valid, 2 same), pad h, w,
// dilation h, w, groups
Conv2dParams conv_params(const int64_t* g) {
  static const char* const kModes[] = {"explicit", "valid", "same"};
  FC_CHECK(g[9] >= 0 && g[9] <= 2, "pad mode must be 0, 1 or 2, got ", g[9]);
  const Shape4 x{g[0], g[1], g[2], g[3]};
  const Shape4 w{g[4], g[14] > 0 ? g[1] / g[14] : 0, g[5], g[6]};
  return make_conv2d_params(x, w, Pair{g[7], g[8]}, padding_spec(kModes[g[9]], Pair{g[10], g[11]}),
                            Pair{g[12], g[13]}, g[14]);
}

// pool: N, C, H, W, KH, KW, stride h, w, pad mode, pad h, w, dilation h, w, ceil_mode
Pool2dParams pool_params(const int64_t* g) {
  static const char* const kModes[] = {"explicit", "valid", "same"};
  FC_CHECK(g[8] >= 0 && g[8] <= 2, "pad mode must be 0, 1 or 2, got ", g[8]);
  return make_pool2d_params(Shape4{g[0], g[1], g[2], g[3]}, Pair{g[4], g[5]}, Pair{g[6], g[7]},
                            padding_spec(kModes[g[8]], Pair{g[9], g[10]}), Pair{g[11], g[12]},
                            g[13] != 0);
}

template <class F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const ValueError& e) {
    g_error = e.what();
    return 1;
  } catch (const std::exception& e) {
    g_error = e.what();
    return 2;
  }
}

}  // namespace

extern "C" {

const char* fc_emu_last_error() { return g_error.c_str(); }

void fc_emu_set_debug_poison(int on) { set_debug_poison(on != 0); }

// schedule: 0 forward, 1 reverse, 2 seeded shuffle (simt.h); workers: OS threads for blocks;
// eager_async_copies: cp.async lands when issued instead of at its wait.
void fc_emu_configure(int schedule, uint64_t seed, int workers, int poison_shared,
                      int eager_async_copies) {
  emu::Options& o = emu::options();
  o.schedule = static_cast<emu::Schedule>(schedule);
  o.shuffle_seed = seed;
  o.workers = workers;
  o.poison_shared = poison_shared != 0;
  o.eager_async_copies = eager_async_copies != 0;
}

int fc_emu_set_device(int device) {
  return guarded([&] { gpu::set_device(device); });
}

// pass: 0 fwd, 1 bwd_data, 2 bwd_weights; algo: 0 auto, 1 direct, 2 tiled.
void fc_emu_set_conv_algo(int pass, int algo) {
  gpu::set_conv_algo(static_cast<gpu::ConvPass>(pass), static_cast<gpu::ConvAlgo>(algo));
}

// out: launches, blocks, threads, barriers, warp_ops, poisoned_blocks.
void fc_emu_stats(uint64_t* out) {
  const emu::Stats s = emu::stats();
  const uint64_t v[] = {s.launches, s.blocks, s.threads, s.barriers, s.warp_ops, s.poisoned_blocks};
  for (int i = 0; i < 6; ++i) out[i] = v[i];
}

void fc_emu_reset_stats() { emu::reset_stats(); }

// The launches since the last call (at most max): per launch the kernel's offset in this library
// (for its symbol name), grid x, y, z, block x, y, z. Returns how many were written.
int fc_emu_take_launches(int64_t* out, int max) {
  int n = 0;
  for (const emu::LaunchRecord& r : emu::take_launches()) {
    if (n == max) break;
    Dl_info info{};
    const char* base = dladdr(r.kernel, &info) != 0 ? static_cast<const char*>(info.dli_fbase) : nullptr;
    const int64_t v[] = {base != nullptr ? static_cast<const char*>(r.kernel) - base : -1,
                         r.grid.x, r.grid.y, r.grid.z, r.block.x, r.block.y, r.block.z};
    for (int i = 0; i < 7; ++i) out[7 * n + i] = v[i];
    ++n;
  }
  return n;
}

// The output shape (N, C_out, OH, OW) the geometry gives; ValueError if it is invalid.
int fc_emu_conv2d_out_shape(const int64_t* geo, int64_t* out) {
  return guarded([&] {
    const Shape4 y = conv_params(geo).y;
    out[0] = y.n, out[1] = y.c, out[2] = y.h, out[3] = y.w;
  });
}

int fc_emu_maxpool2d_out_shape(const int64_t* geo, int64_t* out) {
  return guarded([&] {
    const Shape4 y = pool_params(geo).y;
    out[0] = y.n, out[1] = y.c, out[2] = y.h, out[3] = y.w;
  });
}

int fc_emu_conv2d_fwd(float* y, const float* x, const float* w, const float* b, const int64_t* geo,
                      int relu) {
  return guarded([&] { gpu::conv2d_fwd__cuda(y, x, w, b, conv_params(geo), relu != 0, nullptr); });
}

int fc_emu_conv2d_bwd_data(float* dx, const float* dy, const float* w, const int64_t* geo) {
  return guarded([&] { gpu::conv2d_bwd_data__cuda(dx, dy, w, conv_params(geo), nullptr); });
}

int fc_emu_conv2d_bwd_weights_workspace(const int64_t* geo, int64_t* bytes) {
  return guarded([&] { *bytes = int64_t(gpu::conv2d_bwd_weights_workspace__cuda(conv_params(geo))); });
}

int fc_emu_conv2d_bwd_weights(float* dw, float* db, const float* dy, const float* x,
                              const int64_t* geo, float* workspace, int64_t workspace_bytes) {
  return guarded([&] {
    gpu::conv2d_bwd_weights__cuda(dw, db, dy, x, conv_params(geo), workspace,
                                  size_t(workspace_bytes), nullptr);
  });
}

// which: the pass as in fc_emu_set_conv_algo; *algo: 1 direct, 2 tiled.
int fc_emu_chosen_conv_algo(int pass, const int64_t* geo, int* algo) {
  return guarded([&] {
    *algo = int(gpu::chosen_conv_algo(static_cast<gpu::ConvPass>(pass), conv_params(geo)));
  });
}

int fc_emu_maxpool2d_fwd(float* y, int64_t* idx, const float* x, const int64_t* geo) {
  return guarded([&] { gpu::maxpool2d_fwd__cuda(y, idx, x, pool_params(geo), nullptr); });
}

// gather != 0: with the forward geometry (deterministic gather); 0: the atomicAdd scatter.
int fc_emu_maxpool2d_bwd(float* dx, const float* dy, const int64_t* idx, const int64_t* geo,
                         int gather) {
  return guarded([&] {
    const Pool2dParams p = pool_params(geo);
    gpu::maxpool2d_bwd__cuda(dx, dy, idx, p.x, p.y, gather != 0 ? &p : nullptr, nullptr);
  });
}

int fc_emu_dropout_mask(float* mask, int64_t n, double keep, const uint64_t* seeds,
                        const int32_t* step) {
  return guarded([&] { gpu::dropout_mask__cuda(mask, n, keep, seeds, step, nullptr); });
}

int fc_emu_adam_update(float* p, float* m, float* v, const float* g, int64_t n,
                       const float* lr_table, const int32_t* step, double beta_1, double beta_2,
                       double epsilon) {
  return guarded([&] {
    gpu::adam_update__cuda(p, m, v, g, n, lr_table, step, beta_1, beta_2, epsilon, nullptr);
  });
}

}  // extern "C"
