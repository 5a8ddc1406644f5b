/*
 * prims.h -- the row primitives every normalizer is assembled from.
 *
 * One table of function pointers per (kernel target, data type). The
 * tables are filled by the kernels_<target>.c files from the single template
 * in prims_impl.h; the drivers in driver.c choose a table once per call
 * (dispatch.h) and never contain arithmetic loops of their own.
 *
 * T is the storage type of the data, A the accumulation type (float for
 * float32 data, double for float64 data), W the type of the per-element
 * parameters (weight, bias, residual bias: T for float32 and float64 data,
 * float for 16-bit data, which is stored as uint16_t bit patterns).
 *
 * The element-wise primitives (normalize, residual_add, backward_apply and
 * their wide forms) give every element the same operations, whether it falls
 * in a loop of pairs, of vectors or in the scalar tail (SFMA in prims_impl.h):
 * a row split into several calls at any element has the bits of one call.
 */
#ifndef FASTNORM_PRIMS_H
#define FASTNORM_PRIMS_H

#include <stddef.h>
#include <stdint.h>

/* the most rows the statistics primitives take at once (stat_rows), and the
 * rows backward_apply_rows takes */
#define FN_MAX_ROWS 4

/* Elements a row reduction adds in registers before it adds the partial sum
 * in double (prims_rows_impl.h): the chunks of the statistics passes, which
 * normalize_stream also takes another row in, and the most elements of
 * another row whose sums backward_apply_stream takes. */
#define FN_CHUNK ((int64_t)1024)

