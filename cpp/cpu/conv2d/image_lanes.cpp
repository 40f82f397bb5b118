// image_lanes.cpp — bwd_data with the images in the vector lanes by a 1-D Winograd F(4, 5) along
// the rows (conv2d_bwd_data_image_lanes.inl): the weight transform and the split of the batch into
// lane groups and tile ranges for the threads.
#include <algorithm>
#include <vector>

#include "drivers.h"
#include "fastconv/parallel.h"
#include "fastconv/winograd_rows.h"

namespace fastconv {
namespace cpu {

void bwd_data_winograd_images(float* dx, const DySource& dy, const float* w, const Conv2dParams& p,
                              const KernelTable& kt) {
  using F45 = WinogradRows<4, 5>;
  constexpr int CI = 6;
  ImageLanesArgs a{};
  a.cin = p.x.c;
  a.cout = p.y.c;
  a.kh = p.wt.h;
  a.oh = p.y.h;
  a.ow = p.y.w;
  a.h = p.x.h;
  a.w = p.x.w;
  a.top = a.kh - 1 - p.pad.top;
  a.left = 4 - p.pad.left;
  a.tiles = (a.w + 3) / 4;
  const int64_t blocks = (a.cin + CI - 1) / CI, lanes = kt.winograd.image_lanes_group;
  // u[(((cb*8 + pt)*kh + ky)*cout + co)*6 + c] = sum_kx G[pt][kx] * w[co][6cb + c][kh-1-ky][4-kx],
  // in double and rounded once; threaded over the points.
  float* u = caller_workspace(blocks * F45::n * a.kh * a.cout * CI);
  parallel_for(F45::n, [&](int64_t p0, int64_t p1, int) {
    for (int64_t cb = 0; cb < blocks; ++cb)
      for (int64_t pt = p0; pt < p1; ++pt)
        for (int64_t ky = 0; ky < a.kh; ++ky)
          for (int64_t co = 0; co < a.cout; ++co) {
            float* dst = u + (((cb * F45::n + pt) * a.kh + ky) * a.cout + co) * CI;
            for (int c = 0; c < CI; ++c) {
              const int64_t ci = cb * CI + c;
              double s = 0.0;
              if (ci < a.cin) {
                const float* g = w + ((co * a.cin + ci) * a.kh + (a.kh - 1 - ky)) * 5;
                for (int kx = 0; kx < 5; ++kx) s += F45::G[pt][kx] * double(g[4 - kx]);
              }
              dst[c] = float(s);
            }
          }
  });
  // Units: a group of `lanes` images and a range of tiles. A group that fills its lanes runs whole;
  // a partial one (its empty lanes cost as much as full ones) or a batch of fewer groups than two
  // per thread is cut into two tile ranges (pairs of tiles kept together), so the threads' shares
  // differ by at most half a group (lenet.conv2, 100 images on 2 threads: 12 whole groups and the
  // last one's two halves).
  const int64_t N = p.x.n, groups = (N + lanes - 1) / lanes;
  int64_t half = (a.tiles / 2 + 1) / 2 * 2;
  if (half >= a.tiles) half = 0;
  struct Unit {
    int64_t group, t0, t1;
  };
  std::vector<Unit> units;
  units.reserve(size_t(2 * groups));
  std::vector<Unit> split;
  for (int64_t g = 0; g < groups; ++g) {
    const bool partial = (g + 1) * lanes > N;
    if (half > 0 && (partial || groups < 2 * get_num_threads())) {
      split.push_back({g, 0, half});
      split.push_back({g, half, a.tiles});
    } else {
      units.push_back({g, 0, a.tiles});
    }
  }
  units.insert(units.end(), split.begin(), split.end());  // the small units last
  const int64_t work = kt.winograd.bwd_data_image_lanes_work(a);
  const int64_t dyi = a.cout * a.oh * a.ow, dxi = a.cin * a.h * a.w;
  parallel_for(int64_t(units.size()), [&](int64_t begin, int64_t end, int) {
    float* ws = scratch(work + dyi + lanes * dy.scratch_floats());
    float* zeros = ws + work;  // the dy of the empty lanes
    float* tmp = zeros + dyi;
    std::fill(zeros, zeros + dyi, 0.0f);
    const float* dyp[16];
    float* dxp[16];
    for (int64_t i = begin; i < end; ++i) {
      const Unit& un = units[size_t(i)];
      const int64_t n0 = un.group * lanes, count = std::min<int64_t>(lanes, N - n0);
      for (int64_t l = 0; l < lanes; ++l) {
        dyp[l] = l < count ? dy.image(n0 + l, tmp + l * dy.scratch_floats()) : zeros;
        dxp[l] = l < count ? dx + (n0 + l) * dxi : nullptr;
      }
      kt.winograd.bwd_data_image_lanes(dxp, dyp, count, u, ws, un.t0, un.t1, a);
    }
  });
}

}  // namespace cpu
}  // namespace fastconv
