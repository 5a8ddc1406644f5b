/*
 * driver.c -- the normalizers, assembled from the row primitives.
 *
 * Each entry point of fastnorm.h splits its rows over fastnorm's threads and
 * calls the primitives of the active kernel table (dispatch.c). No
 * arithmetic loop lives here except the rare exact-range fallback below.
 *
 * Determinism: forward rows are independent, so any split gives the same
 * bits. Parameter gradients are summed per fixed block of rows (the block
 * size depends on the number of rows only), then the blocks are added by a
 * fixed pairwise tree.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#include <pthread.h>
#define FN_PTHREADS 1
#endif

#include "../targets/dispatch.h"
#include "../fastnorm.h"
#include "../targets/fp16.h"
#include "../runtime/pool.h"

int fastnorm_has_threads(void) { return fn_pool_built(); }

int fastnorm_has_openmp(void) { return fn_pool_built(); }

int fastnorm_max_threads(void) { return fn_pool_default_threads(); }

void fastnorm_set_max_threads(int n) { fn_pool_set_limit(n); }

int fastnorm_num_procs(void) { return fn_pool_built() ? fn_pool_usable_cpus() : 1; }

/* fork(): a child forked after the pool started threads has none of them,
 * and runs every call on its calling thread (pool.c); the results are the
 * same bits (they never depend on the thread count), only the speed
 * changes. A child forked before the pool started keeps its threads. */
int fastnorm_serial_after_fork(void) { return fn_pool_serial_after_fork(); }

int fn_threads_for(int requested, int64_t units, int64_t bytes) {
    if (!fn_pool_built() || fn_pool_serial_after_fork()) return 1;
    if (requested <= 1 || units <= 1 || bytes < FN_PARALLEL_MIN_BYTES) return 1;
    const int cpus = fn_pool_usable_cpus();
    if (requested > cpus) requested = cpus;
    return units < requested ? (int)units : requested;
}

/* Runs body(ctx, begin, end) over [0, count) on up to nt threads, the
 * calling thread among them (pool.c: chunks claimed from a shared counter);
 * with nt <= 1 it is a plain call. Every item is computed the same way
 * whatever the split and whichever thread takes it, so results never depend
 * on nt or on the order chunks are claimed in; bodies keep no per-thread
 * state across calls. */
static void fn_parallel_ranges(int nt, int64_t count, fn_range_body body, void *ctx) {
    if (nt <= 1 || count <= 1) {
        body(ctx, 0, count);
        return;
    }
    fn_pool_run(nt, count, body, ctx);
}

/* A per-column loop of the channel drivers (coefficients from per-channel
 * statistics: each column's results from its own inputs alone) over n
 * columns, on up to num_threads threads, FN_COLUMN_BLOCK columns at a time:
 * body(ctx, first, last) for the columns [first, last). With very many
 * channels (batch-layer normalization's M * D) such loops are otherwise a
 * large serial part of a threaded call (bench/choices.md, "Per-channel loops
 * on the threads"). */
#define FN_COLUMN_BLOCK 4096
/* Fewer columns than this stay on the calling thread, where the loops are
 * short against the pool's wake-up. */
#define FN_COLUMN_PARALLEL_MIN ((int64_t)32768)
typedef struct {
    fn_range_body body;
    void *ctx;
    int64_t n;
} fn_columns_ctx;

static void fn_column_blocks(void *vctx, int64_t begin, int64_t end) {
    const fn_columns_ctx *c = (const fn_columns_ctx *)vctx;
    const int64_t last = end * FN_COLUMN_BLOCK < c->n ? end * FN_COLUMN_BLOCK : c->n;
    c->body(c->ctx, begin * FN_COLUMN_BLOCK, last);
}

static void fn_parallel_columns(int num_threads, int64_t n, int64_t column_bytes,
                                fn_range_body body, void *ctx) {
    if (n <= 0) return;
    const int64_t blocks = (n + FN_COLUMN_BLOCK - 1) / FN_COLUMN_BLOCK;
    const int nt =
        n < FN_COLUMN_PARALLEL_MIN ? 1 : fn_threads_for(num_threads, blocks, n * column_bytes);
    fn_columns_ctx c = {body, ctx, n};
    fn_parallel_ranges(nt, blocks, fn_column_blocks, &c);
}