#define FN_DECLARE_PRIMS(SUFFIX, T, A, W)                                                  \
    typedef struct {                                                                    \
        /* sum of x */                                                                  \
        A (*sum)(const T *x, int64_t n);                                                \
        /* sums of d = x - mu and of d^2: the centered second pass */                   \
        void (*centered_sums)(const T *x, int64_t n, A mu, A *sum_d, A *sum_d2);        \
        /* sum of x^2 */                                                                \
        A (*sum_sq)(const T *x, int64_t n);                                             \
        /* s = x + r (+ bias; may be NULL); s may be x or r. next_r and next_s (both  \
         * or neither NULL) are the rows used after these, prefetched meanwhile. */     \
        void (*residual_add)(const T *x, const T *r, const W *bias, T *s, int64_t n,    \
                             const T *next_r, T *next_s);                               \
        /* y = ((x - mu) - c) * rstd * w + b; w and b may be NULL. next and next_y   \
         * (both or neither NULL) are the rows used after these: prefetched meanwhile */ \
        void (*normalize)(const T *x, T *y, int64_t n, A mu, A c, A rstd, const W *w,   \
                          const W *b, const T *next, T *next_y);                        \
        /* with xh = (x - mu) * rstd and g = dy * w: sums[0] = sum g,                   \
         * sums[1] = sum g * xh, sums[2] = sum xh */                                    \
        void (*backward_sums)(const T *dy, const T *x, int64_t n, A mu, A rstd,         \
                              const W *w, A sums[3]);                                   \
        /* with xh = (x - mu) * rstd - c and g = dy * w:                                \
         * dx = rstd * (g - mg - xh * mgx) (+ ds); dw_acc += dy * xh; db_acc += dy.    \
         * w, dw_acc, db_acc and ds may be NULL (ds: a gradient added to dx before  \
         * its rounding, the fused residual add's); next_dy, next_x and next_dx (all  \
         * or none NULL) are the rows used after these, prefetched meanwhile. */      \
        void (*backward_apply)(const T *dy, const T *x, T *dx, int64_t n, A mu, A c,    \
                               A rstd, const W *w, A mg, A mgx, A *dw_acc, A *db_acc,   \
                               const T *ds, const T *next_dy, const T *next_x,          \
                               T *next_dx);                                             \
        /* dst += src, the step of the partial-sum tree */                              \
        void (*add)(A *dst, const A *src, int64_t n);                                   \
        /* Channel primitives (group, instance, batch norm...). A segment is the run  \
         * of one channel's contiguous elements (channels-first layouts); a "cols"   \
         * primitive takes `rows` consecutive rows of n channels (channels-last),    \
         * with per-column coefficient vectors of n elements. accumulate = 1 adds    \
         * the result to what y / dx hold. */                                         \
        /* y (+)= (x - mu) * a + b */                                                   \
        void (*scale_shift)(const T *x, T *y, int64_t n, A mu, A a, A b, int accumulate); \
        void (*scale_shift_cols)(const T *x, T *y, int64_t rows, int64_t n, const A *mu, \
                                 const A *a, const A *b, int accumulate);               \
        /* dx (+)= a * dy + b * ((x - mu) * r) + k */                                   \
        void (*affine_backward)(const T *dy, const T *x, T *dx, int64_t n, A mu, A r,    \
                                A a, A b, A k, int accumulate);                         \
        void (*affine_backward_cols)(const T *dy, const T *x, T *dx, int64_t rows,       \
                                     int64_t n, const A *mu, const A *r, const A *a,    \
                                     const A *b, const A *k, int accumulate);           \
        /* per column, over the rows (ld elements apart): acc_d += x - mu,            \
         * acc_d2 += (x - mu)^2; mu NULL means 0, acc_d2 may be NULL */               \
        void (*col_moments_acc)(const T *x, int64_t ld, int64_t rows, int64_t n,       \
                                const A *mu, A *acc_d, A *acc_d2);                     \
        /* per column, over the rows, with xh = (x - mu) * r and g = dy * w[row]      \
         * (w NULL: g = dy): acc_dy += g, acc_dyd += g * xh, acc_d += xh (acc_d may   \
         * be NULL); rows of dy and x lddy and ldx elements apart */                   \
        void (*col_backward_acc)(const T *dy, int64_t lddy, const T *x, int64_t ldx,   \
                                 int64_t rows, int64_t n, const A *mu, const A *r,     \
                                 const W *w, A *acc_dy, A *acc_dyd, A *acc_d);         \
        /* Columns normalized over the rows (a normalized axis that is not the       \
         * last): statistics per column, parameters per row.                         \
         * y = ((x - mu) * r + k) * w[row] + b[row]; w and b may be NULL. next_x and  \
         * next_y (both or neither NULL): the block used after this one, with the     \
         * same row strides, prefetched meanwhile. */                                 \
        void (*normalize_cols)(const T *x, int64_t ldx, T *y, int64_t ldy, int64_t rows, \
                               int64_t n, const A *mu, const A *r, const A *k,         \
                               const W *w, const W *b, const T *next_x, T *next_y);    \
        /* with xh = (x - mu) * r - c and g = dy * w[row] (w NULL: g = dy):           \
         * dx = r * (g - mg - xh * mgx) per element; per row, dw_acc[row] +=          \
         * sum dy * xh and db_acc[row] += sum dy over the n columns (either may be    \
         * NULL); next_dy, next_x, next_dx (all or none NULL): the next block, with   \
         * the same row strides, prefetched meanwhile */                               \
        void (*backward_apply_cols)(const T *dy, int64_t lddy, const T *x, int64_t ldx, \
                                    T *dx, int64_t lddx, int64_t rows, int64_t n,      \
                                    const A *mu, const A *r, const A *c, const A *mg,  \
                                    const A *mgx, const W *w, A *dw_acc, A *db_acc,    \
                                    const T *next_dy, const T *next_x, T *next_dx);    \
        /* The row read once (16-bit data): widen_sum and widen_sum_sq return what    \
         * sum and sum_sq return and write the row, widened to A, to xa; the "wide"   \
         * primitives are centered_sums and normalize reading that copy instead of  \
         * x, with the same arithmetic, so the same results. nonan = 1: the caller    \
         * guarantees that no result is NaN (its store may skip NaN handling). */      \
        A (*widen_sum)(const T *x, A *xa, int64_t n);                                   \
        A (*widen_sum_sq)(const T *x, A *xa, int64_t n);                                \
        void (*centered_sums_wide)(const A *xa, int64_t n, A mu, A *sum_d, A *sum_d2);  \
        void (*normalize_wide)(const A *xa, T *y, int64_t n, A mu, A c, A rstd,         \
                               const W *w, const W *b, const T *next, T *next_y,        \
                               int nonan);                                              \
        /* backward_sums that also writes dy and x, widened to A, to dya and xa;      \
         * backward_apply reading those copies instead of dy and x (next_* still      \
         * the rows of T used after these): the same results */                       \
        void (*backward_sums_wide)(const T *dy, const T *x, A *dya, A *xa, int64_t n,    \
                                   A mu, A rstd, const W *w, A sums[3]);                 \
        void (*backward_apply_wide)(const A *dya, const A *xa, T *dx, int64_t n, A mu,   \
                                    A c, A rstd, const W *w, A mg, A mgx, A *dw_acc,     \
                                    A *db_acc, const T *ds, const T *next_dy,            \
                                    const T *next_x, T *next_dx);                        \
        /* scale_shift (accumulate = 0) reading x's widened copy xa */                    \
        void (*scale_shift_wide)(const A *xa, T *y, int64_t n, A mu, A a, A b);           \
        /* widen_sum (sq = 0) or widen_sum_sq (sq = 1) of `rows` rows at once (2 or  \
         * stat_rows: x[k] into xa[k] and out[k]), and centered_sums_wide of `rows`  \
         * rows (NULL in the tables without it): each row's results the same as     \
         * alone */                                                                   \
        void (*widen_sums_rows)(const T *const *x, A *const *xa, int rows, int64_t n,    \
                                int sq, A *out);                                         \
        void (*centered_sums_wide_rows)(const A *const *xa, int rows, int64_t n,         \
                                        const A *mu, A *sum_d, A *sum_d2);               \
        /* backward_sums (dya0 NULL) or backward_sums_wide of two rows at once */        \
        void (*backward_sums2)(const T *dy0, const T *x0, const T *dy1, const T *x1,     \
                               A *dya0, A *xa0, A *dya1, A *xa1, int64_t n,              \
                               const A mu[2], const A rstd[2], const W *w, A sums[2][3]); \
        /* the most rows widen_sums_rows and centered_sums_wide_rows take at once */    \
        int stat_rows;                                                                  \
        /* normalize writing y with streaming stores (no prefetch of next_y): y on a   \
         * 64-byte boundary, n a whole number of 64-byte lines; with sx not NULL,      \
         * also the statistics pass of another row of sn elements (any number) from    \
         * sx, by the same chunks: sums = 1 its sum of squares into ssum[0] (sum_sq),  \
         * sums = 2 its sums of d = x - sshift and of d^2 into ssum[0] and ssum[1]     \
         * (centered_sums). NULL in the tables without it. */                          \
        void (*normalize_stream)(const T *x, T *y, int64_t n, A mu, A c, A rstd,        \
                                 const W *w, const W *b, const T *next, const T *sx,    \
                                 int64_t sn, A sshift, int sums, A ssum[2]);            \
        /* backward_apply of FN_MAX_ROWS rows read as stored: row k's dy[k], x[k],   \
         * dx[k], ds[k] (ds NULL: none) and constants mu[k] ... mgx[k]; each row's dx  \
         * and the partials the same as backward_apply row after row */               \
        void (*backward_apply_rows)(const T *const *dy, const T *const *x, T *const *dx, \
                                    int64_t n, const A *mu, const A *c, const A *rstd,  \
                                    const W *w, const A *mg, const A *mgx, A *dw_acc,   \
                                    A *db_acc, const T *const *ds);                     \
        /* backward_apply (no next_dx) writing dx with streaming stores: dx on a     \
         * 64-byte boundary, n a whole number of 64-byte lines; with sdy not NULL,    \
         * also backward_sums's sums of the sn elements (at most FN_CHUNK) of another \
         * row from sdy, sx, with its mean smu, rstd srstd and weight sw (NULL: none  \
         * where w is NULL), into sums: as backward_sums gives for those elements     \
         * alone (a row of sn elements). NULL in the tables without it. */            \
        void (*backward_apply_stream)(const T *dy, const T *x, T *dx, int64_t n, A mu,  \
                                      A c, A rstd, const W *w, A mg, A mgx, A *dw_acc,  \
                                      A *db_acc, const T *ds, const T *next_dy,         \
                                      const T *next_x, const T *sdy, const T *sx,       \
                                      int64_t sn, const W *sw, A smu, A srstd,          \
                                      A sums[3]);                                       \
        /* Short rows, `rows` of them ldx (ldy) elements apart, each as the          \
         * primitives above take it alone (the same bits), in one call: their         \
         * statistics, LayerNorm's in one pass (centered = 1: first[k] = sum of the   \
         * row's first m elements / m, then centered_sums around it into sums[k]) or  \
         * two (centered = 2: first[k] = sum, then centered_sums around first[k] / n), \
         * RMSNorm's (centered = 0: sums[k][0] = sum_sq); and their normalize, row k   \
         * with its                                                                   \
         * mu[k], c[k], rstd[k], the same w and b, the x and y rows `ahead` rows on   \
         * fetched meanwhile where they are among the `avail` rows from x and y on */  \
        void (*stats_rows)(const T *x, int64_t ldx, int64_t rows, int64_t n, int64_t m, \
                           int centered, A *first, A (*sums)[2], int64_t ahead,        \
                           int64_t avail);                                              \
        void (*normalize_rows)(const T *x, int64_t ldx, T *y, int64_t ldy, int64_t rows, \
                               int64_t n, const A *mu, const A *c, const A *rstd,       \
                               const W *w, const W *b, int64_t ahead, int64_t avail);  \
        /* The same for the backward: backward_sums of each row (row k with mu[k],      \
         * rstd[k]) into sums[k]; then backward_apply of each row, in row order,       \
         * with its constants, the same w, partials dw_acc and db_acc, and ds (NULL:   \
         * none) ldds elements apart; the rows `ahead` rows on fetched meanwhile      \
         * where they are among the `avail` rows from dy, x and dx on */               \
        void (*backward_sums_block)(const T *dy, int64_t lddy, const T *x, int64_t ldx, \
                                    int64_t rows, int64_t n, const A *mu, const A *rstd, \
                                    const W *w, A (*sums)[3], int64_t ahead,            \
                                    int64_t avail);                                     \
        void (*backward_apply_block)(const T *dy, int64_t lddy, const T *x, int64_t ldx, \
                                     T *dx, int64_t lddx, const T *ds, int64_t ldds,     \
                                     int64_t rows, int64_t n, const A *mu, const A *c,  \
                                     const A *rstd, const W *w, const A *mg,            \
                                     const A *mgx, A *dw_acc, A *db_acc, int64_t ahead, \
                                     int64_t avail);                                    \
    } fn_prims_##SUFFIX;

