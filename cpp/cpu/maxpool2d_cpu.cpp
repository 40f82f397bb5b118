// maxpool2d_cpu.cpp — CPU max-pool forward (values + argmax) and backward (scatter via argmax).
// Threaded over (n, c) planes; each plane is independent, so results do not depend on threads.
// Window order is row-major; a later element wins only if strictly greater, or if it is NaN and
// the current best is not (NaN propagates, the first NaN wins). Padded cells are never visited;
// nor are the taps of a ceil-mode window past the input's end. A dilated window's taps are
// y0 + i * dilation (PyTorch's max_pool2d dilation).
#include <algorithm>
#include <cmath>
#include <limits>

#include "fastconv/cpu_kernels.h"
#include "fastconv/error.h"
#include "fastconv/ops.h"
#include "fastconv/parallel.h"

namespace fastconv {
namespace cpu {

// 2x2 / stride 2 / unpadded (every pooling layer of NETWORKS.md): the ISA's vector kernel.
// Window offsets travel as floats inside it, exact while W + 1 < 2^24.
bool maxpool2d_fwd_uses_simd(const Pool2dParams& p) {
  return kernels().pool.fwd_2x2s2 != nullptr && p.kernel.h == 2 && p.kernel.w == 2 &&
         p.stride.h == 2 && p.stride.w == 2 && p.pad.top == 0 && p.pad.left == 0 &&
         p.pad.bottom == 0 && p.pad.right == 0 && p.dilation.h == 1 && p.dilation.w == 1 &&
         2 * p.y.h <= p.x.h && 2 * p.y.w <= p.x.w && p.x.w + 1 < (int64_t(1) << 24);
}

void maxpool2d_fwd__cpu(float* y, int64_t* idx, const float* x, const Pool2dParams& p) {
  if (debug_poison()) {
    std::fill(y, y + p.y.numel(), std::numeric_limits<float>::quiet_NaN());
    std::fill(idx, idx + p.y.numel(), int64_t(-1));
  }
  const int64_t H = p.x.h, W = p.x.w, OH = p.y.h, OW = p.y.w;
  if (maxpool2d_fwd_uses_simd(p)) {
    const MaxPool2x2Fn fast = kernels().pool.fwd_2x2s2;
    parallel_for(p.x.n * p.x.c, [&](int64_t begin, int64_t end, int) {
      fast(y + begin * OH * OW, idx + begin * OH * OW, x + begin * H * W, H, W, OH, OW,
           end - begin);
    });
    return;
  }
  const int64_t dh = p.dilation.h, dw = p.dilation.w;
  // Taps [first, last) of a window starting at `start` on an axis of `size` cells: those inside.
  const auto taps = [](int64_t start, int64_t k, int64_t d, int64_t size, int64_t* first,
                       int64_t* last) {
    *first = start < 0 ? (-start + d - 1) / d : 0;
    *last = std::min<int64_t>(k, (size - start + d - 1) / d);
  };
  parallel_for(p.x.n * p.x.c, [&](int64_t begin, int64_t end, int) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* xp = x + plane * H * W;
      float* yp = y + plane * OH * OW;
      int64_t* ip = idx + plane * OH * OW;
      for (int64_t oy = 0; oy < OH; ++oy) {
        const int64_t y0 = oy * p.stride.h - p.pad.top;
        int64_t ia, ib;
        taps(y0, p.kernel.h, dh, H, &ia, &ib);
        for (int64_t ox = 0; ox < OW; ++ox) {
          const int64_t x0 = ox * p.stride.w - p.pad.left;
          int64_t ja, jb;
          taps(x0, p.kernel.w, dw, W, &ja, &jb);
          int64_t best_i = (y0 + ia * dh) * W + (x0 + ja * dw);
          float best = xp[best_i];
          for (int64_t i = ia; i < ib; ++i) {
            const float* row = xp + (y0 + i * dh) * W;
            for (int64_t j = ja; j < jb; ++j) {
              const float v = row[x0 + j * dw];
              if (v > best || (std::isnan(v) && !std::isnan(best))) {
                best = v;
                best_i = (y0 + i * dh) * W + x0 + j * dw;
              }
            }
          }
          yp[oy * OW + ox] = best;
          ip[oy * OW + ox] = best_i;
        }
      }
    }
  });
}

