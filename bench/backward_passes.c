/*
 * backward_passes.c -- a model of the float32 LayerNorm row backward's passes
 * over memory, to see what binds it on rows that stream from memory.
 *
 *   cc -O2 -mavx2 -mfma bench/backward_passes.c -o backward_passes
 *   ./backward_passes [rows] [n] [rounds]          (default 8192 4096 15)
 *
 * One thread, every variant in the same process, the order rotated each round,
 * the best round of each. The kernels are simplified copies of the library's
 * arithmetic (8-float AVX2 vectors, two per step, statistics from the saved
 * mean and rstd, dx streamed from the registers unless a variant says it
 * goes through a buffer, the parameter partials
 * dweight/dbias read-modified-written per row, the next row prefetched one
 * line per line during the dx pass), without its tails or threads:
 *
 *   floor       reads dy and x, writes dx with streaming stores: the floor
 *   two passes  per row: the statistics pass, then the dx pass (the library's
 *               order)
 *   two, buffer the same, dx written as the library writes streamed rows: a
 *               chunk at a time into a buffer in L1, then streamed out
 *   fused       the next row's statistics pass in the same loop as this row's
 *               dx pass, the row after it prefetched meanwhile
 *   fused, buf  the same, dx through the chunk buffer
 *   dx only     the dx pass alone, with the partials (constants instead of
 *               the statistics): what no order of the two passes beats
 *   dx, no part the dx pass alone without the partials
 *
 * Each line gives the time, the floor's time over it and the time per row.
 * bench/choices.md, "The backward of long rows", has a run.
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long R, N;
static float *X, *DY, *DX, *W, *DW, *DB, *MU, *RS;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *alloc_floats(long n) {
    const size_t bytes = ((size_t)n * sizeof(float) + 4095) / 4096 * 4096;
    float *p = aligned_alloc(4096, bytes);
    if (!p) {
        perror("aligned_alloc");
        exit(1);
    }
    memset(p, 0, bytes);
    return p;
}

/* a row's sums: g = dy * w, xh = (x - mu) * rstd; sum g, sum g * xh, sum xh */
typedef struct {
    __m256 g[2], gx[2], xh[2];
} sums_t;

static sums_t sums_zero(void) {
    sums_t s;
    for (int h = 0; h < 2; h++) s.g[h] = s.gx[h] = s.xh[h] = _mm256_setzero_ps();
    return s;
}

static inline void sums_step(sums_t *s, const float *dy, const float *x, long j, __m256 mu,
                             __m256 r) {
    for (int h = 0; h < 2; h++) {
        const long q = j + 8 * h;
        const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + q), mu), r);
        const __m256 g = _mm256_mul_ps(_mm256_loadu_ps(dy + q), _mm256_loadu_ps(W + q));
        s->g[h] = _mm256_add_ps(s->g[h], g);
        s->gx[h] = _mm256_fmadd_ps(g, xh, s->gx[h]);
        s->xh[h] = _mm256_add_ps(s->xh[h], xh);
    }
}

static float hsum(__m256 a, __m256 b) {
    const __m256 v = _mm256_add_ps(a, b);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_hadd_ps(q, q);
    q = _mm_hadd_ps(q, q);
    return _mm_cvtss_f32(q);
}

/* the dx pass's constants for row i */
typedef struct {
    __m256 mu, c, r, mg, mgx;
} consts_t;

static consts_t row_consts(long i, const sums_t *s) {
    const float n = (float)N, c = hsum(s->xh[0], s->xh[1]) / n,
                mg = hsum(s->g[0], s->g[1]) / n,
                mgx = hsum(s->gx[0], s->gx[1]) / n - c * mg;
    consts_t k = {_mm256_set1_ps(MU[i]), _mm256_set1_ps(c), _mm256_set1_ps(RS[i]),
                  _mm256_set1_ps(mg), _mm256_set1_ps(mgx)};
    return k;
}

/* dx of the 16 elements from j into out (the destination of element j):
 * streamed (stream) or stored into a buffer in L1 */
static inline void dx_step(const consts_t *k, const float *dy, const float *x, long j, float *out,
                           int stream, int partials) {
    for (int h = 0; h < 2; h++) {
        const long q = j + 8 * h;
        const __m256 d = _mm256_loadu_ps(dy + q);
        const __m256 xh =
            _mm256_sub_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + q), k->mu), k->r), k->c);
        const __m256 g = _mm256_mul_ps(d, _mm256_loadu_ps(W + q));
        const __m256 v = _mm256_mul_ps(k->r, _mm256_fnmadd_ps(xh, k->mgx, _mm256_sub_ps(g, k->mg)));
        if (stream) _mm256_stream_ps(out + 8 * h, v);
        else _mm256_store_ps(out + 8 * h, v);
        if (partials) {
            _mm256_store_ps(DW + q, _mm256_fmadd_ps(d, xh, _mm256_load_ps(DW + q)));
            _mm256_store_ps(DB + q, _mm256_add_ps(_mm256_load_ps(DB + q), d));
        }
    }
}

static inline void fetch_line(const float *dy, const float *x, long j) {
    _mm_prefetch((const char *)(x + j), _MM_HINT_T0);
    _mm_prefetch((const char *)(dy + j), _MM_HINT_T0);
}

static sums_t row_sums(long i) {
    sums_t s = sums_zero();
    const __m256 mu = _mm256_set1_ps(MU[i]), r = _mm256_set1_ps(RS[i]);
    for (long j = 0; j < N; j += 16) sums_step(&s, DY + i * N, X + i * N, j, mu, r);
    return s;
}