/* Rows per parameter-gradient block: a function of the row count alone, so
 * that the summation order never depends on the thread count. At least 16
 * blocks when there are 64 rows or more (work for the threads), at most 64
 * rows per block (a short sequential chain before the pairwise tree). */
static int64_t fn_grad_block_rows(int64_t rows) {
    int64_t r = (rows + 31) / 32;
    if (r < 4) r = 4;
    if (r > 64) r = 64;
    return r;
}

/* Rows per block of the channel normalizers' column path (channels-last
 * data): about 256 KiB of data, so that the block's two passes run from L2;
 * a function of the shape alone, like the gradient blocks. */
static int64_t fn_chan_block_rows(int64_t channels, int64_t elem_size) {
    int64_t r = (256 * 1024) / (channels * elem_size);
    if (r < 16) r = 16;
    if (r > 256) r = 256;
    return r;
}

/* Columns per chunk of a channel block (channels-last data, L == 1): all C
 * when the block of `rows` rows stays near 256 KiB; otherwise chunks of a
 * multiple of 64 columns near that size, so that very wide rows (few rows of
 * many channels) still give the entry stages several cache-sized items. A
 * function of the shape alone. */
static int64_t fn_chan_block_cols(int64_t channels, int64_t rows, int64_t elem_size) {
    const int64_t budget = (256 * 1024) / elem_size;
    if (rows * channels <= 2 * budget) return channels > 0 ? channels : 1;
    int64_t cb = (budget / rows) / 64 * 64;
    if (cb < 256) cb = 256;
    return cb < channels ? cb : channels;
}

/* Columns per block of the channel normalizers' apply stages (channels-last
 * data): each element reads `coefs` per-channel coefficients of elem_size
 * bytes; where those of all C channels would take more than about 24 KiB,
 * a run of rows is applied a block of this many columns at a time (a
 * multiple of 64), so that the block's coefficients stay in L1 across the
 * rows instead of coming back from further out for every row (few rows of
 * very many channels: batch-layer norm's M * D columns). C otherwise. */
#define FN_APPLY_COEF_BYTES (24 * 1024)
static int64_t fn_apply_block_cols(int64_t channels, int coefs, int64_t elem_size) {
    int64_t cb = FN_APPLY_COEF_BYTES / (coefs * elem_size) / 64 * 64;
    if (cb < 64) cb = 64;
    return cb < channels ? cb : channels;
}

/* Columns per block of the axis path (a normalized axis that is not the
 * last, driver_axis_impl.h): C rows of BL columns near 192 KiB, so that the
 * block's later passes read it from L2; multiples of 16 columns, at most
 * 1024, balanced over the row of L columns. A function of the shape alone. */
#ifndef FN_AXIS_BLOCK_BYTES
#define FN_AXIS_BLOCK_BYTES (192 * 1024)
#endif
static int64_t fn_axis_block_cols(int64_t C, int64_t L, int64_t elem_size) {
    if (L <= 0) return 1;
    int64_t b = FN_AXIS_BLOCK_BYTES / ((C > 0 ? C : 1) * elem_size);
    b -= b % 16;
    if (b < 16) b = 16;
    if (b > 1024) b = 1024;
    const int64_t nblk = (L + b - 1) / b;
    b = (L + nblk - 1) / nblk;
    b = (b + 15) / 16 * 16;
    return b < L ? b : L;
}

/* Items (blocks of columns) per parameter-gradient partial of the axis path:
 * up to 64 partials, at most 64 items each; a function of the item count. */
static int64_t fn_axis_group_items(int64_t items) {
    int64_t g = (items + 63) / 64;
    if (g < 1) g = 1;
    if (g > 64) g = 64;
    return g;
}

/* ---- scratch memory --------------------------------------------------
 * The drivers' scratch (partial statistics, per-channel coefficients) can
 * run to megabytes. Blocks that large come from fresh pages, and faulting
 * them in on every call can cost more than the kernel itself (a batch norm
 * over few rows of many channels). So blocks from FN_SCRATCH_KEEP bytes up
 * to FN_SCRATCH_MAX are kept after use, a few per thread, and handed out
 * again to a later request they fit; a thread's blocks are freed when it
 * exits. Each block starts on a 64-byte boundary (a cache line: vector
 * loads and stores of its start, and of rows of a multiple of 16 floats, split
 * none) and carries its size and the address malloc gave in the 16 bytes
 * before it. */