// Bytes a backward call moves: dx written, dy and the int64 indices read.
static int64_t pool_bwd_bytes(Shape4 x_shape, Shape4 y_shape) {
  const int64_t planes = x_shape.n * x_shape.c;
  return planes * (x_shape.h * x_shape.w * 4 + y_shape.h * y_shape.w * (4 + 8));
}

// The backward's windows are the disjoint 2x2 tiles (H/OH == W/OW == 2: every pooling layer of
// NETWORKS.md) and the ISA has a tile writer: it is tried first. Its limits come from
// measurements per ISA (C++ loops over the layers' planes, 1 thread, PERF_LOG.md round 14): rows
// of fewer than PoolKernels::bwd_2x2s2_min_ow windows run zero-fill + scatter faster (rows of 3,
// 100 x 64 planes: AVX-512 0.058 vs 0.048 ms, AVX2 0.064 vs 0.048; rows of 4, keras.pool2: 0.22
// vs 0.23 and 0.17 vs 0.23), and so do calls whose data go to DRAM, even with whole rows
// (keras.pool1's 60 MB: 3.6 vs 2.7 ms on both ISAs; vgg.pool at N = 64, 90 MB: 4.9 -> 5.5-5.9 in
// round 11): this machine writes all-zero lines faster there (round 12). The size limit is half
// its 32 MB L3.
bool maxpool2d_bwd_uses_tiles(Shape4 x_shape, Shape4 y_shape) {
  const PoolKernels& k = kernels().pool;
  return k.bwd_2x2s2 != nullptr && y_shape.h > 0 && y_shape.w >= k.bwd_2x2s2_min_ow &&
         x_shape.h / y_shape.h == 2 && x_shape.w / y_shape.w == 2 &&
         x_shape.w < (int64_t(1) << 30) &&
         pool_bwd_bytes(x_shape, y_shape) <= (int64_t(16) << 20);
}

// Backward: planes are independent, so results do not depend on the thread count. Each thread's
// planes go to the tile writer in one call; if some index is not inside its own tile (other
// geometry, foreign indices) they all run zero-fill + scatter-add in output order, which
// validates every index (ValueError outside [0, H*W)).
void maxpool2d_bwd__cpu(float* dx, const float* dy, const int64_t* idx, Shape4 x_shape,
                        Shape4 y_shape) {
  const int64_t H = x_shape.h, W = x_shape.w, OH = y_shape.h, OW = y_shape.w;
  const int64_t HW = H * W, OHW = OH * OW;
  if (debug_poison())
    std::fill(dx, dx + x_shape.numel(), std::numeric_limits<float>::quiet_NaN());
  const MaxPool2x2BwdFn tiles = kernels().pool.bwd_2x2s2;
  const bool use_tiles = maxpool2d_bwd_uses_tiles(x_shape, y_shape);
  parallel_for(x_shape.n * x_shape.c, [&](int64_t begin, int64_t end, int) {
    if (use_tiles &&
        tiles(dx + begin * HW, dy + begin * OHW, idx + begin * OHW, H, W, OH, OW, end - begin))
      return;
    for (int64_t plane = begin; plane < end; ++plane) {
      float* dxp = dx + plane * HW;
      const float* dyp = dy + plane * OHW;
      const int64_t* ip = idx + plane * OHW;
      std::fill(dxp, dxp + HW, 0.0f);
      for (int64_t o = 0; o < OHW; ++o) {
        const int64_t i = ip[o];
        FC_CHECK(i >= 0 && i < HW, "indices must lie in [0, H*W) = [0, ", HW, "), got ", i,
                 " at flat position ", plane * OHW + o);
        dxp[i] += dyp[o];
      }
    }
  });
}

// --- ReLU + max-pool 2x2/2 with one-byte window codes (the fused conv layers' pooling) ---------

