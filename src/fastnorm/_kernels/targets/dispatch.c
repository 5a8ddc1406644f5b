/*
 * dispatch.c -- CPU feature detection, the registry of kernel targets and
 * the choice among them.
 *
 * Compiled with baseline flags only: it must run on any x86-64 (or other)
 * CPU to decide which kernel files may run at all.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "dispatch.h"
#include "../fastnorm.h"

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
#define FN_X86 1
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static void fn_cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    int v[4];
    __cpuidex(v, (int)leaf, (int)sub);
    r[0] = (unsigned)v[0]; r[1] = (unsigned)v[1]; r[2] = (unsigned)v[2]; r[3] = (unsigned)v[3];
}
static unsigned long long fn_xgetbv0(void) { return _xgetbv(0); }
#else
#include <cpuid.h>
static void fn_cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}
static unsigned long long fn_xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif
#endif

/* The FASTNORM_CPU_* bits of the CPU and OS, as cpuid and xgetbv report them */
static unsigned fn_detect_cpu_features(void) {
    unsigned f = 0;
#ifdef FN_X86
    unsigned r[4];
    fn_cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    if (max_leaf < 1) return 0;
    fn_cpuid(1, 0, r);
    const unsigned ecx1 = r[2];
    if (ecx1 & (1u << 28)) f |= FASTNORM_CPU_AVX;
    if (ecx1 & (1u << 12)) f |= FASTNORM_CPU_FMA;
    if (ecx1 & (1u << 29)) f |= FASTNORM_CPU_F16C;
    /* XCR0 (readable when OSXSAVE is set) enabling both the SSE (bit 1) and AVX
     * (bit 2) state: the OS saves YMM registers across context switches; bits
     * 5-7 besides: the opmask and ZMM state too. */
    const unsigned long long xcr0 = (ecx1 & (1u << 27)) ? fn_xgetbv0() : 0;
    if ((xcr0 & 6u) == 6u) f |= FASTNORM_CPU_OS_AVX;
    if ((xcr0 & 0xe6u) == 0xe6u) f |= FASTNORM_CPU_OS_AVX512;
    if (max_leaf >= 7) {
        fn_cpuid(7, 0, r);
        const unsigned ebx7 = r[1], max_sub7 = r[0];
        if (ebx7 & (1u << 5)) f |= FASTNORM_CPU_AVX2;
        if (ebx7 & (1u << 16)) f |= FASTNORM_CPU_AVX512F;
        if (ebx7 & (1u << 17)) f |= FASTNORM_CPU_AVX512DQ;
        if (ebx7 & (1u << 30)) f |= FASTNORM_CPU_AVX512BW;
        if (ebx7 & (1u << 31)) f |= FASTNORM_CPU_AVX512VL;
        if (max_sub7 >= 1) {
            fn_cpuid(7, 1, r);
            if (r[0] & (1u << 5)) f |= FASTNORM_CPU_AVX512_BF16;
        }
    }
#endif
    return f;
}

/* Features the selection treats as absent (fn_hide_cpu_features) */
static unsigned fn_hidden_features = 0;

unsigned fastnorm_cpu_features(void) { return fn_detect_cpu_features() & ~fn_hidden_features; }

unsigned fn_hide_cpu_features(unsigned bits) {
    const unsigned before = fn_hidden_features;
    fn_hidden_features = bits;
    return before;
}

/* ---- the registry of kernel targets --------------------------------------- */

/* The tables a build has (prims.h); NULL for a kernel file left out. */
#ifdef FASTNORM_HAVE_AVX2
#define FN_TABLE_AVX2 (&fn_prims_avx2)
#else
#define FN_TABLE_AVX2 NULL
#endif
#if defined(FASTNORM_HAVE_AVX2) && defined(FASTNORM_HAVE_AVX512)
#define FN_TABLE_AVX512 (&fn_prims_avx512)
#else
#define FN_TABLE_AVX512 NULL
#endif
#if defined(FASTNORM_HAVE_AVX2) && defined(FASTNORM_HAVE_AVX512) && defined(FASTNORM_HAVE_BF16_CVT)
#define FN_TABLE_AVX2_BF16 (&fn_prims_avx2_bf16)
#define FN_TABLE_AVX512_BF16 (&fn_prims_avx512_bf16)
#else
#define FN_TABLE_AVX2_BF16 NULL
#define FN_TABLE_AVX512_BF16 NULL
#endif

