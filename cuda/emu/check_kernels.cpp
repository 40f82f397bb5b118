// racecheck.cpp — runs CUDA kernels on the emulator built with -fsanitize=thread, so that
// ThreadSanitizer reports shared-memory (and global-memory) accesses that no barrier orders
// (race_annotations.h): the CPU's stand-in for compute-sanitizer --tool racecheck. Built and run by
// tests/test_cuda_emulated.py (cuda_emu.build_program(..., sanitize="thread")); TSan's exit status
// is 66 when it reported a race.
//   racecheck kernels         every conv kernel (every family, every bwd_data tile, split
//                             bwd_weights) and the max-pool kernels on small problems: no race
//   racecheck <selftest>      one kernel of selftest.cu by name, e.g. sum_missing_barrier
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

extern "C" {
void fc_emu_configure(int schedule, uint64_t seed, int workers, int poison_shared, int eager_async_copies);
void fc_emu_set_conv_algo(int pass, int algo);
int fc_emu_conv2d_out_shape(const int64_t* geo, int64_t* out);
int fc_emu_conv2d_fwd(float* y, const float* x, const float* w, const float* b, const int64_t* geo, int relu);
int fc_emu_conv2d_bwd_data(float* dx, const float* dy, const float* w, const int64_t* geo);
int fc_emu_conv2d_bwd_weights_workspace(const int64_t* geo, int64_t* bytes);
int fc_emu_conv2d_bwd_weights(float* dw, float* db, const float* dy, const float* x, const int64_t* geo,
                              float* workspace, int64_t workspace_bytes);
int fc_emu_maxpool2d_out_shape(const int64_t* geo, int64_t* out);
int fc_emu_maxpool2d_fwd(float* y, int64_t* idx, const float* x, const int64_t* geo);
int fc_emu_maxpool2d_bwd(float* dx, const float* dy, const int64_t* idx, const int64_t* geo, int gather);
int fc_emu_selftest(int which, float* out, const float* in, int blocks);
int fc_emu_dropout_mask(float* mask, int64_t n, double keep, const uint64_t* seeds, const int32_t* step);
int fc_emu_adam_update(float* p, float* m, float* v, const float* g, int64_t n, const float* lr_table,
                       const int32_t* step, double beta_1, double beta_2, double epsilon);
const char* fc_emu_last_error();
const char* fc_emu_selftest_error();
}