void relu_maxpool2d_codes_planes(float* y, uint8_t* codes, const float* x, int64_t H, int64_t W,
                                 int64_t planes) {
  const int64_t OH = H / 2, OW = W / 2;
  if (const MaxPool2x2CodesFn fn = kernels().pool.relu_codes_2x2s2) {
    fn(y, codes, x, H, W, OH, OW, planes);
    return;
  }
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t oy = 0; oy < OH; ++oy) {
      const float* r0 = x + (pl * H + 2 * oy) * W;
      float* yr = y + (pl * OH + oy) * OW;
      uint8_t* cr = codes + (pl * OH + oy) * OW;
      for (int64_t ox = 0; ox < OW; ++ox) {
        const float cand[4] = {r0[2 * ox], r0[2 * ox + 1], r0[W + 2 * ox], r0[W + 2 * ox + 1]};
        int best_i = 0;
        float best = cand[0];
        for (int i = 1; i < 4; ++i)
          if (cand[i] > best || (std::isnan(cand[i]) && !std::isnan(best))) best = cand[i], best_i = i;
        yr[ox] = best;
        cr[ox] = uint8_t(best_i + (best > 0.0f ? 0 : 4));
      }
    }
}

void relu_maxpool2d_fwd__cpu(float* y, uint8_t* codes, const float* x, Shape4 x_shape) {
  const int64_t planes = x_shape.n * x_shape.c, H = x_shape.h, W = x_shape.w;
  const int64_t OHW = (H / 2) * (W / 2);
  if (debug_poison()) {
    std::fill(y, y + planes * OHW, std::numeric_limits<float>::quiet_NaN());
    std::fill(codes, codes + planes * OHW, uint8_t(0xFF));
  }
  parallel_for(planes, [&](int64_t begin, int64_t end, int) {
    relu_maxpool2d_codes_planes(y + begin * OHW, codes + begin * OHW, x + begin * H * W, H, W,
                                end - begin);
  });
}

namespace {
bool unpool_codes_generic(float* dx, const float* dy, const uint8_t* codes, int64_t H, int64_t W,
                          int64_t OH, int64_t OW, int64_t planes) {
  uint8_t high = 0;
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* d = dx + pl * H * W;
    std::fill(d, d + H * W, 0.0f);
    for (int64_t oy = 0; oy < OH; ++oy)
      for (int64_t ox = 0; ox < OW; ++ox) {
        const int64_t o = (pl * OH + oy) * OW + ox;
        const uint8_t c = codes[o];
        high |= uint8_t(c & ~7u);
        if (c < 4) d[(2 * oy + (c >> 1)) * W + 2 * ox + (c & 1)] = dy[o];
      }
  }
  return high == 0;
}
}  // namespace

void relu_maxpool2d_unpool_planes(float* dx, const float* dy, const uint8_t* codes, int64_t H,
                                  int64_t W, int64_t planes) {
  const int64_t OH = H / 2, OW = W / 2;
  const Unpool2x2CodesFn fn = kernels().pool.relu_unpool_2x2s2;
  const bool good = fn != nullptr ? fn(dx, dy, codes, H, W, OH, OW, planes)
                                  : unpool_codes_generic(dx, dy, codes, H, W, OH, OW, planes);
  FC_CHECK(good, "codes must hold values in [0, 8) (window cell + 4 for no gradient), as "
           "conv2d_relu_maxpool2d returns them; got a larger value");
}

void relu_maxpool2d_bwd__cpu(float* dx, const float* dy, const uint8_t* codes, Shape4 x_shape) {
  const int64_t planes = x_shape.n * x_shape.c, H = x_shape.h, W = x_shape.w;
  const int64_t OHW = (H / 2) * (W / 2);
  if (debug_poison())
    std::fill(dx, dx + planes * H * W, std::numeric_limits<float>::quiet_NaN());
  parallel_for(planes, [&](int64_t begin, int64_t end, int) {
    relu_maxpool2d_unpool_planes(dx + begin * H * W, dy + begin * OHW, codes + begin * OHW, H, W,
                                 end - begin);
  });
}

}  // namespace cpu
}  // namespace fastconv