#define FN_SCRATCH_ALIGN ((size_t)64)
#define FN_SCRATCH_KEEP ((size_t)64 * 1024)
#define FN_SCRATCH_MAX ((size_t)64 * 1024 * 1024)
#define FN_SCRATCH_SLOTS 8

typedef struct {
    char *block[FN_SCRATCH_SLOTS]; /* kept blocks, or NULL */
} fn_scratch_cache;

static size_t fn_scratch_size(const char *block) { return ((const size_t *)block)[-2]; }

static void fn_scratch_release(char *block) { free(((void **)block)[-1]); }

#ifdef FN_PTHREADS
static pthread_key_t fn_scratch_key;
static pthread_once_t fn_scratch_once = PTHREAD_ONCE_INIT;
static int fn_scratch_ready = 0;

static void fn_scratch_destroy(void *vc) {
    fn_scratch_cache *c = (fn_scratch_cache *)vc;
    for (int i = 0; i < FN_SCRATCH_SLOTS; i++)
        if (c->block[i]) fn_scratch_release(c->block[i]);
    free(c);
}

static void fn_scratch_init(void) {
    fn_scratch_ready = pthread_key_create(&fn_scratch_key, fn_scratch_destroy) == 0;
}

static fn_scratch_cache *fn_scratch_cache_get(void) {
    pthread_once(&fn_scratch_once, fn_scratch_init);
    if (!fn_scratch_ready) return NULL;
    fn_scratch_cache *c = (fn_scratch_cache *)pthread_getspecific(fn_scratch_key);
    if (!c) {
        c = (fn_scratch_cache *)calloc(1, sizeof(*c));
        if (c && pthread_setspecific(fn_scratch_key, c) != 0) {
            free(c);
            c = NULL;
        }
    }
    return c;
}
#else
static fn_scratch_cache *fn_scratch_cache_get(void) { return NULL; }
#endif

static int fn_scratch_kept(size_t bytes) {
    return bytes >= FN_SCRATCH_KEEP && bytes <= FN_SCRATCH_MAX;
}

/* malloc for the drivers, 64-byte aligned: NULL when out of memory. */
static void *fn_scratch_alloc(size_t bytes) {
    fn_scratch_cache *c = fn_scratch_kept(bytes) ? fn_scratch_cache_get() : NULL;
    if (c) { /* the smallest kept block that fits */
        int best = -1;
        for (int i = 0; i < FN_SCRATCH_SLOTS; i++)
            if (c->block[i] && fn_scratch_size(c->block[i]) >= bytes &&
                (best < 0 || fn_scratch_size(c->block[i]) < fn_scratch_size(c->block[best])))
                best = i;
        if (best >= 0) {
            char *block = c->block[best];
            c->block[best] = NULL;
            return block;
        }
    }
    /* room for the 16-byte header and the alignment */
    char *raw = (char *)malloc(bytes + 16 + FN_SCRATCH_ALIGN);
    if (!raw) return NULL;
    char *block = raw + 16;
    block += (FN_SCRATCH_ALIGN - (uintptr_t)block % FN_SCRATCH_ALIGN) % FN_SCRATCH_ALIGN;
    ((size_t *)block)[-2] = bytes;
    ((void **)block)[-1] = raw;
    return block;
}

/* free for fn_scratch_alloc's blocks (NULL is ignored). */
static void fn_scratch_free(void *p) {
    if (!p) return;
    char *block = (char *)p;
    const size_t bytes = fn_scratch_size(block);
    fn_scratch_cache *c = fn_scratch_kept(bytes) ? fn_scratch_cache_get() : NULL;
    if (c) { /* an empty slot, or in place of the smallest kept block if that is smaller */
        int slot = -1;
        for (int i = 0; i < FN_SCRATCH_SLOTS && slot < 0; i++)
            if (!c->block[i]) slot = i;
        if (slot < 0) {
            slot = 0;
            for (int i = 1; i < FN_SCRATCH_SLOTS; i++)
                if (fn_scratch_size(c->block[i]) < fn_scratch_size(c->block[slot])) slot = i;
            if (fn_scratch_size(c->block[slot]) >= bytes) {
                fn_scratch_release(block);
                return;
            }
            fn_scratch_release(c->block[slot]);
        }
        c->block[slot] = block;
        return;
    }
    fn_scratch_release(block);
}