namespace {

int64_t numel(const int64_t* s) { return s[0] * s[1] * s[2] * s[3]; }

std::vector<float> filled(int64_t n) {
  std::vector<float> v(size_t(n > 0 ? n : 1));
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(int(i * 7919 % 17) - 8) / 8.0f;
  return v;
}

bool ok(int rc) {
  if (rc != 0) std::fprintf(stderr, "check_kernels: %s\n", fc_emu_last_error());
  return rc == 0;
}

// One conv problem through the three passes; geo as run_kernels.cpp's conv layout.
bool conv(const std::vector<int64_t>& geo) {
  int64_t y_shape[4];
  if (!ok(fc_emu_conv2d_out_shape(geo.data(), y_shape))) return false;
  const int64_t x_n = geo[0] * geo[1] * geo[2] * geo[3], w_n = geo[4] * (geo[1] / geo[14]) * geo[5] * geo[6];
  std::vector<float> x = filled(x_n), w = filled(w_n), b = filled(geo[4]), dy = filled(numel(y_shape));
  std::vector<float> y(dy.size()), dx(x.size()), dw(w.size()), db(b.size());
  int64_t ws_bytes = 0;
  if (!ok(fc_emu_conv2d_bwd_weights_workspace(geo.data(), &ws_bytes))) return false;
  std::vector<float> ws(size_t(ws_bytes / 4));  // exact: memcheck sees an overrun
  return ok(fc_emu_conv2d_fwd(y.data(), x.data(), w.data(), b.data(), geo.data(), 1)) &&
         ok(fc_emu_conv2d_bwd_data(dx.data(), dy.data(), w.data(), geo.data())) &&
         ok(fc_emu_conv2d_bwd_weights(dw.data(), db.data(), dy.data(), x.data(), geo.data(),
                                      ws.empty() ? nullptr : ws.data(),
                                      ws_bytes));
}

bool pool(const std::vector<int64_t>& geo) {
  int64_t y_shape[4];
  if (!ok(fc_emu_maxpool2d_out_shape(geo.data(), y_shape))) return false;
  std::vector<float> x = filled(geo[0] * geo[1] * geo[2] * geo[3]), y(size_t(numel(y_shape)));
  std::vector<float> dy = filled(numel(y_shape)), dx(x.size());
  std::vector<int64_t> idx(y.size());
  return ok(fc_emu_maxpool2d_fwd(y.data(), idx.data(), x.data(), geo.data())) &&
         ok(fc_emu_maxpool2d_bwd(dx.data(), dy.data(), idx.data(), geo.data(), 1)) &&
         ok(fc_emu_maxpool2d_bwd(dx.data(), dy.data(), idx.data(), geo.data(), 0));
}

// The graph-captured training step's kernels (cuda/train_step.cu) on n floats.
bool train_step(int64_t n) {
  std::vector<float> mask(static_cast<size_t>(n)), p = filled(n), m = filled(n), g = filled(n);
  std::vector<float> v(static_cast<size_t>(n), 0.5f);
  const std::vector<uint64_t> seeds = {7, 11};
  const std::vector<float> lr = {1e-3f, 5e-4f};
  const int32_t step = 1;
  return ok(fc_emu_dropout_mask(mask.data(), n, 0.5, seeds.data(), &step)) &&
         ok(fc_emu_adam_update(p.data(), m.data(), v.data(), g.data(), n, lr.data(), &step, 0.9, 0.999, 1e-7));
}

bool kernels() {
  // N, C, H, W, K, KH, KW, sh, sw, pad mode, ph, pw, dh, dw, groups.
  const std::vector<std::vector<int64_t>> problems = {
      {1, 5, 7, 9, 6, 3, 3, 1, 1, 0, 1, 1, 1, 1, 1},     // tails in every tile direction
      {2, 4, 9, 8, 6, 3, 3, 2, 2, 0, 1, 0, 1, 1, 2},     // stride phases, groups
      {1, 3, 8, 8, 5, 4, 4, 1, 1, 2, 0, 0, 1, 1, 1},     // 'same' with asymmetric padding
      {1, 1, 6, 7, 3, 3, 3, 2, 2, 0, 1, 1, 1, 1, 1},     // bwd_data Tile1
      {1, 8, 5, 5, 4, 3, 3, 1, 1, 0, 1, 1, 1, 1, 1},     // Tile8
      {2, 16, 5, 6, 8, 3, 3, 1, 1, 0, 1, 1, 2, 1, 1},    // dilation; Tile16
      {1, 32, 4, 5, 4, 3, 3, 1, 1, 0, 1, 1, 1, 1, 1},    // Tile32
      {1, 64, 4, 4, 70, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1},   // Tile64; two row tiles in fwd
  };
  // Per family (gpu::ConvAlgo: direct, tiled, tiled128, tf32) the problems it runs: the tile
  // problems only matter to tiled's bwd_data.
  const std::vector<std::pair<int, std::vector<size_t>>> runs = {
      {1, {0, 1, 2}}, {2, {0, 1, 2, 3, 4, 5, 6, 7}}, {3, {1, 7}}, {4, {0, 7}}};
  for (const auto& [algo, which] : runs)
    for (size_t i : which) {
      for (int pass = 0; pass < 3; ++pass) fc_emu_set_conv_algo(pass, algo);
      if (!conv(problems[i])) return false;
    }
  return pool({2, 3, 9, 9, 3, 3, 2, 2, 0, 1, 1, 1, 1, 0}) && pool({1, 2, 8, 8, 2, 2, 2, 2, 0, 0, 0, 1, 1, 0}) &&
         train_step(1000);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string what = argc > 1 ? argv[1] : "kernels";
  fc_emu_configure(/*forward*/ 0, 1, /*workers*/ 2, 1, what == "async_pipeline_early_refill");
  if (what == "kernels") return kernels() ? 0 : 1;
  static const char* const kSelftests[] = {
      "sum_missing_barrier", "read_unwritten_shared", "divergent_barrier", "warp_ops", "shared_isolation",
      "oversized_block", "async_pipeline", "async_pipeline_early_read", "mma_tf32", "vector_reverse4",
      "trap_one_thread", "async_pipeline_early_refill", "read_past_end"};
  for (int i = 0; i < 13; ++i) {
    if (what != kSelftests[i]) continue;
    // Exactly sized (selftest.cu's kCheckInput) so that memcheck sees any read past the end.
    std::vector<float> in = filled(16 * 256 * 5), out(16 * 256 * 5);
    if (fc_emu_selftest(i, out.data(), in.data(), 2) != 0) {
      std::fprintf(stderr, "check_kernels: %s\n", fc_emu_selftest_error());
      return 1;
    }
    return 0;
  }
  std::fprintf(stderr, "check_kernels: unknown case %s\n", what.c_str());
  return 2;
}
