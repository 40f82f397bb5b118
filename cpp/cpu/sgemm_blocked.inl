// sgemm_blocked.inl — the cache-blocked GEMM loop nest (Goto/BLIS style) shared by every ISA.
//
// Include it INSIDE an anonymous namespace of an ISA's translation unit, after defining the
// micro-kernel type, so each ISA gets its own file-local copy compiled with its own flags.
// The micro-kernel UK provides:
//   static constexpr int64_t MR, NR, MC, KC, NC;   (MC % MR == 0, NC % NR == 0)
//   static void run(int64_t kc, const float* pa, const float* pb, float* c, int64_t ldc, bool load_c);
// computing the MR x NR tile c (=, or += when load_c) sum_k pa[k*MR + i] * pb[k*NR + j], and
//   static void run_a(int64_t kc, const float* a, int64_t rs_a, int64_t cs_a, const float* pb, ...);
// the same with A's element (i, k) read in place at a[i*rs_a + k*cs_a], in the same order.
// Packing copies A into MR-row slivers and B into NR-column slivers (zero-padded at the edges),
// so the micro-kernel always runs full tiles; partial tiles go through a small local buffer.
// A product at most NR columns wide (Dense's logits layers, n = 10) meets each A element once:
// there A is read in place (a full sliver) or packed sliver by sliver (the ragged last one), which
// skips a copy of all of A and gives the packed path's bits.

// Grow-only float buffer, file-local to the including ISA TU (see sgemm's packing buffers).
// new[] throws std::bad_alloc on failure (MemoryError in Python).
struct PackBuffer {
  float* p = nullptr;
  std::size_t n = 0;
  PackBuffer() = default;
  PackBuffer(const PackBuffer&) = delete;
  PackBuffer& operator=(const PackBuffer&) = delete;
  ~PackBuffer() { delete[] p; }
  float* get(std::size_t want) {
    if (n < want) {
      delete[] p;
      p = nullptr;
      n = 0;
      p = new float[want];
      n = want;
    }
    return p;
  }
};

template <class UK>
struct BlockedSgemm {
  static void pack_a(const fastconv::cpu::GemmArgs& g, int64_t i0, int64_t mc, int64_t p0,
                     int64_t kc, float* pa) {
    // Step by step (k outer): the sliver is written in order, and its rows are read as MR streams
    // (row-major A) or as MR consecutive floats (transposed A: the weight gradient's x^T).
    for (int64_t s = 0; s < mc; s += UK::MR) {
      const int64_t rows = mc - s < UK::MR ? mc - s : UK::MR;
      float* dst = pa + s * kc;
      const float* src = g.a + (i0 + s) * g.rs_a + p0 * g.cs_a;
      for (int64_t k = 0; k < kc; ++k, dst += UK::MR, src += g.cs_a) {
        int64_t r = 0;
        for (; r < rows; ++r) dst[r] = src[r * g.rs_a];
        for (; r < UK::MR; ++r) dst[r] = 0.0f;
      }
    }
  }

  static void pack_b(const fastconv::cpu::GemmArgs& g, int64_t p0, int64_t kc, int64_t j0,
                     int64_t nc, float* pb) {
    for (int64_t s = 0; s < nc; s += UK::NR) {
      const int64_t cols = nc - s < UK::NR ? nc - s : UK::NR;
      float* dst = pb + s * kc;
      if (g.cs_b == 1) {
        for (int64_t k = 0; k < kc; ++k) {
          const float* src = g.b + (p0 + k) * g.rs_b + (j0 + s);
          float* d = dst + k * UK::NR;
          int64_t j = 0;
          for (; j < cols; ++j) d[j] = src[j];
          for (; j < UK::NR; ++j) d[j] = 0.0f;
        }
      } else {
        // Transposed B (column-contiguous): 16 columns at a time, step by step, so 16 source
        // streams fill a cache line of each sliver row in turn (column by column, each store went
        // to another line; all NR = 32 columns at once, AVX-512's, ran slower than that).
        for (int64_t jb = 0; jb < UK::NR; jb += 16) {
          const int64_t je = jb + 16 < UK::NR ? jb + 16 : UK::NR, jc = je < cols ? je : cols;
          const float* src = g.b + p0 * g.rs_b + (j0 + s) * g.cs_b;
          for (int64_t k = 0; k < kc; ++k, src += g.rs_b) {
            float* d = dst + k * UK::NR;
            int64_t j = jb;
            for (; j < jc; ++j) d[j] = src[j * g.cs_b];
            for (; j < je; ++j) d[j] = 0.0f;
          }
        }
      }
    }
  }

  static void epilogue(const fastconv::cpu::GemmArgs& g, int64_t i0, int64_t rows, int64_t j0,
                       int64_t cols) {
    for (int64_t i = 0; i < rows; ++i) {
      float* c = g.c + (i0 + i) * g.ldc + j0;
      const float bias = g.bias != nullptr ? g.bias[i0 + i] : 0.0f;
      if (g.relu) {
        for (int64_t j = 0; j < cols; ++j) {
          const float v = c[j] + bias;
          c[j] = v < 0.0f ? 0.0f : v;  // NaN stays NaN (ReLU as PyTorch)
        }
      } else {
        for (int64_t j = 0; j < cols; ++j) c[j] += bias;
      }
    }
  }