/* Rows of the axis path's column sums reduced in the accumulation type
 * before they are added in double. */
#define FN_AXIS_CHUNK ((int64_t)512)

#if defined(__GNUC__) || defined(__clang__)
#define FN_DRIVER_INLINE inline __attribute__((always_inline))
#else
#define FN_DRIVER_INLINE inline
#endif

/* Columns handled together by one thread in the partial-sum tree. */
#define FN_TREE_COLUMNS 2048

/* The exact-range path, for the rare row whose fast statistics overflowed
 * (|x| near 1e19 and beyond in float32) or underflowed with a negligible
 * eps: statistics and normalization in double, every quantity scaled by the
 * row's largest |x| so that nothing overflows. Plain loops: correctness, not
 * speed. */
typedef struct {
    double scale;       /* the largest |x| (1 for a row of zeros) */
    double mean_scaled; /* mean / scale */
    double rstd;        /* 1 / sqrt(var + eps) */
    double rstd_scaled; /* rstd * scale, computed without overflow (Inf only for
                           a constant row, whose deviations are all zero) */
} fn_exact_stats;


/* Row normalizers of 16-bit data widen each row once into a per-thread copy
 * (FN_WIDE = 1): on the stack up to FN_WIDE_STACK elements, allocated once
 * per thread and call up to FN_WIDE_MAX (a copy that stays in L2); longer
 * rows are converted at every pass instead.
 * The LayerNorm/RMSNorm backward of bfloat16 rows (FN_WIDE_BACKWARD = 1,
 * whose loads are integer shifts) widens dy and x the same way for rows of
 * up to fn_backward_widen_max() elements, the target's choice: short rows,
 * whose copies stay in L1 next to the rows and the parameter partials. Longer
 * bfloat16 rows, and float16 rows at any length (F16C converts for free next
 * to the copies' stores and reloads), are converted at each pass
 * (bench/choices.md, "Widened copies in the backward").
 * RMSNorm rows of more than FN_STAT_ROWS_ANY_N elements are widened only
 * where FN_WIDE_RMS = 1 (bfloat16) and their y is not streamed; the others
 * are read as stored (drivers/driver_impl.h, LOCAL(forward_rows)). */
#define FN_WIDE_STACK 4096
#define FN_WIDE_MAX (64 * 1024)
#if defined(__GNUC__) || defined(__clang__)
#define FN_ALIGNED_SCRATCH(type, name, len) type name[len] __attribute__((aligned(64)))
#elif defined(_MSC_VER)
#define FN_ALIGNED_SCRATCH(type, name, len) __declspec(align(64)) type name[len]
#else
#define FN_ALIGNED_SCRATCH(type, name, len) type name[len]
#endif

/* Rows written with streaming stores (fn_stream_for) are computed
 * FN_STREAM_CHUNK elements at a time into a buffer in L1 and leave it
 * through a per-thread writer, in whole 64-byte cache lines only. A chunk is
 * computed at the offset its destination has within a line, after the bytes
 * of the last line the previous chunk left incomplete; those wait there while
 * the chunks continue the same memory (the next chunk of the row, the next
 * row of a contiguous array), and are written with ordinary stores where that
 * run of memory ends (the end of the thread's rows, a strided row's end, a
 * row written directly), as is the first, partial line of a run. So no line
 * is written by both kinds of store: an ordinary store into a line that
 * streaming stores are filling flushes the line half-written and reads it
 * back (bench/choices.md, "Streaming stores by CPU"). */
#define FN_STREAM_CHUNK 1024
#define FN_STREAM_LINE 64
/* a chunk of the widest type and up to two lines' worth of waiting bytes */
#define FN_STREAM_BUF_BYTES (FN_STREAM_CHUNK * 8 + 2 * FN_STREAM_LINE)

typedef struct {
    void (*copy)(void *dst, const void *src, size_t n); /* streaming stores */
    char *buf;  /* FN_STREAM_BUF_BYTES, 64-byte aligned */
    char *dst;  /* where the waiting bytes go (NULL: none) */
    size_t len; /* bytes waiting, from buf + (dst % 64) */
} fn_stream_writer;

