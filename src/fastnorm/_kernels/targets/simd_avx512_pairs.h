/*
 * simd_avx512_pairs.h -- prims_impl.h's pair type P as one 512-bit vector:
 * each main loop's two vectors of 8 floats (simd_avx2_lanes.h) held in one
 * register, every lane getting the operations it gets in the AVX2 loops, so
 * the same bits. The includer adds PLOAD and PSTORE (and PSTORE_NONAN where
 * it has one) for its data type. A parameter list, not a header: no include
 * guard; an instantiation included before it keeps the default pair of two
 * vectors.
 */
#define P __m512
#define PLO(v) _mm512_castps512_ps256(v)
#define PHI(v) _mm512_extractf32x8_ps(v, 1)
#define PLOADA(p) _mm512_loadu_ps(p)
#define PSTOREA(p, v) _mm512_storeu_ps(p, v)
#define PWLOAD(p) _mm512_loadu_ps(p)
#define PSET1(a) _mm512_set1_ps(a)
#define PZERO() _mm512_setzero_ps()
#define PADD(a, b) _mm512_add_ps(a, b)
#define PSUB(a, b) _mm512_sub_ps(a, b)
#define PMUL(a, b) _mm512_mul_ps(a, b)
#define PFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define PFNMA(a, b, c) _mm512_fnmadd_ps(a, b, c)