/* What the CPU and OS must have to run a kernel file: every extension its
 * compiler flags enable (the compiler may use any of them anywhere in it). */
#define FN_NEED_AVX2                                                                         \
    (FASTNORM_CPU_AVX | FASTNORM_CPU_AVX2 | FASTNORM_CPU_FMA | FASTNORM_CPU_F16C |            \
     FASTNORM_CPU_OS_AVX)
#define FN_NEED_AVX512                                                                       \
    (FN_NEED_AVX2 | FASTNORM_CPU_AVX512F | FASTNORM_CPU_AVX512VL | FASTNORM_CPU_AVX512DQ |    \
     FASTNORM_CPU_AVX512BW | FASTNORM_CPU_OS_AVX512)

/* Optional features within a target: a table that replaces the members of
 * the target's it has, used where the CPU has the feature's extensions too
 * (and the caller has not turned it off: fn_set_bf16_convert). */
enum { FN_FEATURE_BF16_CVT = 1u }; /* bfloat16 rounded by the AVX-512 BF16 instruction */
#define FN_NFEATURES 1
static const unsigned fn_feature_need[FN_NFEATURES] = {
    FN_NEED_AVX512 | FASTNORM_CPU_AVX512_BF16,
};

#define FN_MAX_LAYERS 2
#define FN_NO_LIMIT INT64_MAX

typedef struct {
    int isa;          /* FASTNORM_ISA_* */
    const char *name; /* FASTNORM_ISA=<name> */
    unsigned need;    /* the FASTNORM_CPU_* bits the CPU and OS must have */
    /* The target's primitives: each member of the table in use from the
     * first of these that has it. The target is built when all are. */
    const fn_prims *tables[FN_MAX_LAYERS];
    int ntables;
    /* each feature's table (NULL: not in this target, or not built) */
    const fn_prims *features[FN_NFEATURES];
    /* Rows of at most row_min[data type][direction] elements, and rows of
     * more than row_max, take the tables of target `outside` (with the same
     * features) instead; -1: none. */
    int outside;
    int64_t row_min[FN_NDTYPES][FN_NDIRS];
    int64_t row_max[FN_NDTYPES][FN_NDIRS];
    /* The bfloat16 row backward widens dy and x into float32 copies for rows
     * of up to this many elements, and converts at each pass beyond
     * (drivers/driver.c, FN_WIDE_BACKWARD): the copies pay where they stay in
     * L1 next to the rows and the parameter partials, and the conversion
     * costs the most (bench/choices.md, "Widened copies in the backward"). */
    int64_t bf16_widen_max;
} fn_target;

/* The targets, best first: the first one the build and the CPU have is the
 * default. */
static const fn_target fn_targets[] = {
    /* The AVX2 kernels with the float16 and bfloat16 loops' pairs of 8-float
     * vectors in 512-bit registers (the same bits); float32 and float64 the
     * avx2 target's. Rows longer than row_max keep the 8-float loops: beyond,
     * a row's working set (the row, its widened copy, the parameters, the
     * rows prefetched, the parameter partials) outgrows the L1 cache, where the
     * same loops are slower with 512-bit accesses than with 256-bit ones
     * (bench/choices.md, "The avx512 target's row limits"). bfloat16 rows,
     * whose longer rows are read as stored (no copy) in both directions
     * where that measured faster, measured faster still with the 512-bit
     * loops at every length beyond the short rows, where the rounding
     * instruction takes a whole 512-bit register: no upper limit. For
     * float32 and float64 both targets' tables are the same. Short rows (up
     * to row_min elements), whose time is their per-row work more than their
     * loops, measured faster with the 8-float loops too: float16 rows of up
     * to 64 elements (48 backward), bfloat16 rows of up to 24 (12 backward). */
    {FASTNORM_ISA_AVX512, "avx512", FN_NEED_AVX512,
     {FN_TABLE_AVX512, FN_TABLE_AVX2}, 2,
     {FN_TABLE_AVX512_BF16},
     FASTNORM_ISA_AVX2,
     {/* forward, backward */
      [FN_DT_f16] = {64, 48},
      [FN_DT_bf16] = {24, 12}},
     {/* forward, backward */
      [FN_DT_f32] = {3072, 3072},
      [FN_DT_f64] = {3072, 3072},
      [FN_DT_f16] = {3072, 3072},
      [FN_DT_bf16] = {FN_NO_LIMIT, FN_NO_LIMIT}},
     512},
    /* AVX2 + FMA + F16C, every data type */
    {FASTNORM_ISA_AVX2, "avx2", FN_NEED_AVX2,
     {FN_TABLE_AVX2}, 1,
     {FN_TABLE_AVX2_BF16},
     -1, {{0}}, {{0}}, 2048},
    /* portable C, any CPU */
    {FASTNORM_ISA_SCALAR, "scalar", 0,
     {&fn_prims_scalar}, 1,
     {NULL},
     -1, {{0}}, {{0}}, FN_NO_LIMIT},
};
#define FN_NTARGETS ((int)(sizeof fn_targets / sizeof fn_targets[0]))

