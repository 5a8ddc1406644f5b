/*
 * simd_avx2_lanes.h -- prims_impl.h's parameters for float accumulation in
 * the 8 lanes of an AVX2 vector: the float32, float16 and bfloat16
 * instantiations of every target built on the AVX2 loops. The includer adds
 * T and the loads and stores of its data (VLOAD, VSTORE, SLOAD, SSTORE), and
 * P and its operations where its pairs of vectors have a type of their own.
 * A parameter list, not a header: no include guard.
 */
#define A float
#define W float
#define V __m256
#define VN 8
#define VLOADA(p) _mm256_loadu_ps(p)
#define VSTOREA(p, v) _mm256_storeu_ps(p, v)
#define WLOAD(p) _mm256_loadu_ps(p)
#define SWLOAD(p) (*(p))
#define VSET1(a) _mm256_set1_ps(a)
#define VZERO() _mm256_setzero_ps()
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VFNMA(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define SFMA(a, b, c) fn_fma_f32(a, b, c)
#define SFNMA(a, b, c) fn_fnma_f32(a, b, c)
#define VHSUM(v) fn_hsum_ps(v)
#define PREFETCH(p) FN_PREFETCH(p)
#define PREFETCH_W(p) FN_PREFETCH_W(p)