FN_DECLARE_PRIMS(f32, float, float, float)
FN_DECLARE_PRIMS(f64, double, double, double)
/* 16-bit data (bit patterns), float accumulation and parameters */
FN_DECLARE_PRIMS(f16, uint16_t, float, float)
FN_DECLARE_PRIMS(bf16, uint16_t, float, float)

typedef struct {
    const fn_prims_f32 *f32;
    const fn_prims_f64 *f64;
    const fn_prims_f16 *f16;
    const fn_prims_bf16 *bf16;
    /* dst = src, n bytes, written with streaming (non-temporal) stores, which
     * skip the read of each destination line that an ordinary store of data
     * beyond the cache costs; NULL where the instruction set has none.
     * stream_fence orders them before later stores of the thread. */
    void (*stream_copy)(void *dst, const void *src, size_t n);
    void (*stream_fence)(void);
} fn_prims;

/* The kernel files' tables. A target's table holds every data type; a
 * table that is part of a target holds only what it adds (NULL elsewhere),
 * and dispatch.c composes the target from it and the tables below it (see
 * fn_targets there). Each is defined only where its file is built
 * (FASTNORM_HAVE_AVX2, FASTNORM_HAVE_AVX512, FASTNORM_HAVE_BF16_CVT). */
extern const fn_prims fn_prims_scalar;     /* kernels_scalar.c: every data type */
extern const fn_prims fn_prims_avx2;       /* kernels_avx2.c: every data type */
/* kernels_avx512.c: float16 and bfloat16, the AVX2 loops' vector pairs in
 * 512-bit registers (the avx2 target's bits) */
