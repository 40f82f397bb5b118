// winograd.h — the transform matrices of Winograd F(2x2, 3x3) and F(2x2, 5x5): one place for the
// driver (weights, G) and the AVX-512 kernel (inputs, B^T; outputs, A^T). Y = A^T [(G g G^T) (.)
// (B^T d B)] A is the 2x2 correlation output of an n x n input patch d with an r x r kernel g,
// n = r + 1. F(2, 3) is Lavin & Gray's (points 0, 1, -1, inf: +-1 and 1/2 only, exact); F(2, 5)
// uses the points 0, 1, -1, 2, -2, inf (Cook-Toom; B^T and A^T are small integers, G has
// 1/6, 1/12, 1/24: the driver computes G g G^T in double and rounds once).
// The 3x3 weight gradient is the 3x3 correlation of a 4x4 input patch with a 2x2 tile of dy:
// F(3x3, 2x2) over the same points, dW = AW^T [(GW dy GW^T) (.) (B^T d B)] AW summed over the
// tiles, with the same B^T (so the input transform is shared), GW (4 x 2) and AW^T (3 x 4).
// (F(5x5, 2x2) was measured too: A_W^T's 8s and 16s made its dW 30x less accurate than the
// direct sum, so the 5x5 weight gradients use GW / AWT along one axis only: conv2d_bww_rows.inl.)
#pragma once

namespace fastconv {
namespace cpu {

template <int R>
struct Winograd;

template <>
struct Winograd<3> {
  static constexpr int r = 3, n = 4;
  static constexpr double BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static constexpr double AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
  static constexpr double GW[4][2] = {{1, 0}, {0.5, 0.5}, {0.5, -0.5}, {0, 1}};
  static constexpr double AWT[3][4] = {{1, 1, 1, 0}, {0, 1, -1, 0}, {0, 1, 1, -1}};
};

template <>
struct Winograd<5> {
  static constexpr int r = 5, n = 6;
  static constexpr double BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0},
                                      {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0},
                                      {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr double G[6][5] = {{1.0 / 4, 0, 0, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6, 1.0 / 3, 2.0 / 3},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6, -1.0 / 3, 2.0 / 3},
                                     {0, 0, 0, 0, 1}};
  static constexpr double AT[2][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 1}};
};

// The transpose of a constant matrix, as rows of coefficients: the adjoint transforms (bwd_data
// as the forward's transpose) apply B and A where the forward applies B^T and A^T.
template <int Rows, int Cols>
struct Transposed {
  double m[Cols][Rows];
};
template <int Rows, int Cols>
constexpr Transposed<Rows, Cols> transpose(const double (&a)[Rows][Cols]) {
  Transposed<Rows, Cols> t{};
  for (int i = 0; i < Rows; ++i)
    for (int j = 0; j < Cols; ++j) t.m[j][i] = a[i][j];
  return t;
}

}  // namespace cpu
}  // namespace fastconv
