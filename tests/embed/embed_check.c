/*
 * embed_check.c -- a C program built on fastnorm.h alone, with the kernel
 * sources compiled in (tests/test_c_api.py builds and runs it).
 *
 *   embed_check LN_IN LN_OUT ROWS N GN_IN GN_OUT S C L G
 *
 * LN_IN holds float32 x (ROWS x N), weight (N) and bias (N); the program
 * writes the layer norm's y, mean and rstd (float32) to LN_OUT. GN_IN holds
 * float64 x (S, 1, C, L), weight (C) and bias (C); the group norm's y, mean
 * and rstd (S x G each) go to GN_OUT, in float64. The first line of stdout
 * is "isa=<n> openmp=<0|1> version=<n>".
 *
 * It checks itself too, and exits with 2 when a check fails: the results
 * against a plain double-precision computation, bitwise equality between 1
 * and 3 threads and with a normalization in place, FASTNORM_EINVAL for a
 * group count that does not divide C, the header's version against the
 * compiled one. Exit code 1: bad usage or a file error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastnorm.h"

static int failures = 0;

#define CHECK(cond, ...)                          \
    do {                                          \
        if (!(cond)) {                            \
            fprintf(stderr, "check failed: ");    \
            fprintf(stderr, __VA_ARGS__);         \
            fprintf(stderr, "\n");                \
            failures++;                           \
        }                                         \
    } while (0)

static void *read_file(const char *path, size_t bytes) {
    FILE *f = fopen(path, "rb");
    void *p = malloc(bytes ? bytes : 1);
    if (!f || !p || fread(p, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot read %zu bytes from %s\n", bytes, path);
        exit(1);
    }
    fclose(f);
    return p;
}

static void write_parts(const char *path, const void *a, size_t na, const void *b, size_t nb,
                        const void *c, size_t nc) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, na, f) != na || fwrite(b, 1, nb, f) != nb ||
        fwrite(c, 1, nc, f) != nc || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static int64_t arg(const char *s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end || v < 1) {
        fprintf(stderr, "not a positive integer: %s\n", s);
        exit(1);
    }
    return (int64_t)v;
}

static void check_layer_norm(const char *in, const char *out, int64_t rows, int64_t n) {
    const size_t xn = (size_t)(rows * n);
    float *buf = (float *)read_file(in, (xn + 2 * (size_t)n) * sizeof(float));
    const float *x = buf, *w = buf + xn, *b = buf + xn + n;
    float *y = (float *)malloc(xn * sizeof(float)), *y3 = (float *)malloc(xn * sizeof(float));
    float *inplace = (float *)malloc(xn * sizeof(float));
    float *mean = (float *)malloc((size_t)rows * sizeof(float));
    float *rstd = (float *)malloc((size_t)rows * sizeof(float));
    float *mean3 = (float *)malloc((size_t)rows * sizeof(float));
    float *rstd3 = (float *)malloc((size_t)rows * sizeof(float));
    if (!y || !y3 || !inplace || !mean || !rstd || !mean3 || !rstd3) exit(1);

    CHECK(fastnorm_layer_norm_f32(rows, n, x, n, y, n, w, b, 1e-5, mean, rstd, 1) ==
              FASTNORM_OK, "layer_norm_f32 failed");
    CHECK(fastnorm_layer_norm_f32(rows, n, x, n, y3, n, w, b, 1e-5, mean3, rstd3, 3) ==
              FASTNORM_OK, "layer_norm_f32 (3 threads) failed");
    CHECK(memcmp(y, y3, xn * sizeof(float)) == 0 &&
              memcmp(mean, mean3, (size_t)rows * sizeof(float)) == 0 &&
              memcmp(rstd, rstd3, (size_t)rows * sizeof(float)) == 0,
          "layer norm: 1 and 3 threads differ");
    memcpy(inplace, x, xn * sizeof(float));
    CHECK(fastnorm_layer_norm_f32(rows, n, inplace, n, inplace, n, w, b, 1e-5, NULL, NULL, 2) ==
              FASTNORM_OK, "layer_norm_f32 in place failed");
    CHECK(memcmp(y, inplace, xn * sizeof(float)) == 0, "layer norm in place differs");

    double worst = 0.0;
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = x + i * n;
        double m = 0.0, v = 0.0;
        for (int64_t j = 0; j < n; j++) m += xr[j];
        m /= (double)n;
        for (int64_t j = 0; j < n; j++) v += (xr[j] - m) * (xr[j] - m);
        const double r = 1.0 / sqrt(v / (double)n + 1e-5);
        CHECK(fabs(mean[i] - m) <= 1e-5 * (1.0 + fabs(m)), "mean of row %lld", (long long)i);
        CHECK(fabs(rstd[i] - r) <= 1e-5 * r, "rstd of row %lld", (long long)i);
        for (int64_t j = 0; j < n; j++) {
            const double e = (xr[j] - m) * r * w[j] + b[j];
            const double d = fabs(y[i * n + j] - e) / (1.0 + fabs(e));
            if (d > worst) worst = d;
        }
    }
    CHECK(worst <= 1e-5, "layer norm: error %.3g against double precision", worst);

    write_parts(out, y, xn * sizeof(float), mean, (size_t)rows * sizeof(float), rstd,
                (size_t)rows * sizeof(float));
    free(buf), free(y), free(y3), free(inplace), free(mean), free(rstd), free(mean3),
        free(rstd3);
}

static void check_group_norm(const char *in, const char *out, int64_t S, int64_t C, int64_t L,
                             int64_t G) {
    const size_t xn = (size_t)(S * C * L), un = (size_t)(S * G);
    double *buf = (double *)read_file(in, (xn + 2 * (size_t)C) * sizeof(double));
    const double *x = buf, *w = buf + xn, *b = buf + xn + C;
    double *y = (double *)malloc(xn * sizeof(double)), *y3 = (double *)malloc(xn * sizeof(double));
    double *mean = (double *)malloc(un * sizeof(double)), *rstd = (double *)malloc(un * sizeof(double));
    double *var = (double *)malloc(un * sizeof(double));
    if (!y || !y3 || !mean || !rstd || !var) exit(1);

    CHECK(fastnorm_group_norm_f64(S, 1, C, L, G, x, y, w, b, 1e-5, mean, rstd, var, 1) ==
              FASTNORM_OK, "group_norm_f64 failed");
    CHECK(fastnorm_group_norm_f64(S, 1, C, L, G, x, y3, w, b, 1e-5, NULL, NULL, NULL, 3) ==
              FASTNORM_OK, "group_norm_f64 (3 threads) failed");
    CHECK(memcmp(y, y3, xn * sizeof(double)) == 0, "group norm: 1 and 3 threads differ");
    if (C > 1) {
        /* a group count that does not divide C: an error, nothing written */
        y3[0] = 12345.0;
        CHECK(fastnorm_group_norm_f64(S, 1, C, L, C + 1, x, y3, w, b, 1e-5, NULL, NULL, NULL,
                                      1) == FASTNORM_EINVAL,
              "group_norm_f64 with G = C + 1 did not return FASTNORM_EINVAL");
        CHECK(y3[0] == 12345.0, "group_norm_f64 wrote y on FASTNORM_EINVAL");
    }

    const int64_t cpg = C / G, m_count = cpg * L;
    double worst = 0.0;
    for (int64_t s = 0; s < S; s++)
        for (int64_t g = 0; g < G; g++) {
            const double *xu = x + (s * C + g * cpg) * L;
            double m = 0.0, v = 0.0;
            for (int64_t i = 0; i < m_count; i++) m += xu[i];
            m /= (double)m_count;
            for (int64_t i = 0; i < m_count; i++) v += (xu[i] - m) * (xu[i] - m);
            v /= (double)m_count;
            const double r = 1.0 / sqrt(v + 1e-5);
            const int64_t u = s * G + g;
            CHECK(fabs(mean[u] - m) <= 1e-12 * (1.0 + fabs(m)), "group mean %lld", (long long)u);
            CHECK(fabs(var[u] - v) <= 1e-12 * (1.0 + v), "group var %lld", (long long)u);
            CHECK(fabs(rstd[u] - r) <= 1e-12 * r, "group rstd %lld", (long long)u);
            for (int64_t c = 0; c < cpg; c++)
                for (int64_t l = 0; l < L; l++) {
                    const int64_t ch = g * cpg + c, i = (s * C + ch) * L + l;
                    const double e = (x[i] - m) * r * w[ch] + b[ch];
                    const double d = fabs(y[i] - e) / (1.0 + fabs(e));
                    if (d > worst) worst = d;
                }
        }
    CHECK(worst <= 1e-12, "group norm: error %.3g against a plain computation", worst);

    write_parts(out, y, xn * sizeof(double), mean, un * sizeof(double), rstd,
                un * sizeof(double));
    free(buf), free(y), free(y3), free(mean), free(rstd), free(var);
}

