/*
 * floor.c -- the memory floor the benchmarks compare against: the best copy
 * this machine can do, and its backward counterpart (read two arrays, write
 * one). Built by floor.py on first use; not part of the package.
 *
 * A plain memcpy writes with ordinary stores: each destination line is first
 * read into the cache (read-for-ownership), so an array larger than the cache
 * costs three memory transfers per byte instead of two. Non-temporal
 * (streaming) stores write around the cache and skip that read; for data that
 * fits in the cache they are slower (the destination is evicted). So each
 * call takes `stream`: 1 streams the destination, 0 uses ordinary stores, and
 * floor.py picks one from the size.
 *
 * Threads: OpenMP, `threads` contiguous parts of whole 4 KiB pages, each
 * ending with an sfence (streaming stores are weakly ordered).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define FLOOR_X86 1
#endif

#define PAGE 4096

#ifdef FLOOR_X86
__attribute__((target("avx2"))) static void stream_copy(const char *src, char *dst, size_t n) {
    size_t head = (size_t)(-(uintptr_t)dst & 31);
    if (head > n) head = n;
    memcpy(dst, src, head);
    size_t i = head;
    for (; i + 128 <= n; i += 128) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 32));
        __m256i c = _mm256_loadu_si256((const __m256i *)(src + i + 64));
        __m256i d = _mm256_loadu_si256((const __m256i *)(src + i + 96));
        _mm256_stream_si256((__m256i *)(dst + i), a);
        _mm256_stream_si256((__m256i *)(dst + i + 32), b);
        _mm256_stream_si256((__m256i *)(dst + i + 64), c);
        _mm256_stream_si256((__m256i *)(dst + i + 96), d);
    }
    memcpy(dst + i, src + i, n - i);
    _mm_sfence();
}

/* dst = a ^ b, 32 bytes at a time: a pass that reads two arrays and writes
 * one, with no arithmetic worth the name */
__attribute__((target("avx2"))) static void xor2(const char *a, const char *b, char *dst,
                                                 size_t n, int stream) {
    size_t i = 0;
    if (stream) {
        size_t head = (size_t)(-(uintptr_t)dst & 31);
        if (head > n) head = n;
        for (; i < head; i++) dst[i] = a[i] ^ b[i];
        for (; i + 64 <= n; i += 64) {
            __m256i x0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + i)),
                                          _mm256_loadu_si256((const __m256i *)(b + i)));
            __m256i x1 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + i + 32)),
                                          _mm256_loadu_si256((const __m256i *)(b + i + 32)));
            _mm256_stream_si256((__m256i *)(dst + i), x0);
            _mm256_stream_si256((__m256i *)(dst + i + 32), x1);
        }
    } else {
        for (; i + 64 <= n; i += 64) {
            __m256i x0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + i)),
                                          _mm256_loadu_si256((const __m256i *)(b + i)));
            __m256i x1 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + i + 32)),
                                          _mm256_loadu_si256((const __m256i *)(b + i + 32)));
            _mm256_storeu_si256((__m256i *)(dst + i), x0);
            _mm256_storeu_si256((__m256i *)(dst + i + 32), x1);
        }
    }
    for (; i < n; i++) dst[i] = a[i] ^ b[i];
    if (stream) _mm_sfence();
}

static int have_avx2(void) { return __builtin_cpu_supports("avx2"); }
#else
static int have_avx2(void) { return 0; }
static void stream_copy(const char *src, char *dst, size_t n) { memcpy(dst, src, n); }
static void xor2(const char *a, const char *b, char *dst, size_t n, int stream) {
    (void)stream;
    for (size_t i = 0; i < n; i++) dst[i] = a[i] ^ b[i];
}
#endif

static void copy_part(const char *src, char *dst, size_t n, int stream) {
    if (stream && have_avx2()) stream_copy(src, dst, n);
    else memcpy(dst, src, n);
}

static void xor_part(const char *a, const char *b, char *dst, size_t n, int stream) {
    if (have_avx2()) {
        xor2(a, b, dst, n, stream);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = a[i] ^ b[i];
}

/* [begin, end) of part t of `parts`, in whole pages (the last takes the rest) */
static void part_bounds(size_t n, int t, int parts, size_t *begin, size_t *end) {
    size_t pages = (n + PAGE - 1) / PAGE;
    *begin = pages * (size_t)t / (size_t)parts * PAGE;
    *end = pages * (size_t)(t + 1) / (size_t)parts * PAGE;
    if (*begin > n) *begin = n;
    if (*end > n) *end = n;
}

int floor_streaming_available(void) { return have_avx2(); }

void floor_copy(const void *src, void *dst, size_t n, int threads, int stream) {
    if (threads <= 1) {
        copy_part((const char *)src, (char *)dst, n, stream);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        size_t b, e;
        part_bounds(n, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
        if (b < e) copy_part((const char *)src + b, (char *)dst + b, e - b, stream);
    }
#else
    copy_part((const char *)src, (char *)dst, n, stream);
#endif
}

void floor_read2_write1(const void *a, const void *b, void *dst, size_t n, int threads,
                        int stream) {
    if (threads <= 1) {
        xor_part((const char *)a, (const char *)b, (char *)dst, n, stream);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        size_t lo, hi;
        part_bounds(n, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        if (lo < hi)
            xor_part((const char *)a + lo, (const char *)b + lo, (char *)dst + lo, hi - lo,
                     stream);
    }
#else
    xor_part((const char *)a, (const char *)b, (char *)dst, n, stream);
#endif
}
