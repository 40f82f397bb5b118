// winograd_rows.h — 1-D Winograd F(m, r) along the kernel's rows (the channel-lane forward's
// winograd_rows: conv2d_winograd_rows.inl): m output rows of a column from n = m + r - 1 input rows,
// y = AT [(G g) (.) (BT d)] for the correlation y[i] = sum_k g[k] d[i + k]. Cook-Toom over the points
// 0, +-1, +-2 (and +-1/2 for F(4, 5)) and infinity; F(2, r) is winograd.h's one-axis matrices.
// Measured in float32 against a float64 reference (lenet.conv2's 6 x 5 x 5 sums, random [-1, 1)
// data): both F(2, 5) and F(4, 5) err about 2x the direct sum, well inside the 4x the tests allow
// for 2-D F(2x2, 5x5). G is applied by the driver in double and rounded once.
#pragma once

#include "winograd.h"

namespace fastconv {
namespace cpu {

template <int M, int R>
struct WinogradRows;

template <int R>
struct WinogradRows<2, R> {
  static constexpr int m = 2, r = R, n = R + 1;
  static constexpr const auto& BT = Winograd<R>::BT;
  static constexpr const auto& G = Winograd<R>::G;
  static constexpr const auto& AT = Winograd<R>::AT;
};

template <>
struct WinogradRows<4, 5> {
  static constexpr int m = 4, r = 5, n = 8;
  static constexpr double BT[8][8] = {{-1, 0, 5.25, 0, -5.25, 0, 1, 0},
                                      {0, 1, 1, -4.25, -4.25, 1, 1, 0},
                                      {0, -1, 1, 4.25, -4.25, -1, 1, 0},
                                      {0, 0.5, 0.25, -2.5, -1.25, 2, 1, 0},
                                      {0, -0.5, 0.25, 2.5, -1.25, -2, 1, 0},
                                      {0, 2, 4, -2.5, -5, 0.5, 1, 0},
                                      {0, -2, 4, 2.5, -5, -0.5, 1, 0},
                                      {0, -1, 0, 5.25, 0, -5.25, 0, 1}};
  static constexpr double G[8][5] = {
      {-1, 0, 0, 0, 0},
      {-2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9},
      {-2.0 / 9, 2.0 / 9, -2.0 / 9, 2.0 / 9, -2.0 / 9},
      {1.0 / 90, 1.0 / 45, 2.0 / 45, 4.0 / 45, 8.0 / 45},
      {1.0 / 90, -1.0 / 45, 2.0 / 45, -4.0 / 45, 8.0 / 45},
      {32.0 / 45, 16.0 / 45, 8.0 / 45, 4.0 / 45, 2.0 / 45},
      {32.0 / 45, -16.0 / 45, 8.0 / 45, -4.0 / 45, 2.0 / 45},
      {0, 0, 0, 0, 1}};
  static constexpr double AT[4][8] = {{1, 1, 1, 1, 1, 1, 1, 0},
                                      {0, 1, -1, 2, -2, 0.5, -0.5, 0},
                                      {0, 1, 1, 4, 4, 0.25, 0.25, 0},
                                      {0, 1, -1, 8, -8, 0.125, -0.125, 1}};
};

}  // namespace cpu
}  // namespace fastconv