/* A target with a set of its features, as the drivers use it: its tables
 * composed, and the table for rows outside its limits. */
typedef struct {
    fn_prims prims;
    const fn_prims *outside; /* for rows of at most row_min or more than row_max */
    int64_t row_min[FN_NDTYPES][FN_NDIRS];
    int64_t row_max[FN_NDTYPES][FN_NDIRS];
    int64_t bf16_widen_max; /* the target's */
    int isa;
    unsigned features; /* FN_FEATURE_* */
} fn_kernels;

/* Every (target, feature set), composed once, at the first selection:
 * composing copies pointers only and runs nothing of a kernel file. The
 * first thread to get there composes (fn_compose_state 0 -> 1 -> 2); one
 * that comes meanwhile waits for it. A selection publishes one entry with
 * one store (fn_active, release; read with acquire), and entries are never
 * changed after, so a call that read the pointer uses one consistent set. */
static fn_kernels fn_composed[FN_NTARGETS][1u << FN_NFEATURES];
static int fn_compose_state = 0; /* 0: not yet; 1: being composed; 2: done */

#if defined(__GNUC__) || defined(__clang__)
#define FN_PUBLISH(p, v) __atomic_store_n(&(p), (v), __ATOMIC_RELEASE)
#define FN_READ(p) __atomic_load_n(&(p), __ATOMIC_ACQUIRE)
#define FN_CLAIM(p, from, to)                                                               \
    __atomic_compare_exchange_n(&(p), &(__typeof__(p)){from}, (to), 0, __ATOMIC_ACQ_REL,     \
                                __ATOMIC_ACQUIRE)
#else
#define FN_PUBLISH(p, v) ((p) = (v))
#define FN_READ(p) (p)
#define FN_CLAIM(p, from, to) ((p) == (from) ? ((p) = (to), 1) : 0)
#endif

static int fn_target_index(int isa) {
    for (int i = 0; i < FN_NTARGETS; i++)
        if (fn_targets[i].isa == isa) return i;
    return -1;
}

static int fn_target_built(const fn_target *t) {
    for (int i = 0; i < t->ntables; i++)
        if (!t->tables[i]) return 0;
    return 1;
}

/* layer's members over out's, where layer has them */
static void fn_overlay(fn_prims *out, const fn_prims *layer) {
    if (layer->f32) out->f32 = layer->f32;
    if (layer->f64) out->f64 = layer->f64;
    if (layer->f16) out->f16 = layer->f16;
    if (layer->bf16) out->bf16 = layer->bf16;
    if (layer->stream_copy) {
        out->stream_copy = layer->stream_copy;
        out->stream_fence = layer->stream_fence;
    }
}

/* The features of target t that are built, out of `features` */
static unsigned fn_built_features(const fn_target *t, unsigned features) {
    unsigned have = 0;
    for (int f = 0; f < FN_NFEATURES; f++)
        if ((features >> f & 1u) && t->features[f]) have |= 1u << f;
    return have;
}

static void fn_compose_entries(void) {
    for (int i = 0; i < FN_NTARGETS; i++) {
        const fn_target *t = &fn_targets[i];
        const int li = fn_target_index(t->outside);
        const int other = li >= 0 && fn_target_built(t) && fn_target_built(&fn_targets[li]);
        for (unsigned fs = 0; fs < (1u << FN_NFEATURES); fs++) {
            fn_kernels k;
            memset(&k, 0, sizeof k);
            if (fn_target_built(t)) {
                for (int l = t->ntables - 1; l >= 0; l--) fn_overlay(&k.prims, t->tables[l]);
                for (int f = 0; f < FN_NFEATURES; f++)
                    if ((fs >> f & 1u) && t->features[f]) fn_overlay(&k.prims, t->features[f]);
                k.isa = t->isa;
                k.features = fn_built_features(t, fs);
                k.bf16_widen_max = t->bf16_widen_max;
            }
            for (int d = 0; d < FN_NDTYPES; d++)
                for (int r = 0; r < FN_NDIRS; r++) {
                    k.row_min[d][r] = other ? t->row_min[d][r] : 0;
                    k.row_max[d][r] = other ? t->row_max[d][r] : FN_NO_LIMIT;
                }
            /* the other rows' entry of the target below, by address: its
             * contents are composed in this same pass or were before */
            k.outside =
                other ? &fn_composed[li][fn_built_features(&fn_targets[li], k.features)].prims
                      : &fn_composed[i][fs].prims;
            fn_composed[i][fs] = k;
        }
    }
}