extern const fn_prims fn_prims_avx512;
/* kernels_avx512_bf16.c: bfloat16 rounded by the AVX-512 BF16 instruction (the
 * integer rounding's bits), in the loops of the avx2 and avx512 targets */
extern const fn_prims fn_prims_avx2_bf16;
extern const fn_prims fn_prims_avx512_bf16;

/* Data types and directions, as dispatch.c's per-row-length choices index
 * them; FN_DT(SUF) is the index of the table member SUF (f32, f64, f16, bf16). */
enum { FN_DT_f32, FN_DT_f64, FN_DT_f16, FN_DT_bf16, FN_NDTYPES };
enum { FN_FORWARD, FN_BACKWARD, FN_NDIRS };
#define FN_DT(suf) FN_DT_IDX_(suf)
#define FN_DT_IDX_(suf) FN_DT_##suf

/* How many rows ahead a pass over consecutive rows prefetches: while a row
 * is processed, the rows that many rows on are fetched, one cache line per
 * line of this row. About FN_FETCH_BYTES of each array ahead, at least the
 * next row and at most FN_FETCH_ROWS_MAX rows. (The row drivers pass the
 * rows to fetch to the primitives, never beyond a thread's rows; the column
 * primitives fetch the rows that far on at the columns they work on, past
 * their block's end too.) The next row alone is too close: its fetch starts
 * in the last of a row's passes, and the loads of the next row's first pass
 * then wait for the memory; much further ahead, the fetched lines compete
 * with the rows in use (bench/choices.md, "Prefetch distance"). */
#define FN_FETCH_BYTES ((int64_t)8192)
/* normalize_stream fetches the next rows into L2 instead of L1 where the row
 * and the parameters it reads take more than this many bytes: the next row
 * fetched into L1 then pushed out the lines in use, which came back from L2
 * while the streaming stores waited (bench/choices.md, "Weight and bias
 * together in the streamed forward"). */
#define FN_STREAM_FETCH_L2_BYTES ((int64_t)32768)
#define FN_FETCH_ROWS_MAX ((int64_t)8)
static inline int64_t fn_fetch_rows(int64_t row_bytes) {
    const int64_t r = row_bytes > 0 ? FN_FETCH_BYTES / row_bytes : 1;
    return r < 1 ? 1 : r > FN_FETCH_ROWS_MAX ? FN_FETCH_ROWS_MAX : r;
}

#endif /* FASTNORM_PRIMS_H */
