/*
 * fp16.h -- portable conversions between float and the two 16-bit storage
 * formats, as uint16_t bit patterns:
 *   float16  (IEEE 754 binary16: 1 sign, 5 exponent, 10 fraction bits)
 *   bfloat16 (the upper half of a float: 1 sign, 8 exponent, 7 fraction bits)
 *
 * Loads are exact (every 16-bit value is a float). Stores round to nearest,
 * ties to even; values beyond the largest finite float16 become Inf, tiny
 * ones float16 subnormals or zero; a NaN stays a NaN with its quiet bit set
 * and the upper bits of its payload kept (as the F16C instructions do).
 * Bit for bit what the AVX2 path computes, so the two paths differ only by
 * the arithmetic between load and store.
 */
#ifndef FASTNORM_FP16_H
#define FASTNORM_FP16_H

#include <stdint.h>
#include <string.h>

static inline uint32_t fn_float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float fn_bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline float fn_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) /* Inf, or NaN made quiet */
        return fn_bits_float(sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0));
    if (e == 0) { /* zero or subnormal: m * 2^-24, exact in float */
        const float v = (float)m * 5.9604644775390625e-8f;
        return fn_bits_float(sign | fn_float_bits(v));
    }
    return fn_bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

static inline uint16_t fn_f32_to_f16(float f) {
    const uint32_t u = fn_float_bits(f);
    const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: Inf */
    if (a >= 0x38800000u) { /* a normal float16: rebias, round the 13 dropped bits */
        const uint32_t r = a - 0x38000000u;
        return (uint16_t)(sign | ((r + 0xfffu + ((r >> 13) & 1u)) >> 13));
    }
    if (a <= 0x33000000u) return (uint16_t)sign; /* at most 2^-25: rounds to zero */
    /* a subnormal float16: k = value / 2^-24, rounded (k = 1024 is the
     * smallest normal, which the bit pattern represents correctly) */
    const uint32_t shift = 126u - (a >> 23); /* 14 ... 24 */
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t k = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (k & 1u))) k++;
    return (uint16_t)(sign | k);
}

static inline float fn_bf16_to_f32(uint16_t h) { return fn_bits_float((uint32_t)h << 16); }

static inline uint16_t fn_f32_to_bf16(float f) {
    const uint32_t u = fn_float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u | 0x400000u) >> 16); /* NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#endif
