// maxpool2d.cu — CUDA MaxPool2D: fwd (values + argmax) and bwd (gradient routed through argmax).
//
// fwd: one thread per output, consecutive threads along ox. The window is scanned in row-major
//   order with the CPU's rule exactly (cpp/cpu/maxpool2d_cpu.cpp): the first in-bounds cell
//   starts as the best; a later cell wins only if strictly greater, or if it is NaN and the best
//   is not. Padded cells are never visited, nor the taps of a ceil-mode window past the input's
//   end; a dilated window's taps are y0 + i * dilation (PyTorch's). Values and indices therefore
//   match the CPU bit for bit.
// bwd, two formulations (ops_cuda.h):
//   gather  (the forward geometry is known) one thread per input cell, summing the dy of the
//           windows that contain it and chose it, in row-major window order — the CPU's
//           accumulation order, so the result is bit-identical to the CPU and deterministic.
//   scatter (geometry unknown) dx zeroed, then one thread per output atomicAdds dy into dx[idx].
//           With non-overlapping windows (stride >= kernel: every MNIST network's pools) a cell
//           receives at most one value, so this too is exact and deterministic; with overlapping
//           windows (AlexNet 3x3/s2, Inception 3x3/s1) the <= ceil(k/s)^2 additions into one cell
//           happen in an unspecified order (last-bit differences between runs).
#include "common.cuh"
#include "fastconv/ops.h"
#include "fastconv/ops_cuda.h"

namespace fastconv {
namespace gpu {
namespace {

struct PoolGeom {
  int H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw;
};

PoolGeom pool_geom(const Pool2dParams& p) {
  return {int(p.x.h),      int(p.x.w),      int(p.y.h),       int(p.y.w),
          int(p.kernel.h), int(p.kernel.w), int(p.stride.h),  int(p.stride.w),
          int(p.pad.top),  int(p.pad.left), int(p.dilation.h), int(p.dilation.w)};
}

// Taps [*first, *last) of a window starting at `start` (k taps, d apart) that lie in [0, size):
// the CPU kernel's rule. make_pool2d_params guarantees at least one.
__device__ __forceinline__ void window_taps(int start, int k, int d, int size, int* first,
                                            int* last) {
  *first = start < 0 ? (-start + d - 1) / d : 0;
  *last = min(k, (size - start + d - 1) / d);
}

__global__ void maxpool2d_fwd_kernel(float* __restrict__ y, int64_t* __restrict__ idx,
                                     const float* __restrict__ x, const PoolGeom g, int total) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int ox = i % g.OW, oy = (i / g.OW) % g.OH, plane = i / (g.OW * g.OH);
  const float* xp = x + plane * g.H * g.W;
  const int y0 = oy * g.sh - g.pt, x0 = ox * g.sw - g.pl;
  int ia, ib, ja, jb;
  window_taps(y0, g.KH, g.dh, g.H, &ia, &ib);
  window_taps(x0, g.KW, g.dw, g.W, &ja, &jb);
  int best_i = (y0 + ia * g.dh) * g.W + (x0 + ja * g.dw);
  float best = xp[best_i];
  for (int i = ia; i < ib; ++i) {
    const int iy = y0 + i * g.dh;
    for (int j = ja; j < jb; ++j) {
      const int ix = x0 + j * g.dw;
      const float v = xp[iy * g.W + ix];
      if (v > best || (isnan(v) && !isnan(best))) {
        best = v;
        best_i = iy * g.W + ix;
      }
    }
  }
  y[i] = best;
  idx[i] = best_i;
}

// One thread per input cell (plane, iy, ix); windows oy with oy*sh - pt <= iy <= oy*sh - pt +
// (KH - 1)*dh (the cell is one of their taps only where the index says so: the only test needed).
__global__ void maxpool2d_bwd_gather(float* __restrict__ dx, const float* __restrict__ dy,
                                     const int64_t* __restrict__ idx, const PoolGeom g, int total) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const int ix = i % g.W, iy = (i / g.W) % g.H, plane = i / (g.W * g.H);
  const int cell = iy * g.W + ix;
  const int ny = iy + g.pt - (g.KH - 1) * g.dh, nx = ix + g.pl - (g.KW - 1) * g.dw;
  const int oy_lo = ny <= 0 ? 0 : (ny + g.sh - 1) / g.sh;
  const int ox_lo = nx <= 0 ? 0 : (nx + g.sw - 1) / g.sw;
  const int oy_hi = min((iy + g.pt) / g.sh, g.OH - 1);
  const int ox_hi = min((ix + g.pl) / g.sw, g.OW - 1);
  const int64_t* ip = idx + plane * g.OH * g.OW;
  const float* dyp = dy + plane * g.OH * g.OW;
  float acc = 0.0f;
  for (int oy = oy_lo; oy <= oy_hi; ++oy)
    for (int ox = ox_lo; ox <= ox_hi; ++ox)
      if (ip[oy * g.OW + ox] == cell) acc += dyp[oy * g.OW + ox];
  dx[i] = acc;
}

__global__ void maxpool2d_bwd_scatter(float* __restrict__ dx, const float* __restrict__ dy,
                                      const int64_t* __restrict__ idx, int hw, int ohw, int total) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= total) return;
  const int64_t cell = idx[o];
  if (cell < 0 || cell >= hw) return;  // rejected earlier by the Python layer; never write out of bounds
  atomicAdd(dx + (o / ohw) * hw + int(cell), dy[o]);
}

}  // namespace