int main(int argc, char **argv) {
    if (argc != 11) {
        fprintf(stderr, "usage: %s LN_IN LN_OUT ROWS N GN_IN GN_OUT S C L G\n", argv[0]);
        return 1;
    }
    CHECK(fastnorm_version_number() == FASTNORM_VERSION_NUMBER,
          "header version %d, kernels %d", FASTNORM_VERSION_NUMBER, fastnorm_version_number());
    CHECK(fastnorm_get_api_table()->layer_norm_f32 == fastnorm_layer_norm_f32,
          "the table's layer_norm_f32 is not the entry point");
    CHECK(fastnorm_get_api_table()->avx512_in_use == fastnorm_avx512_in_use,
          "the table's avx512_in_use is not the entry point");
    /* built here without FASTNORM_HAVE_AVX512: the 8-lane loops only */
    CHECK(fastnorm_avx512_in_use() == 0, "avx512_in_use() = %d", fastnorm_avx512_in_use());
    const int64_t C = arg(argv[8]), G = arg(argv[10]);
    if (C % G != 0) {
        fprintf(stderr, "G must divide C\n");
        return 1;
    }
    printf("isa=%d openmp=%d version=%d\n", fastnorm_get_isa(), fastnorm_has_openmp(),
           fastnorm_version_number());
    check_layer_norm(argv[1], argv[2], arg(argv[3]), arg(argv[4]));
    check_group_norm(argv[5], argv[6], arg(argv[7]), C, arg(argv[9]), G);
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 2;
    }
    printf("all checks passed\n");
    return 0;
}
