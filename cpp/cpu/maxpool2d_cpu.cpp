// maxpool2d_cpu.cpp — CPU max-pool forward (values + argmax) and backward (scatter via argmax).
// Threaded over (n, c) planes; each plane is independent, so results do not depend on threads.
// Window order is row-major; a later element wins only if strictly greater, or if it is NaN and
// the current best is not (NaN propagates, the first NaN wins). Padded cells are never visited.
#include <algorithm>
#include <cmath>
#include <limits>

#include "fastconv/cpu_kernels.h"
#include "fastconv/error.h"
#include "fastconv/ops.h"
#include "fastconv/parallel.h"

namespace fastconv {
namespace cpu {

void maxpool2d_fwd__cpu(float* y, int64_t* idx, const float* x, const Pool2dParams& p) {
  if (debug_poison()) {
    std::fill(y, y + p.y.numel(), std::numeric_limits<float>::quiet_NaN());
    std::fill(idx, idx + p.y.numel(), int64_t(-1));
  }
  const int64_t H = p.x.h, W = p.x.w, OH = p.y.h, OW = p.y.w;
  // 2x2 / stride 2 / unpadded (every pooling layer of NETWORKS.md): the ISA's vector kernel.
  // Window offsets travel as floats inside it, exact while W + 1 < 2^24.
  const MaxPool2x2Fn fast = kernels().maxpool2d_fwd_2x2s2;
  if (fast != nullptr && p.kernel.h == 2 && p.kernel.w == 2 && p.stride.h == 2 &&
      p.stride.w == 2 && p.pad.top == 0 && p.pad.left == 0 && p.pad.bottom == 0 &&
      p.pad.right == 0 && W + 1 < (int64_t(1) << 24)) {
    parallel_for(p.x.n * p.x.c, [&](int64_t begin, int64_t end, int) {
      fast(y + begin * OH * OW, idx + begin * OH * OW, x + begin * H * W, H, W, OH, OW,
           end - begin);
    });
    return;
  }
  parallel_for(p.x.n * p.x.c, [&](int64_t begin, int64_t end, int) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const float* xp = x + plane * H * W;
      float* yp = y + plane * OH * OW;
      int64_t* ip = idx + plane * OH * OW;
      for (int64_t oy = 0; oy < OH; ++oy) {
        const int64_t y0 = oy * p.stride.h - p.pad.top;
        const int64_t ya = std::max<int64_t>(y0, 0), yb = std::min<int64_t>(y0 + p.kernel.h, H);
        for (int64_t ox = 0; ox < OW; ++ox) {
          const int64_t x0 = ox * p.stride.w - p.pad.left;
          const int64_t xa = std::max<int64_t>(x0, 0), xb = std::min<int64_t>(x0 + p.kernel.w, W);
          int64_t best_i = ya * W + xa;
          float best = xp[best_i];
          for (int64_t iy = ya; iy < yb; ++iy) {
            for (int64_t ix = xa; ix < xb; ++ix) {
              const float v = xp[iy * W + ix];
              if (v > best || (std::isnan(v) && !std::isnan(best))) {
                best = v;
                best_i = iy * W + ix;
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

// Backward: planes are independent, so results do not depend on the thread count. Every pooling
// layer of NETWORKS.md (2x2, stride 2, no padding: disjoint tiles, H/OH == W/OW == 2) takes the
// ISA's single-pass tile writer when it has one; a plane whose indices are not all inside their own
// tiles (other geometry, foreign indices) falls back to zero-fill + scatter-add in output order,
// which validates every index (ValueError outside [0, H*W)).
void maxpool2d_bwd__cpu(float* dx, const float* dy, const int64_t* idx, Shape4 x_shape,
                        Shape4 y_shape) {
  const int64_t H = x_shape.h, W = x_shape.w, OH = y_shape.h, OW = y_shape.w;
  const int64_t HW = H * W, OHW = OH * OW;
  const MaxPool2x2BwdFn tiles = kernels().maxpool2d_bwd_2x2s2;
  // The tile kernel handles 16 windows of a row per step: narrower rows (OW < 16) waste most of
  // the vector and measured slower than zero-fill + scatter (keras.pool2, OW = 4: 0.96 vs 0.24 ms).
  const bool use_tiles = tiles != nullptr && OH > 0 && OW >= 16 && H / OH == 2 && W / OW == 2 &&
                         W < (int64_t(1) << 30);
  parallel_for(x_shape.n * x_shape.c, [&](int64_t begin, int64_t end, int) {
    for (int64_t plane = begin; plane < end; ++plane) {
      float* dxp = dx + plane * HW;
      const float* dyp = dy + plane * OHW;
      const int64_t* ip = idx + plane * OHW;
      if (use_tiles && tiles(dxp, dyp, ip, H, W, OH, OW)) continue;
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

}  // namespace cpu
}  // namespace fastconv