void maxpool2d_fwd__cuda(float* y, int64_t* idx, const float* x, const Pool2dParams& p,
                         cudaStream_t stream) {
  check_int32(p.x, "input");
  if (debug_poison() && p.y.numel() > 0) {
    CUDA_CHECK(cudaMemsetAsync(y, 0xFF, sizeof(float) * size_t(p.y.numel()), stream));
    CUDA_CHECK(cudaMemsetAsync(idx, 0xFF, sizeof(int64_t) * size_t(p.y.numel()), stream));
  }
  if (p.y.numel() == 0) return;
  const int total = int(p.y.numel());
  launch(maxpool2d_fwd_kernel, grid_1d(total, 256), 256, stream, y, idx, x, pool_geom(p), total);
  CHECK_LAUNCH("maxpool2d_fwd_kernel", stream);
}

void maxpool2d_bwd__cuda(float* dx, const float* dy, const int64_t* idx, Shape4 x_shape,
                         Shape4 y_shape, const Pool2dParams* geometry, cudaStream_t stream) {
  check_int32(x_shape, "input");
  check_int32(y_shape, "grad_output");
  if (x_shape.numel() == 0) return;
  const int total_x = int(x_shape.numel()), total_y = int(y_shape.numel());
  if (geometry != nullptr) {
    FC_CHECK(geometry->x.h == x_shape.h && geometry->x.w == x_shape.w &&
                 geometry->y.h == y_shape.h && geometry->y.w == y_shape.w,
             "maxpool2d_bwd: the pooling geometry does not match the input/grad_output shapes");
    if (debug_poison()) CUDA_CHECK(cudaMemsetAsync(dx, 0xFF, sizeof(float) * size_t(total_x), stream));
    launch(maxpool2d_bwd_gather, grid_1d(total_x, 256), 256, stream, dx, dy, idx,
           pool_geom(*geometry), total_x);
    CHECK_LAUNCH("maxpool2d_bwd_gather", stream);
    return;
  }
  CUDA_CHECK(cudaMemsetAsync(dx, 0, sizeof(float) * size_t(total_x), stream));
  if (total_y == 0) return;
  launch(maxpool2d_bwd_scatter, grid_1d(total_y, 256), 256, stream, dx, dy, idx,
         int(x_shape.h * x_shape.w), int(y_shape.h * y_shape.w), total_y);
  CHECK_LAUNCH("maxpool2d_bwd_scatter", stream);
}

}  // namespace gpu
}  // namespace fastconv