static void fn_compose_all(void) {
    if (FN_READ(fn_compose_state) == 2) return;
    if (FN_CLAIM(fn_compose_state, 0, 1)) {
        fn_compose_entries();
        FN_PUBLISH(fn_compose_state, 2);
        return;
    }
    while (FN_READ(fn_compose_state) != 2) {
        /* another thread is composing: microseconds */
    }
}

/* Whether target t is built and the CPU and OS have what it needs */
static int fn_usable(const fn_target *t, unsigned cpu) {
    return fn_target_built(t) && (cpu & t->need) == t->need;
}

/* The features of t to use with it: built, wanted and seen on the CPU */
static unsigned fn_features_for(const fn_target *t, unsigned cpu, unsigned wanted) {
    unsigned fs = 0;
    for (int f = 0; f < FN_NFEATURES; f++) {
        const unsigned need = t->need | fn_feature_need[f];
        if ((wanted >> f & 1u) && t->features[f] && (cpu & need) == need) fs |= 1u << f;
    }
    return fs;
}

/* The kernels in use. NULL until the first call, which picks the best. */
static const fn_kernels *fn_active = NULL;
static unsigned fn_features_wanted = FN_FEATURE_BF16_CVT; /* fn_set_bf16_convert */

int fastnorm_isa_available(int isa) {
    const int i = fn_target_index(isa);
    return i >= 0 && fn_usable(&fn_targets[i], fastnorm_cpu_features());
}

int fastnorm_set_isa(int isa) {
    const int i = fn_target_index(isa);
    const unsigned cpu = fastnorm_cpu_features();
    if (i < 0 || !fn_usable(&fn_targets[i], cpu)) return -1;
    fn_compose_all();
    const unsigned fs = fn_features_for(&fn_targets[i], cpu, fn_features_wanted);
    FN_PUBLISH(fn_active, &fn_composed[i][fs]);
    return isa;
}

static const fn_kernels *fn_select_best(void) {
    const unsigned cpu = fastnorm_cpu_features();
    for (int i = 0; i < FN_NTARGETS; i++)
        if (fn_usable(&fn_targets[i], cpu)) {
            fastnorm_set_isa(fn_targets[i].isa);
            break;
        }
    return FN_READ(fn_active); /* scalar at the least */
}

static const fn_kernels *fn_active_kernels(void) {
    const fn_kernels *k = FN_READ(fn_active); /* read once: one consistent set */
    return k ? k : fn_select_best();
}

int fastnorm_get_isa(void) { return fn_active_kernels()->isa; }

const fn_prims *fn_active_prims(void) { return &fn_active_kernels()->prims; }

/* A rule's switch for tests (1 on, 0 off; another value only asks) and its
 * count of the rows it took, added by every thread once per call */
typedef struct {
    int on;
    int64_t count;
} fn_rule_switch;

static int fn_rule_set(fn_rule_switch *s, int on) {
    const int before = FN_READ(s->on);
    if (on == 0 || on == 1) FN_PUBLISH(s->on, on);
    return before;
}

static void fn_rule_count(fn_rule_switch *s, int64_t rows) {
#if defined(__GNUC__) || defined(__clang__)
    __atomic_fetch_add(&s->count, rows, __ATOMIC_RELAXED);
#else
    s->count += rows;
#endif
}

static int64_t fn_rule_take(fn_rule_switch *s) {
#if defined(__GNUC__) || defined(__clang__)
    return __atomic_exchange_n(&s->count, 0, __ATOMIC_RELAXED);
#else
    const int64_t n = s->count;
    s->count = 0;
    return n;
#endif
}

static fn_rule_switch fn_row_min = {1, 0}; /* its count unused */

int fn_set_row_min(int on) { return fn_rule_set(&fn_row_min, on); }