static size_t fn_stream_offset(const char *p) { return (size_t)((uintptr_t)p % FN_STREAM_LINE); }

/* The waiting bytes written with ordinary stores: the run of memory ends. */
static void fn_stream_flush(fn_stream_writer *s) {
    if (s->len) memcpy(s->dst, s->buf + fn_stream_offset(s->dst), s->len);
    s->dst = NULL;
    s->len = 0;
}

/* Where the chunk destined for dst is to be computed (then fn_stream_put). */
static FN_DRIVER_INLINE void *fn_stream_at(fn_stream_writer *s, void *dst) {
    if (!s->dst || (char *)dst != s->dst + s->len) {
        fn_stream_flush(s);
        s->dst = (char *)dst;
    }
    return s->buf + fn_stream_offset(s->dst) + s->len;
}

/* The `bytes` computed at fn_stream_at's pointer join the waiting ones; the
 * whole lines among them leave. */
static void fn_stream_put(fn_stream_writer *s, size_t bytes) {
    const size_t off = fn_stream_offset(s->dst);
    const char *src = s->buf + off;
    const size_t total = s->len + bytes;
    size_t head = off ? FN_STREAM_LINE - off : 0; /* the run's first, partial line */
    if (total < head) {
        s->len = total;
        return;
    }
    if (head) memcpy(s->dst, src, head);
    const size_t full = (total - head) / FN_STREAM_LINE * FN_STREAM_LINE;
    if (full) s->copy(s->dst + head, src + head, full);
    const size_t rest = total - head - full;
    memmove(s->buf, src + head + full, rest); /* its destination is line-aligned */
    s->dst += head + full;
    s->len = rest;
}

/* Rows written with ordinary stores go through their element-wise primitive
 * (normalize, the residual add) in two calls: the elements before the
 * output's first cache-line boundary, then the rest, so that none of the
 * rest's vector stores straddles two lines. Output rows 16 bytes past a line
 * (numpy's large arrays) took up to 1.35x the time otherwise, where the
 * stores go beyond L2 (bench/choices.md, "Output rows off the cache line").
 * Every element gets the same operations wherever a call starts (prims.h),
 * so the bits are the same either way. Rows shorter than FN_HEAD_MIN_N
 * elements go in one call (the head's elements, one at a time, would cost
 * more there than the straddling stores), as do streamed chunks, which are
 * written into a buffer in L1. */
#define FN_HEAD_MIN_N 512

/* The same for the backward's dx (with its parameter partials at the same
 * offset within a line, drivers/driver_impl.h): its row of five streams costs
 * more per call, and shorter rows were no faster split. */
#define FN_BWD_HEAD_MIN_N 2048

/* The shortest rows whose backward takes several rows' dx together
 * (driver_impl.h, backward_rows_together, for the data types with
 * FN_BWD_TOGETHER = 1: float32 and bfloat16): float32 rows of 1024 to 3072
 * elements, whose weight and parameter partials stay in L1 or nearly,
 * measured slower together (bench/choices.md, "Rows of the backward
 * together"). */
#define FN_BWD_ROWS_MIN_N 4096

/* Rows of up to FN_SHORT_ROW_N elements and FN_SHORT_ROW_BYTES bytes (float64
 * rows of 32) go FN_SHORT_BATCH at a time through the primitives that take
 * many rows in one call (stats_rows and normalize_rows, backward_sums_block
 * and backward_apply_block): a short row's time is mostly its calls, one per
 * pass, and their setup. Longer rows, whose time is their memory traffic,
 * measured no faster that way, some slower (bench/choices.md, "Short rows").
 * fn_set_short_rows turns it off for tests. */
#define FN_SHORT_ROW_N 64
#define FN_SHORT_ROW_BYTES 256
#define FN_SHORT_BATCH 16

/* The elements of `size` bytes from dst to its first 64-byte boundary (0 on
 * one); -1 where an element would straddle the boundary. */
static FN_DRIVER_INLINE int64_t fn_to_line(const void *dst, size_t size) {
    const size_t off = (size_t)((uintptr_t)dst % FN_STREAM_LINE);
    if (off % size) return -1;
    return (int64_t)((FN_STREAM_LINE - off) % FN_STREAM_LINE / size);
}

