// kernel_table__avx2.cpp — the AVX2+FMA path's kernel table, filled by field name (the kernels
// live in sgemm__avx2.cpp, conv_pool__avx2.cpp, lanes__avx2.cpp, winograd__avx2.cpp and
// image_lanes__avx2.cpp). Families AVX2 lacks stay nullptr.
#include "fastconv/cpu_kernels.h"

namespace fastconv {
namespace cpu {

const KernelTable& kernel_table__avx2() {
  static const KernelTable table = [] {
    KernelTable t;
    t.isa = "avx2";
    t.lanes = 8;
    t.gemm.run = sgemm__avx2;
    t.gemm.packed = sgemm_packed__avx2;
    t.gemm.mr = 6;
    t.gemm.nr = 16;
    t.pool.fwd_2x2s2 = maxpool2d_fwd_2x2s2__avx2;
    t.pool.bwd_2x2s2 = maxpool2d_bwd_2x2s2__avx2;
    t.pool.relu_codes_2x2s2 = maxpool2d_codes_2x2s2__avx2;
    t.pool.relu_unpool_2x2s2 = unpool2d_codes_2x2s2__avx2;
    t.pool.bwd_2x2s2_min_ow = 4;
    t.direct.fwd = conv2d_fwd_direct__avx2;
    t.direct.fwd_shifted = conv2d_fwd_direct_shifted__avx2;
    t.direct.shift_planes = shift_planes__avx2;
    t.direct.bwd_weights = conv2d_bwd_weights_direct__avx2;
    t.channel_lanes.fwd = conv2d_fwd_cl__avx2;
    t.channel_lanes.bwd_data_scatter = conv2d_bwd_data_scatter__avx2;
    t.channel_lanes.bwd_data_dy_lanes = conv2d_bwd_data_dylanes__avx2;
    t.channel_lanes.bwd_weights = conv2d_bwd_weights_direct_t__avx2;
    t.channel_lanes.bwd_weights_taps = conv2d_bwd_weights_direct_cl__avx2;
    t.channel_lanes.bwd_weights_rows = conv2d_bwd_weights_rows__avx2;
    t.channel_lanes.bwd_weights_rows3 = conv2d_bwd_weights_rows3__avx2;
    t.channel_lanes.pad_channels_last = pad_channels_last__avx2;
    t.channel_lanes.transpose = transpose_to_lanes__avx2;
    t.channel_lanes.unpack = unpack_channels_last__avx2;
    t.winograd.fwd_channels = conv2d_fwd_winograd__avx2;
    t.winograd.fwd_tiles = conv2d_fwd_winograd_tiles__avx2;
    t.winograd.fwd_tiles_4x2 = conv2d_fwd_winograd_tiles_4x2__avx2;
    t.winograd.fwd_one_plane = conv2d_fwd_winograd_one_plane__avx2;
    t.winograd.bwd_data_transposed = conv2d_bwd_data_winograd__avx2;
    t.winograd.bwd_weights = conv2d_bwd_weights_winograd__avx2;
    t.winograd.fwd_rows = conv2d_fwd_winograd_rows__avx2;
    t.winograd.bwd_data_image_lanes = conv2d_bwd_data_image_lanes__avx2;
    t.winograd.bwd_data_image_lanes_work = conv2d_bwd_data_image_lanes_work__avx2;
    t.winograd.image_lanes_group = 8;
    return t;
  }();
  return table;
}

}  // namespace cpu
}  // namespace fastconv