const fn_prims *fn_row_prims(int dtype, int dir, int64_t n) {
    const fn_kernels *k = fn_active_kernels();
    const int64_t lo = FN_READ(fn_row_min.on) ? k->row_min[dtype][dir] : 0;
    return n > lo && n <= k->row_max[dtype][dir] ? &k->prims : k->outside;
}

int fastnorm_bf16_convert_in_use(void) {
    return (fn_active_kernels()->features & FN_FEATURE_BF16_CVT) != 0;
}

int fastnorm_avx512_in_use(void) { return fn_active_kernels()->isa == FASTNORM_ISA_AVX512; }

int fn_set_bf16_convert(int on) {
    if (on) fn_features_wanted |= FN_FEATURE_BF16_CVT;
    else fn_features_wanted &= ~(unsigned)FN_FEATURE_BF16_CVT;
    fastnorm_set_isa(fastnorm_get_isa()); /* the same target, its features chosen again */
    return fastnorm_bf16_convert_in_use();
}

int fn_target_at(int i, fn_target_info *info) {
    if (i < 0 || i >= FN_NTARGETS) return 0;
    info->isa = fn_targets[i].isa;
    info->name = fn_targets[i].name;
    info->built = fn_target_built(&fn_targets[i]);
    info->need = fn_targets[i].need;
    return 1;
}

/* The default streaming threshold for outputs the caller provides: half the
 * L3 cache of one core's complex on AMD CPUs (cpuid 0x80000006: the cache a
 * core's data competes for), where an output that large and its input
 * cannot both stay in the cache; FN_STREAM_BYTES_OTHER elsewhere, where
 * streaming into an output already in use was faster from about that size
 * for rows of 2 KiB or more (bench/choices.md, "Streaming stores by CPU"). */
#define FN_STREAM_BYTES_OTHER ((int64_t)24 * 1024 * 1024)
/* Rows shorter than this never stream by default: each row's way through
 * the streaming writer costs more than its lines save (bench/choices.md). */
#define FN_STREAM_MIN_ROW_BYTES ((int64_t)1024)
/* The L3 cache of one core's complex on AMD CPUs (cpuid 0x80000006: the
 * cache a core's data competes for); 0 elsewhere. */
static int64_t fn_amd_l3_bytes(void) {
#ifdef FN_X86
    unsigned r[4];
    fn_cpuid(0, 0, r);
    const int amd = r[1] == 0x68747541u && r[3] == 0x69746e65u && r[2] == 0x444d4163u;
    fn_cpuid(0x80000000u, 0, r);
    if (!amd || r[0] < 0x80000006u) return 0;
    fn_cpuid(0x80000006u, 0, r);
    return (int64_t)(r[3] >> 18) * 512 * 1024; /* EDX[31:18], 512 KiB units */
#else
    return 0;
#endif
}

static int64_t fn_stream_default(void) {
    const int64_t l3 = fn_amd_l3_bytes();
    return l3 > 0 ? l3 / 2 : FN_STREAM_BYTES_OTHER;
}

static int64_t fn_stream_bytes = -2; /* -2: not read from the environment yet */

int64_t fn_stream_min_bytes(void) {
    const int64_t now = FN_READ(fn_stream_bytes);
    if (now != -2) return now;
    const char *env = getenv("FASTNORM_STREAM_BYTES");
    int64_t v = fn_stream_default();
    if (env && *env) {
        char *end = NULL;
        const long long parsed = strtoll(env, &end, 10);
        v = (end != env && *end == '\0') ? (parsed < 0 ? -1 : (int64_t)parsed) : -1;
    }
    /* the first to finish sets it; a value set meanwhile (fn_set_stream_min_bytes)
     * stands */
    FN_CLAIM(fn_stream_bytes, -2, v);
    return FN_READ(fn_stream_bytes);
}

/* fn_cache_bytes where the OS does not say: no more than the smaller last-
 * level caches hold */
#define FN_CACHE_BYTES_UNKNOWN ((int64_t)32 * 1024 * 1024)
/* the most a reported L3 counts for: the data that measured as staying in
 * the cache of a virtual machine that reports its host's 480 MiB (twice the
 * size from which streaming stores measured faster there for rows of every
 * length) */
#define FN_CACHE_BYTES_VM ((int64_t)96 * 1024 * 1024)
static int64_t fn_cache_estimate(void) {
    int64_t l3 = fn_amd_l3_bytes();
    if (l3 > 0) return l3;
#ifdef _SC_LEVEL3_CACHE_SIZE
    l3 = (int64_t)sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    if (l3 <= 0) return FN_CACHE_BYTES_UNKNOWN;
    /* a virtual machine may report the host's whole cache, which its data
     * shares: no more than FN_CACHE_BYTES_VM */
    return l3 < FN_CACHE_BYTES_VM ? l3 : FN_CACHE_BYTES_VM;
}