  static void run(const fastconv::cpu::GemmArgs& g) {
    if (g.m <= 0 || g.n <= 0) return;
    const bool has_epilogue = g.bias != nullptr || g.relu;
    if (g.k <= 0) {
      if (!g.accumulate)
        for (int64_t i = 0; i < g.m; ++i)
          for (int64_t j = 0; j < g.n; ++j) g.c[i * g.ldc + j] = 0.0f;
      if (has_epilogue) epilogue(g, 0, g.m, 0, g.n);
      return;
    }
    // Thread-local packing buffers: grown once, reused by every later call on this thread. A
    // file-local type, not std::vector: a std template instantiated here would be emitted as a
    // weak symbol compiled with this TU's ISA flags and could be the copy the linker keeps for
    // the baseline code (SIGILL on an older CPU).
    thread_local PackBuffer pa_buf, pb_buf;
    float* pa = pa_buf.get(std::size_t(UK::MC * UK::KC));
    float* pb = pb_buf.get(std::size_t(UK::KC * UK::NC));
    alignas(64) float tile[UK::MR * UK::NR];
    const bool a_in_place = g.n <= UK::NR;

    for (int64_t jc = 0; jc < g.n; jc += UK::NC) {
      const int64_t nc = g.n - jc < UK::NC ? g.n - jc : UK::NC;
      for (int64_t pc = 0; pc < g.k; pc += UK::KC) {
        const int64_t kc = g.k - pc < UK::KC ? g.k - pc : UK::KC;
        const bool load_c = g.accumulate || pc > 0;
        const bool last_k = pc + kc >= g.k;
        pack_b(g, pc, kc, jc, nc, pb);
        for (int64_t ic = 0; ic < g.m; ic += UK::MC) {
          const int64_t mc = g.m - ic < UK::MC ? g.m - ic : UK::MC;
          if (!a_in_place) pack_a(g, ic, mc, pc, kc, pa);
          for (int64_t jr = 0; jr < nc; jr += UK::NR) {
            const int64_t nr = nc - jr < UK::NR ? nc - jr : UK::NR;
            for (int64_t ir = 0; ir < mc; ir += UK::MR) {
              const int64_t mr = mc - ir < UK::MR ? mc - ir : UK::MR;
              float* c = g.c + (ic + ir) * g.ldc + (jc + jr);
              const float* a = g.a + (ic + ir) * g.rs_a + pc * g.cs_a;
              const bool a_read = a_in_place && mr == UK::MR;
              if (a_in_place && !a_read) pack_a(g, ic + ir, mr, pc, kc, pa + ir * kc);
              float* dst = mr == UK::MR && nr == UK::NR ? c : tile;
              const int64_t ld = dst == c ? g.ldc : UK::NR;
              if (dst == tile && load_c)
                for (int64_t i = 0; i < mr; ++i)
                  for (int64_t j = 0; j < nr; ++j) tile[i * UK::NR + j] = c[i * g.ldc + j];
              if (a_read)
                UK::run_a(kc, a, g.rs_a, g.cs_a, pb + jr * kc, dst, ld, load_c);
              else
                UK::run(kc, pa + ir * kc, pb + jr * kc, dst, ld, load_c);
              if (dst == tile)
                for (int64_t i = 0; i < mr; ++i)
                  for (int64_t j = 0; j < nr; ++j) c[i * g.ldc + j] = tile[i * UK::NR + j];
              if (last_k && has_epilogue) epilogue(g, ic + ir, mr, jc + jr, nr);
            }
          }
        }
      }
    }
  }

  // Pre-packed operands (see PackedGemmArgs): K is cut into KC chunks; within one, each B sliver
  // (KC x NR, L1-resident) meets every A sliver of the chunk (the chunk of A stays in L2).
  static void run_packed(const fastconv::cpu::PackedGemmArgs& g) {
    if (g.m <= 0 || g.n <= 0) return;
    const bool has_epilogue = g.bias != nullptr || g.relu;
    fastconv::cpu::GemmArgs e{};
    e.c = g.c;
    e.ldc = g.ldc;
    e.bias = g.bias;
    e.relu = g.relu;
    if (g.k <= 0) {
      if (!g.accumulate)
        for (int64_t i = 0; i < g.m; ++i)
          for (int64_t j = 0; j < g.n; ++j) g.c[i * g.ldc + j] = 0.0f;
      if (has_epilogue) epilogue(e, 0, g.m, 0, g.n);
      return;
    }
    alignas(64) float tile[UK::MR * UK::NR];
    for (int64_t pc = 0; pc < g.k; pc += UK::KC) {
      const int64_t kc = g.k - pc < UK::KC ? g.k - pc : UK::KC;
      const bool load_c = g.accumulate || pc > 0;
      const bool last_k = pc + kc >= g.k;
      for (int64_t jr = 0; jr < g.n; jr += UK::NR) {
        const int64_t nr = g.n - jr < UK::NR ? g.n - jr : UK::NR;
        const float* pb = g.pb + jr * g.k + pc * UK::NR;  // sliver jr/NR, row pc
        for (int64_t ir = 0; ir < g.m; ir += UK::MR) {
          const int64_t mr = g.m - ir < UK::MR ? g.m - ir : UK::MR;
          const float* pa = g.pa + ir * g.k + pc * UK::MR;
          float* c = g.c + ir * g.ldc + jr;
          if (mr == UK::MR && nr == UK::NR) {
            UK::run(kc, pa, pb, c, g.ldc, load_c);
          } else {
            if (load_c)
              for (int64_t i = 0; i < mr; ++i)
                for (int64_t j = 0; j < nr; ++j) tile[i * UK::NR + j] = c[i * g.ldc + j];
            UK::run(kc, pa, pb, tile, UK::NR, load_c);
            for (int64_t i = 0; i < mr; ++i)
              for (int64_t j = 0; j < nr; ++j) c[i * g.ldc + j] = tile[i * UK::NR + j];
          }
          if (last_k && has_epilogue) epilogue(e, ir, mr, jr, nr);
        }
      }
    }
  }
};