/* The head of a row of n elements of `size` bytes at dst: the elements before
 * its first 64-byte boundary; 0 for a short row or an element that straddles
 * the boundary. */
static FN_DRIVER_INLINE int64_t fn_line_head(const void *dst, int64_t n, size_t size) {
    const int64_t h = fn_to_line(dst, size);
    return n < FN_HEAD_MIN_N || h < 0 ? 0 : h;
}

/* Each data type instantiates the drivers with: T the storage type, A the
 * accumulation type, W the parameters' type (weight, bias and their
 * gradients), ST the statistics' type (mean, rstd, var), FN_TO_D(v) a value
 * of T as a double and FN_FROM_D(d) a double rounded to T (the exact-range
 * path), and the table of primitives. */

#include "driver_mixed.h"

/* float32 data */
#define T float
#define A float
#define W float
#define ST float
#define FN_TO_D(v) ((double)(v))
#define FN_FROM_D(d) ((T)(d))
#define FN_WIDE 0
#define FN_WIDE_BACKWARD 0
#define FN_WIDE_RMS 0
#define FN_BWD_TOGETHER 1
#define SUF f32
#define PRIMS_TYPE fn_prims_f32
#define FN_TINY 1e-30          /* sums of squares below this may have underflowed */
#define FN_EPS_NEGLIGIBLE 1e-20 /* ...which matters only when eps is below this */
#define NAME(f) fastnorm_##f##_f32
#define LOCAL(f) fn_##f##_f32
#include "driver_families.h"
#undef T
#undef A
#undef W
#undef ST
#undef SUF
#undef PRIMS_TYPE
#undef FN_TINY
#undef FN_EPS_NEGLIGIBLE
#undef NAME
#undef LOCAL

/* float64 data */
#undef FN_BWD_TOGETHER
#define FN_BWD_TOGETHER 0
#define T double
#define A double
#define W double
#define ST double
#define SUF f64
#define PRIMS_TYPE fn_prims_f64
#define FN_TINY 1e-290
#define FN_EPS_NEGLIGIBLE 1e-280
#define NAME(f) fastnorm_##f##_f64
#define LOCAL(f) fn_##f##_f64
#include "driver_families.h"
#undef T
#undef A
#undef W
#undef ST
#undef SUF
#undef PRIMS_TYPE
#undef FN_TINY
#undef FN_EPS_NEGLIGIBLE
#undef NAME
#undef LOCAL
#undef FN_TO_D
#undef FN_FROM_D
#undef FN_WIDE
#undef FN_WIDE_BACKWARD
#undef FN_WIDE_RMS
#undef FN_BWD_TOGETHER

/* 16-bit data as uint16_t bit patterns: float32 accumulation, parameters
 * and statistics; the exact-range path rounds its double result to float32,
 * then to 16 bits. */
#define T uint16_t
#define A float
#define W float
#define ST float
#define FN_TINY 1e-30
#define FN_EPS_NEGLIGIBLE 1e-20
#define FN_WIDE 1

/* float16 (IEEE binary16) data */
#define FN_WIDE_BACKWARD 0
#define FN_WIDE_RMS 0
#define FN_BWD_TOGETHER 0
#define SUF f16
#define PRIMS_TYPE fn_prims_f16
#define FN_TO_D(v) ((double)fn_f16_to_f32(v))
#define FN_FROM_D(d) fn_f32_to_f16((float)(d))
#define NAME(f) fastnorm_##f##_f16
#define LOCAL(f) fn_##f##_f16
#include "driver_families.h"
#undef SUF
#undef PRIMS_TYPE
#undef FN_TO_D
#undef FN_FROM_D
#undef NAME
#undef LOCAL

#undef FN_WIDE_BACKWARD
#undef FN_WIDE_RMS
#undef FN_BWD_TOGETHER

/* bfloat16 data */
#define FN_WIDE_BACKWARD 1
#define FN_WIDE_RMS 1
#define FN_BWD_TOGETHER 1
#define SUF bf16
#define PRIMS_TYPE fn_prims_bf16
#define FN_TO_D(v) ((double)fn_bf16_to_f32(v))
#define FN_FROM_D(d) fn_f32_to_bf16((float)(d))
#define NAME(f) fastnorm_##f##_bf16
#define LOCAL(f) fn_##f##_bf16
#include "driver_families.h"