int64_t fn_cache_bytes(void) {
    static int64_t bytes = -2; /* -2: not computed yet */
    const int64_t now = FN_READ(bytes);
    if (now != -2) return now;
    FN_CLAIM(bytes, -2, fn_cache_estimate());
    return FN_READ(bytes);
}

static int fn_backward_rows = -1;

int fn_set_backward_rows(int mode) {
    const int before = FN_READ(fn_backward_rows);
    if (mode >= -1 && mode <= 1) FN_PUBLISH(fn_backward_rows, mode);
    return before;
}

int fn_backward_rows_mode(void) { return FN_READ(fn_backward_rows); }

static fn_rule_switch fn_next_row_sums = {1, 0};
static fn_rule_switch fn_short_rows = {1, 0};

int fn_set_next_row_sums(int on) { return fn_rule_set(&fn_next_row_sums, on); }
int fn_next_row_sums_mode(void) { return FN_READ(fn_next_row_sums.on); }
void fn_count_next_row_sums(int64_t rows) { fn_rule_count(&fn_next_row_sums, rows); }
int64_t fn_take_next_row_sums_count(void) { return fn_rule_take(&fn_next_row_sums); }

int fn_set_short_rows(int on) { return fn_rule_set(&fn_short_rows, on); }
int fn_short_rows_mode(void) { return FN_READ(fn_short_rows.on); }
void fn_count_short_rows(int64_t rows) { fn_rule_count(&fn_short_rows, rows); }
int64_t fn_take_short_rows_count(void) { return fn_rule_take(&fn_short_rows); }

static int64_t fn_widen_override = -1;

int64_t fn_set_backward_widen_max(int64_t n) {
    const int64_t before = FN_READ(fn_widen_override);
    if (n >= -1) FN_PUBLISH(fn_widen_override, n);
    return before;
}

int64_t fn_backward_widen_max(void) {
    const int64_t set = FN_READ(fn_widen_override);
    return set >= 0 ? set : fn_active_kernels()->bf16_widen_max;
}

int64_t fn_set_stream_min_bytes(int64_t bytes) {
    const int64_t before = fn_stream_min_bytes();
    FN_PUBLISH(fn_stream_bytes, bytes < 0 ? -1 : bytes);
    return before;
}

#if defined(_MSC_VER) && !defined(__clang__)
#define FN_THREAD_LOCAL __declspec(thread)
#else
#define FN_THREAD_LOCAL __thread
#endif

/* Whether the calling thread's next calls write into fresh memory
 * (fn_set_output_fresh), and whether such outputs may stream anyway. */
static FN_THREAD_LOCAL int fn_output_fresh = 0;
static int fn_fresh_may_stream = 0;
static int64_t fn_stream_row_bytes = FN_STREAM_MIN_ROW_BYTES;

int64_t fn_set_stream_min_row_bytes(int64_t bytes) {
    const int64_t before = FN_READ(fn_stream_row_bytes);
    if (bytes >= 0) FN_PUBLISH(fn_stream_row_bytes, bytes);
    return before;
}

void fn_set_output_fresh(int fresh) { fn_output_fresh = fresh != 0; }

int fn_set_stream_fresh(int on) {
    const int before = FN_READ(fn_fresh_may_stream);
    if (on >= 0) FN_PUBLISH(fn_fresh_may_stream, on != 0);
    return before;
}

void (*fn_stream_for(int64_t bytes, int64_t row_bytes,
                      void (**fence)(void)))(void *, const void *, size_t) {
    const int64_t min = fn_stream_min_bytes();
    const fn_prims *table = fn_active_prims();
    *fence = table->stream_fence;
    if (fn_output_fresh && !FN_READ(fn_fresh_may_stream)) return NULL;
    if (row_bytes < FN_READ(fn_stream_row_bytes)) return NULL;
    if (min < 0) return NULL;
    const int64_t need =
        row_bytes < FN_STREAM_DIRECT_MIN_BYTES && min <= INT64_MAX / 2 ? 2 * min : min;
    return (bytes >= need && table->stream_fence) ? table->stream_copy : NULL;
}

int fastnorm_version_number(void) { return FASTNORM_VERSION_NUMBER; }
