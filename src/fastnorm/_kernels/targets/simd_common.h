/* simd_common.h -- small compiler helpers shared by the kernel instantiations. */
#ifndef FASTNORM_SIMD_COMMON_H
#define FASTNORM_SIMD_COMMON_H

#if defined(__GNUC__) || defined(__clang__)
#define FN_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define FN_INLINE __forceinline
#else
#define FN_INLINE inline
#endif

#if defined(__GNUC__) || defined(__clang__)
#define FN_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
#define FN_PREFETCH_W(p) __builtin_prefetch((const void *)(p), 1, 3)
/* into L2, not L1 */
#define FN_PREFETCH_L2(p) __builtin_prefetch((const void *)(p), 0, 2)
#else
#define FN_PREFETCH(p) ((void)(p))
#define FN_PREFETCH_W(p) ((void)(p))
#define FN_PREFETCH_L2(p) ((void)(p))
#endif

#endif
