// entries.cpp — the CPU conv entry points of ops.h: poison the outputs (debug mode), ask the
// registry which algorithm runs (registry.cpp), run its driver. The fused conv + ReLU + pool
// entries take the same choice, writing through a pooled ImageSink / reading a pooled DySource.
#include <algorithm>

#include "fastconv/ops.h"
#include "registry.h"

namespace fastconv {
namespace cpu {

void conv2d_fwd__cpu(float* y, const float* x, const float* w, const float* b,
                     const Conv2dParams& p, bool relu) {
  poison(y, p.y.numel());
  const KernelTable& kt = kernels();
  choose_fwd(p, kt).run(ImageSink::plain(y, p.y.c, p.y.h, p.y.w), x, w, b, p, relu, kt);
}

void conv2d_relu_maxpool2d_fwd__cpu(float* py, uint8_t* codes, const float* x, const float* w,
                                    const float* b, const Conv2dParams& p) {
  const int64_t pooled = p.y.n * p.y.c * (p.y.h / 2) * (p.y.w / 2);
  poison(py, pooled);
  if (debug_poison()) std::fill(codes, codes + pooled, uint8_t(0xFF));
  const KernelTable& kt = kernels();
  choose_fwd(p, kt).run(ImageSink::pooled_into(py, codes, p.y), x, w, b, p, true, kt);
}

void conv2d_bwd_data__cpu(float* dx, const float* dy, const float* w, const Conv2dParams& p) {
  poison(dx, p.x.numel());
  const KernelTable& kt = kernels();
  choose_bwd_data(p, kt).run(dx, DySource::plain(dy, p.y.c, p.y.h, p.y.w), w, p, kt);
}

void conv2d_relu_maxpool2d_bwd_data__cpu(float* dx, const float* pdy, const uint8_t* codes,
                                         const float* w, const Conv2dParams& p) {
  poison(dx, p.x.numel());
  const KernelTable& kt = kernels();
  choose_bwd_data(p, kt).run(dx, DySource::pooled_from(pdy, codes, p.y), w, p, kt);
}

namespace {
void bwd_weights(float* dw, float* db, const DySource& dy, const float* x, const Conv2dParams& p) {
  const int64_t wsize = p.wt.numel(), C_out = p.y.c;
  poison(dw, wsize);
  if (db != nullptr) poison(db, C_out);
  if (p.x.n == 0) {  // an empty sum (the other passes have nothing to write)
    std::fill(dw, dw + wsize, 0.0f);
    if (db != nullptr) std::fill(db, db + C_out, 0.0f);
    return;
  }
  const KernelTable& kt = kernels();
  choose_bwd_weights(p, kt).run(dw, db, dy, x, p, kt);
}
}  // namespace

void conv2d_bwd_weights__cpu(float* dw, float* db, const float* dy, const float* x,
                             const Conv2dParams& p) {
  bwd_weights(dw, db, DySource::plain(dy, p.y.c, p.y.h, p.y.w), x, p);
}

void conv2d_relu_maxpool2d_bwd_weights__cpu(float* dw, float* db, const float* pdy,
                                            const uint8_t* codes, const float* x,
                                            const Conv2dParams& p) {
  bwd_weights(dw, db, DySource::pooled_from(pdy, codes, p.y), x, p);
}

}  // namespace cpu
}  // namespace fastconv