static void floor_pass(void) {
    for (long i = 0; i < R * N; i += 8)
        _mm256_stream_ps(DX + i, _mm256_add_ps(_mm256_load_ps(X + i), _mm256_load_ps(DY + i)));
    _mm_sfence();
}

/* dx through a buffer, as the library writes streamed rows: chunks of CHUNK
 * elements into a buffer in L1, each then copied out with streaming stores */
enum { CHUNK = 1024 };
static float chunk_buf[CHUNK] __attribute__((aligned(64)));

/* the chunk buffer's first len elements out to dst with streaming stores */
static void flush_chunk(float *dst, long len) {
    for (long j = 0; j < len; j += 8) _mm256_stream_ps(dst + j, _mm256_load_ps(chunk_buf + j));
}

/* per row: the statistics pass, then the dx pass, CHUNK elements at a time
 * (buffered: each chunk into the buffer, then streamed out) */
static void two_passes(int buffered) {
    for (long i = 0; i < R; i++) {
        const sums_t s = row_sums(i);
        const consts_t k = row_consts(i, &s);
        const int more = i + 1 < R;
        for (long o = 0; o < N; o += CHUNK) {
            const long end = o + CHUNK < N ? o + CHUNK : N;
            for (long j = o; j < end; j += 16) {
                if (more) fetch_line(DY + (i + 1) * N, X + (i + 1) * N, j);
                dx_step(&k, DY + i * N, X + i * N, j,
                        buffered ? chunk_buf + (j - o) : DX + i * N + j, !buffered, 1);
            }
            if (buffered) flush_chunk(DX + i * N + o, end - o);
        }
    }
    _mm_sfence();
}

/* the same with the next row's statistics in the loop of this row's dx, the
 * row after it prefetched meanwhile */
static void fused(int buffered) {
    sums_t s = row_sums(0);
    for (long i = 0; i < R; i++) {
        const consts_t k = row_consts(i, &s);
        const float *dy = DY + i * N, *x = X + i * N;
        const int has_next = i + 1 < R, more = i + 2 < R;
        const long nr = has_next ? i + 1 : i;
        const __m256 mu = _mm256_set1_ps(MU[nr]), r = _mm256_set1_ps(RS[nr]);
        sums_t next = sums_zero();
        for (long o = 0; o < N; o += CHUNK) {
            const long end = o + CHUNK < N ? o + CHUNK : N;
            for (long j = o; j < end; j += 16) {
                if (more) fetch_line(dy + 2 * N, x + 2 * N, j);
                if (has_next) sums_step(&next, dy + N, x + N, j, mu, r);
                dx_step(&k, dy, x, j, buffered ? chunk_buf + (j - o) : DX + i * N + j,
                        !buffered, 1);
            }
            if (buffered) flush_chunk(DX + i * N + o, end - o);
        }
        s = next;
    }
    _mm_sfence();
}

static void dx_only(int partials) {
    const sums_t s = sums_zero();
    for (long i = 0; i < R; i++) {
        const consts_t k = row_consts(i, &s);
        const int more = i + 1 < R;
        for (long j = 0; j < N; j += 16) {
            if (more) fetch_line(DY + (i + 1) * N, X + (i + 1) * N, j);
            dx_step(&k, DY + i * N, X + i * N, j, DX + i * N + j, 1, partials);
        }
    }
    _mm_sfence();
}

int main(int argc, char **argv) {
    R = argc > 1 ? atol(argv[1]) : 8192;
    N = argc > 2 ? atol(argv[2]) : 4096;
    const int rounds = argc > 3 ? atoi(argv[3]) : 15;
    if (R < 1 || N < 16 || N % 16 || rounds < 1) {
        fprintf(stderr, "rows >= 1, n a multiple of 16, rounds >= 1\n");
        return 2;
    }
    X = alloc_floats(R * N);
    DY = alloc_floats(R * N);
    DX = alloc_floats(R * N);
    W = alloc_floats(N);
    DW = alloc_floats(N);
    DB = alloc_floats(N);
    MU = alloc_floats(R);
    RS = alloc_floats(R);
    for (long i = 0; i < R * N; i++) {
        X[i] = (float)(i % 7) - 3;
        DY[i] = (float)(i % 5) - 2;
    }
    for (long i = 0; i < N; i++) W[i] = 1;
    for (long i = 0; i < R; i++) MU[i] = 0.1f, RS[i] = 0.5f;
    enum { NV = 7 };
    const char *names[NV] = {"floor",      "two passes", "two, buffer", "fused",
                             "fused, buf", "dx only",    "dx, no part"};
    double best[NV];
    for (int v = 0; v < NV; v++) best[v] = 1e30;
    for (int round = 0; round < rounds; round++)
        for (int q = 0; q < NV; q++) {
            const int v = (q + round) % NV;
            const double t0 = now();
            switch (v) {
            case 0: floor_pass(); break;
            case 1: two_passes(0); break;
            case 2: two_passes(1); break;
            case 3: fused(0); break;
            case 4: fused(1); break;
            case 5: dx_only(1); break;
            default: dx_only(0); break;
            }
            const double t = now() - t0;
            if (t < best[v]) best[v] = t;
        }
    printf("(%ld, %ld) float32, one thread, best of %d rounds\n", R, N, rounds);
    for (int v = 0; v < NV; v++)
        printf("%-12s %8.2f ms  floor/time %.3f  %.2f us/row\n", names[v], best[v] * 1e3,
               best[0] / best[v], best[v] * 1e6 / R);
    return 0;
}
