/*
 * dispatch.c -- CPU feature detection and the choice of kernel table.
 *
 * Compiled with baseline flags only: it must run on any x86-64 (or other)
 * CPU to decide whether the AVX2 table may be used at all.
 */
#include <stddef.h>

#include <stdlib.h>

#include "dispatch.h"
#include "fastnorm.h"

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

unsigned fastnorm_cpu_features(void) {
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

int fastnorm_isa_available(int isa) {
    if (isa == FASTNORM_ISA_SCALAR) return 1;
#ifdef FASTNORM_HAVE_AVX2
    if (isa == FASTNORM_ISA_AVX2) {
        const unsigned need =
            FASTNORM_CPU_AVX | FASTNORM_CPU_AVX2 | FASTNORM_CPU_FMA | FASTNORM_CPU_F16C |
            FASTNORM_CPU_OS_AVX;
        return (fastnorm_cpu_features() & need) == need;
    }
#endif
    return 0;
}

/* The table in use. NULL until the first call, which picks the best one. */
static const fn_prims *fn_table = NULL;
static int fn_isa = FASTNORM_ISA_SCALAR;
static int fn_bf16_cvt_wanted = 1; /* fn_set_bf16_convert */
static int fn_avx512_wanted = 1;   /* fn_set_avx512 */

/* Whether the AVX2 kernels may hold their loops' vector pairs in AVX-512 registers. */
static int fn_avx512_available(void) {
#if defined(FASTNORM_HAVE_AVX2) && defined(FASTNORM_HAVE_AVX512)
    const unsigned need = FASTNORM_CPU_AVX512F | FASTNORM_CPU_AVX512VL | FASTNORM_CPU_AVX512DQ |
                          FASTNORM_CPU_AVX512BW | FASTNORM_CPU_OS_AVX512;
    return (fastnorm_cpu_features() & need) == need;
#else
    return 0;
#endif
}

/* Whether the AVX2 kernels may round bfloat16 with the AVX-512 BF16 instruction. */
static int fn_bf16_cvt_available(void) {
#if defined(FASTNORM_HAVE_AVX2) && defined(FASTNORM_HAVE_BF16_CVT)
    /* every extension the kernels' target pragma enables (the compiler may
     * use BW instructions, which BF16 implies for it, anywhere in them) */
    const unsigned need = FASTNORM_CPU_AVX512F | FASTNORM_CPU_AVX512VL | FASTNORM_CPU_AVX512DQ |
                          FASTNORM_CPU_AVX512BW | FASTNORM_CPU_AVX512_BF16 |
                          FASTNORM_CPU_OS_AVX512;
    return (fastnorm_cpu_features() & need) == need;
#else
    return 0;
#endif
}

int fastnorm_set_isa(int isa) {
#ifdef FASTNORM_HAVE_AVX2
    if (isa == FASTNORM_ISA_AVX2 && fastnorm_isa_available(FASTNORM_ISA_AVX2)) {
        const fn_prims *table = &fn_prims_avx2;
        const int cvt = fn_bf16_cvt_wanted && fn_bf16_cvt_available();
        const int wide = fn_avx512_wanted && fn_avx512_available();
        (void)cvt;
        (void)wide;
#ifdef FASTNORM_HAVE_BF16_CVT
        if (cvt) table = &fn_prims_avx2_bf16cvt;
#endif
#ifdef FASTNORM_HAVE_AVX512
        if (wide) table = &fn_prims_avx512;
#ifdef FASTNORM_HAVE_BF16_CVT
        if (wide && cvt) table = &fn_prims_avx512_bf16cvt;
#endif
#endif
        fn_isa = FASTNORM_ISA_AVX2;
        fn_table = table; /* one store: a call reading it sees one table or the other */
        return fn_isa;
    }
#else
    (void)isa;
#endif
    fn_isa = FASTNORM_ISA_SCALAR;
    fn_table = &fn_prims_scalar;
    return fn_isa;
}

static void fn_select_best(void) {
    fastnorm_set_isa(fastnorm_isa_available(FASTNORM_ISA_AVX2) ? FASTNORM_ISA_AVX2
                                                                : FASTNORM_ISA_SCALAR);
}

int fastnorm_get_isa(void) {
    if (!fn_table) fn_select_best();
    return fn_isa;
}

const fn_prims *fn_active_prims(void) {
    if (!fn_table) fn_select_best();
    return fn_table;
}

/* The table without the AVX-512 pairs that a table in use stands for (itself
 * where it has none) */
static const fn_prims *fn_narrow_of(const fn_prims *table) {
#ifdef FASTNORM_HAVE_AVX512
    if (table == &fn_prims_avx512) return &fn_prims_avx2;
#ifdef FASTNORM_HAVE_BF16_CVT
    if (table == &fn_prims_avx512_bf16cvt) return &fn_prims_avx2_bf16cvt;
#endif
#endif
    return table;
}

const fn_prims *fn_active_prims_narrow(void) {
    return fn_narrow_of(fn_active_prims()); /* read once: the pair stays consistent */
}

int fastnorm_bf16_convert_in_use(void) {
#ifdef FASTNORM_HAVE_BF16_CVT
    return fn_active_prims_narrow() == &fn_prims_avx2_bf16cvt;
#else
    (void)fn_active_prims();
    return 0;
#endif
}

int fastnorm_avx512_in_use(void) {
    const fn_prims *table = fn_active_prims();
    return fn_narrow_of(table) != table;
}

int fn_set_avx512(int on) {
    fn_avx512_wanted = on != 0;
    fastnorm_set_isa(fastnorm_get_isa()); /* the same ISA, its table chosen again */
    return fastnorm_avx512_in_use();
}

int fn_set_bf16_convert(int on) {
    fn_bf16_cvt_wanted = on != 0;
    fastnorm_set_isa(fastnorm_get_isa()); /* the same ISA, its bfloat16 table chosen again */
    return fastnorm_bf16_convert_in_use();
}

/* The default streaming threshold: half the L3 cache of one core's complex
 * on AMD CPUs (cpuid 0x80000006: the cache a core's data competes for), where
 * an output that large and its input cannot both stay in the cache; none
 * elsewhere. Streaming stores measured 1.3-2x slower than ordinary ones on
 * an Intel Xeon virtual machine at every size tried (float32 LayerNorm
 * forward and backward, 12 MiB to 1 GiB outputs, 1 and 2 threads), and a
 * streaming copy 1.4x faster than an ordinary one on an AMD EPYC (Zen 4,
 * 32 MiB L3) at 128 MiB. */
static int64_t fn_stream_default(void) {
#ifdef FN_X86
    unsigned r[4];
    fn_cpuid(0, 0, r);
    const int amd = r[1] == 0x68747541u && r[3] == 0x69746e65u && r[2] == 0x444d4163u;
    fn_cpuid(0x80000000u, 0, r);
    if (!amd || r[0] < 0x80000006u) return -1;
    fn_cpuid(0x80000006u, 0, r);
    const int64_t l3 = (int64_t)(r[3] >> 18) * 512 * 1024; /* EDX[31:18], 512 KiB units */
    return l3 > 0 ? l3 / 2 : -1;
#else
    return -1;
#endif
}

static int64_t fn_stream_bytes = -2; /* -2: not read from the environment yet */

int64_t fn_stream_min_bytes(void) {
    if (fn_stream_bytes == -2) {
        const char *env = getenv("FASTNORM_STREAM_BYTES");
        int64_t v = fn_stream_default();
        if (env && *env) {
            char *end = NULL;
            const long long parsed = strtoll(env, &end, 10);
            v = (end != env && *end == '\0') ? (parsed < 0 ? -1 : (int64_t)parsed) : -1;
        }
        fn_stream_bytes = v; /* benign race: every thread computes the same value */
    }
    return fn_stream_bytes;
}

int64_t fn_set_stream_min_bytes(int64_t bytes) {
    const int64_t before = fn_stream_min_bytes();
    fn_stream_bytes = bytes < 0 ? -1 : bytes;
    return before;
}

void (*fn_stream_for(int64_t bytes, void (**fence)(void)))(void *, const void *, size_t) {
    const int64_t min = fn_stream_min_bytes();
    const fn_prims *table = fn_active_prims();
    *fence = table->stream_fence;
    return (min >= 0 && bytes >= min && table->stream_fence) ? table->stream_copy : NULL;
}

int fastnorm_version_number(void) { return FASTNORM_VERSION_NUMBER; }
