"""The operations of fastnorm's C API: one description, from which
tools/gen_api.py writes every per-dtype declaration (the prototypes of
fastnorm.h, the table of entry points, fastnorm_capi.h's names, kernels.pxd,
the Cython declarations of fastnorm._core and the dtype-generic functions).

An operation is one normalizer (or one stage of one) that comes in each data
type of DTYPES: its entry point is fastnorm_<name>_<suffix>. Its parameters
are written as in C, with two placeholders for the types that change with
the data type:

    T   the data (x, y, dy, dx, residual, sum_out, ...): float, double, or
        uint16_t bit patterns for 16-bit data;
    P   parameters, statistics and parameter gradients (weight, bias, mean,
        rstd, dweight, ...): T's own type for float32 and float64 data, float
        for 16-bit data.

Every other type (int64_t sizes and strides, double eps and the channel
stages' double vectors, int flags) is the same in each data type.

`doc` is the comment above the operation's prototypes in the header, as
written there (its line breaks are kept); an operation without one is
declared under the comment of the operation before it. SECTIONS order the
header; TABLE orders fastnorm_api_table, whose members are only ever
appended (programs compiled against an older header keep working).
"""

# suffix, C type of the data (T), C type of parameters and statistics (P)
DTYPES = (
    ("f32", "float", "float"),
    ("f64", "double", "double"),
    ("f16", "uint16_t", "float"),
    ("bf16", "uint16_t", "float"),
)

# The comment at the head of the generated prototypes: what the data types are.
DTYPES_DOC = """\
Each normalizer comes in four data types, declared together:
  _f32   float data, float parameters and statistics;
  _f64   double data, double parameters and statistics;
  _f16   IEEE 754 binary16 data;
  _bf16  bfloat16 data (the upper 16 bits of a float32).
For the 16-bit types the arguments are those of _f32 except for their types:
  - data (x, y, dy, dx, residual, sum_out) is uint16_t bit patterns;
  - parameters (weight, bias, residual_bias) are float;
  - statistics (mean, rstd, var) are float;
  - parameter gradients (dweight, dbias) are float;
  - the channel stages' double vectors stay double.
Statistics and sums are accumulated in float32 (double where the float32
and float64 kernels use double), and each output element is the float32
result rounded once to 16 bits, to nearest with ties to even."""


def section(title, doc=None):
    """A heading in the header, with an optional comment under it."""
    return {"kind": "section", "title": title, "doc": doc}


def note(doc):
    """A comment of its own between operations."""
    return {"kind": "note", "doc": doc}


def op(name, params, doc=None):
    """An operation: fastnorm_<name>_<suffix> for each suffix of DTYPES."""
    return {"kind": "op", "name": name, "params": params, "doc": doc}


SECTIONS = [
    section("row normalizers"),
    op("layer_norm",
       "int64_t rows, int64_t n, const T *x, int64_t ldx, T *y, int64_t ldy, const P *weight, "
       "const P *bias, double eps, P *mean, P *rstd, int num_threads",
       """\
LayerNorm forward, per row: y = (x - mean) * rstd * weight + bias.
  x      rows x n input, rows ldx apart.
  y      rows x n output, rows ldy apart; may be x itself (ldy == ldx).
  weight, bias   n elements each, or NULL.
  eps    added to the variance.
  mean, rstd     rows elements each (outputs), or NULL. With n <= 0 they
         are set to NaN and y is not touched."""),
    op("layer_norm_backward",
       "int64_t rows, int64_t n, const T *dy, int64_t lddy, const T *x, int64_t ldx, "
       "const P *mean, const P *rstd, const P *weight, T *dx, int64_t lddx, P *dweight, "
       "P *dbias, int num_threads",
       """\
LayerNorm backward, from the forward's statistics.
  dy     rows x n gradient of y, rows lddy apart.
  x      the forward's input, rows ldx apart.
  mean, rstd     rows elements each, as the forward wrote them (required).
  weight n elements, or NULL (the forward had none).
  dx     rows x n output, rows lddx apart; must not overlap dy or x.
  dweight = sum over rows of dy * (x - mean) * rstd, n elements, or NULL.
  dbias   = sum over rows of dy, n elements, or NULL.
With rows <= 0 (and n > 0) dweight and dbias are set to zero."""),
    op("rms_norm",
       "int64_t rows, int64_t n, const T *x, int64_t ldx, T *y, int64_t ldy, const P *weight, "
       "double eps, P *rstd, int num_threads",
       """\
RMSNorm forward, per row: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2)
+ eps). Arguments as fastnorm_layer_norm_*, without bias and mean; y may be
x itself (ldy == ldx); rstd (rows elements) or NULL."""),
    op("rms_norm_backward",
       "int64_t rows, int64_t n, const T *dy, int64_t lddy, const T *x, int64_t ldx, "
       "const P *rstd, const P *weight, T *dx, int64_t lddx, P *dweight, int num_threads",
       """\
RMSNorm backward, from the forward's rstd (rows elements, required).
Arguments as fastnorm_layer_norm_backward_*, without mean and dbias;
dweight = sum over rows of dy * x * rstd (n elements), or NULL."""),
    op("add_layer_norm",
       "int64_t rows, int64_t n, const T *x, int64_t ldx, const T *residual, int64_t ldr, "
       "const P *residual_bias, T *sum_out, int64_t lds, T *y, int64_t ldy, const P *weight, "
       "const P *bias, double eps, P *mean, P *rstd, int num_threads",
       """\
Fused residual add and norm (a pre-norm transformer block), per row:
  sum_out = x + residual (+ residual_bias), then y = LayerNorm(sum_out)
  (or RMSNorm(sum_out)) with weight and bias as in the plain forward.
  x, residual    rows x n inputs, rows ldx and ldr apart.
  residual_bias  n elements, or NULL.
  sum_out        rows x n output (required), rows lds apart; may be x or
                 residual itself (with the same stride), to update a
                 residual stream in place.
  y              rows x n output, rows ldy apart; must not overlap
                 sum_out, x or residual.
  mean, rstd     the statistics of sum_out, rows elements, or NULL.
x and residual are read once, sum_out and y written once. The backward is
fastnorm_layer_norm_backward_* (fastnorm_rms_norm_backward_*) with
x = sum_out."""),
    op("add_rms_norm",
       "int64_t rows, int64_t n, const T *x, int64_t ldx, const T *residual, int64_t ldr, "
       "const P *residual_bias, T *sum_out, int64_t lds, T *y, int64_t ldy, const P *weight, "
       "double eps, P *rstd, int num_threads"),
    op("add_layer_norm_backward",
       "int64_t rows, int64_t n, const T *dy, int64_t lddy, const T *s, int64_t lds, "
       "const T *ds, int64_t ldds, const P *mean, const P *rstd, const P *weight, T *dsum, "
       "int64_t lddsum, P *dweight, P *dbias, int num_threads",
       """\
The backward of add_layer_norm / add_rms_norm over the last axis, with ds,
the gradient that reaches s = x + residual from later blocks: dsum = the
norm's dx + ds, added before the one rounding to T (for 16-bit data, dx + ds
in float32 then rounded), in rows lddsum apart; dweight and dbias as in
fastnorm_layer_norm_backward. dsum must not overlap dy, s or ds."""),
    op("add_rms_norm_backward",
       "int64_t rows, int64_t n, const T *dy, int64_t lddy, const T *s, int64_t lds, "
       "const T *ds, int64_t ldds, const P *rstd, const P *weight, T *dsum, int64_t lddsum, "
       "P *dweight, int num_threads"),
    op("layer_norm_per_sample",
       "int64_t samples, int64_t rows_per_sample, int64_t n, const T *x, int64_t ldx, T *y, "
       "int64_t ldy, const P *weight, const P *bias, int64_t ldp, double eps, P *mean, "
       "P *rstd, int num_threads",
       """\
LayerNorm with per-sample affine parameters (AdaLN of diffusion
transformers): x has samples * rows_per_sample rows (ldx apart), sample s
being rows s * rows_per_sample ... (s + 1) * rows_per_sample - 1, and
sample s uses parameter row s: weight + s * ldp and bias + s * ldp (n
elements each; weight and bias may each be NULL). AdaLN's
y = LN(x) * (1 + scale) + shift is weight = 1 + scale, bias = shift.
y (may be x itself, ldy == ldx), mean and rstd (samples * rows_per_sample
elements each, or NULL) as fastnorm_layer_norm_*."""),
    op("layer_norm_per_sample_backward",
       "int64_t samples, int64_t rows_per_sample, int64_t n, const T *dy, int64_t lddy, "
       "const T *x, int64_t ldx, const P *mean, const P *rstd, const P *weight, int64_t ldp, "
       "T *dx, int64_t lddx, P *dweight, P *dbias, int num_threads",
       """\
The backward of fastnorm_layer_norm_per_sample_*: each sample's rows are a
LayerNorm backward with that sample's weight row (weight + s * ldp, or
NULL). mean and rstd (samples * rows_per_sample elements) are required.
dweight and dbias are samples x n dense arrays (row s: the sums over sample
s's rows), or NULL. Samples run one after the other, each with up to
num_threads threads."""),

    section("channel normalizers", """\
Data (x, y, dy, dx) is one C-contiguous (S, R, C, L) array: S samples, R
rows, C channels, L contiguous elements per channel; element (s, r, c, l)
is at index ((s * R + r) * C + c) * L + l. NCHW data with per-sample
statistics is (N, 1, C, H*W); channels-last (NHWC) data is (N, H*W, C, 1).
Batch statistics merge the batch into the rows: (1, N, C, H*W) or
(1, N*H*W, C, 1). Parameters (weight, bias) have one value per channel (C
elements, of the data type) or are NULL. Statistics are float64 partial
sums merged in a fixed order: bitwise identical for any num_threads, and
accurate over millions of elements."""),
    op("group_norm",
       "int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const T *x, T *y, "
       "const P *weight, const P *bias, double eps, P *mean, P *rstd, P *var, int num_threads",
       """\
Group norm: the C channels form G groups of C / G consecutive channels,
and each unit (s, g) -- sample s, group g -- is normalized with the mean
and biased variance of its R x C/G x L elements:
  y = (x - mean[s, g]) * rstd[s, g] * weight[c] + bias[c].
Instance norm is G = C; batch-norm training is S = 1 (the batch merged
into R, see above) with G = C.
  x, y   (S, R, C, L) arrays; y may be x itself.
  weight, bias   C elements each, or NULL.
  mean, rstd, var  S * G elements each (outputs, in the data type; unit
         (s, g) at index s * G + g; var is the biased variance), or NULL.
         With R, C or L zero (and S > 0) they are set to NaN.
Returns FASTNORM_EINVAL, writing nothing, when S > 0 and G < 1 or C is
not a multiple of G."""),
    op("group_norm_backward",
       "int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const T *dy, const T *x, "
       "const P *mean, const P *rstd, const P *weight, T *dx, P *dweight, P *dbias, "
       "int num_threads",
       """\
Group norm backward, from the forward's statistics.
  dy, x  (S, R, C, L): the gradient of y and the forward's input.
  mean, rstd     S * G elements each, as the forward wrote them (required).
  weight C elements, or NULL (the forward had none).
  dx     (S, R, C, L) output; must not overlap dy or x.
  dweight = sum of dy * (x - mean) * rstd per channel (over S, R, L),
  dbias   = sum of dy per channel; C elements each, or NULL. With S, R or
         L zero (and C > 0) they are set to zero.
Returns FASTNORM_EINVAL, writing nothing, when G < 1 or C is not a
multiple of G."""),
    note("""\
The stages the other channel normalizers (batch norm and instance norm
with given statistics, switchable norm, batch layer norm) are composed of.
Per-(s, c) vectors are double arrays of S * C elements, (s, c) at index
s * C + c; all of them are required (none may be NULL)."""),
    op("channel_moments",
       "int64_t S, int64_t R, int64_t C, int64_t L, const T *x, double eps, double *mean, "
       "double *var, int num_threads",
       """\
Moments: mean and biased var of each (s, c) over its R x L elements
(outputs, S * C doubles each). eps is not added; it only decides whether
sums that underflowed are computed again in double. With R or L zero (and
S, C > 0) both are set to NaN."""),
    op("channel_normalize",
       "int64_t S, int64_t R, int64_t C, int64_t L, const T *x, T *y, const double *mean, "
       "const double *rstd, const P *weight, const P *bias, int accumulate, int num_threads",
       """\
Normalize with given statistics: y = (x - mean) * rstd * weight + bias,
mean and rstd per (s, c) (S * C doubles each), weight and bias per channel
(C elements each, or NULL). accumulate = 0 writes y (which may then be x
itself); accumulate != 0 adds to y (y += ...; y must not overlap x)."""),
    op("channel_sums",
       "int64_t S, int64_t R, int64_t C, int64_t L, const T *dy, const T *x, const double *mu, "
       "double *sum_dy, double *sum_dyx, int num_threads",
       """\
Gradient sums about given means: per (s, c), over its R x L elements,
sum_dy = sum(dy) and sum_dyx = sum(dy * (x - mu)) (outputs, S * C doubles
each; mu: S * C doubles). With R or L zero both are set to zero."""),
    op("channel_sums_scale",
       "int64_t S, int64_t R, int64_t C, int64_t L, const T *dy, const T *x, const double *mu, "
       "double *sum_dy, double *sum_dyx, T *dx, const double *a, int num_threads",
       """\
channel_sums and, in the same pass over dy, dx = a * dy with a per
(s, c) (S * C doubles): the backward of a normalization with constant
statistics (batch norm in eval mode: a = weight * rstd). dx must not
overlap dy or x."""),
    op("channel_affine_backward",
       "int64_t S, int64_t R, int64_t C, int64_t L, const T *dy, const T *x, T *dx, "
       "const double *mu, const double *rstd, const double *a, const double *b, "
       "const double *k, int accumulate, int num_threads",
       """\
The input gradient of an affine-in-dy form, per (s, c):
  dx = a * dy + b * ((x - mu) * rstd) + k      (accumulate = 0), or
  dx += a * dy + b * ((x - mu) * rstd) + k     (accumulate != 0),
with mu, rstd, a, b and k S * C doubles each. dx must not overlap dy or x.
Batch-norm backward with batch statistics (mu, rstd) is
a = weight * rstd, b = -a * mean(dy * xhat), k = -a * mean(dy)."""),

    section("weight normalization", """\
v is C rows of L contiguous elements (axis 0 of a C-contiguous weight of
shape (C, ...)), g one double per row. Forward: w = g * v / sqrt(sum(v^2) +
eps) per row (w may be v itself; eps = 0 is the usual definition, and a
zero row then gives NaN). Backward, for the gradient dw of w: dg (C
doubles) = sum(dw * v) / norm and dv = (g / norm) dw - (g dg / norm^2) v;
dv must not overlap dw or v. Each row is read from memory once."""),
    op("weight_norm",
       "int64_t C, int64_t L, const T *v, const double *g, double eps, T *w, int num_threads"),
    op("weight_norm_backward",
       "int64_t C, int64_t L, const T *dw, const T *v, const double *g, double eps, T *dv, "
       "double *dg, int num_threads"),

    section("LayerNorm / RMSNorm over an axis that is not the last", """\
x is an (S, C, L) array normalized over C: element (s, c, l) at
s * lds + c * ldc + l (the L elements of each (s, c) contiguous; strides in
elements). axis=1 of a C-contiguous (N, C, H, W) array is S = N, L = H*W,
ldc = L, lds = C*L. Statistics (mean, rstd) are dense (S, L) arrays, one
per (s, l), or NULL; weight, bias (and dweight, dbias) have C elements or
are NULL. y (dx) may be x itself when it has x's strides. Computed along
the contiguous L, with no transposing copy."""),
    op("layer_norm_axis",
       "int64_t S, int64_t C, int64_t L, const T *x, int64_t ldxs, int64_t ldxc, T *y, "
       "int64_t ldys, int64_t ldyc, const P *weight, const P *bias, double eps, P *mean, "
       "P *rstd, int num_threads"),
    op("rms_norm_axis",
       "int64_t S, int64_t C, int64_t L, const T *x, int64_t ldxs, int64_t ldxc, T *y, "
       "int64_t ldys, int64_t ldyc, const P *weight, double eps, P *rstd, int num_threads"),
    op("layer_norm_axis_backward",
       "int64_t S, int64_t C, int64_t L, const T *dy, int64_t lddys, int64_t lddyc, "
       "const T *x, int64_t ldxs, int64_t ldxc, const P *mean, const P *rstd, "
       "const P *weight, T *dx, int64_t lddxs, int64_t lddxc, P *dweight, P *dbias, "
       "int num_threads"),
    op("rms_norm_axis_backward",
       "int64_t S, int64_t C, int64_t L, const T *dy, int64_t lddys, int64_t lddyc, "
       "const T *x, int64_t ldxs, int64_t ldxc, const P *rstd, const P *weight, T *dx, "
       "int64_t lddxs, int64_t lddxc, P *dweight, int num_threads"),
    op("add_layer_norm_axis",
       "int64_t S, int64_t C, int64_t L, const T *x, int64_t ldxs, int64_t ldxc, "
       "const T *residual, int64_t ldrs, int64_t ldrc, const P *residual_bias, T *sum_out, "
       "int64_t ldss, int64_t ldsc, T *y, int64_t ldys, int64_t ldyc, const P *weight, "
       "const P *bias, double eps, P *mean, P *rstd, int num_threads",
       """\
The fused residual add of add_layer_norm / add_rms_norm over a non-last
axis: s = x + residual (+ residual_bias[c]) is written to sum_out (strides
ldss, ldsc), all of it, and then normalized as by fastnorm_layer_norm_axis /
fastnorm_rms_norm_axis; residual_bias has C elements or is NULL. sum_out may
be x or residual (the same memory and strides) but must not overlap them
otherwise; y may be x or residual likewise, and must not overlap sum_out."""),
    op("add_rms_norm_axis",
       "int64_t S, int64_t C, int64_t L, const T *x, int64_t ldxs, int64_t ldxc, "
       "const T *residual, int64_t ldrs, int64_t ldrc, const P *residual_bias, T *sum_out, "
       "int64_t ldss, int64_t ldsc, T *y, int64_t ldys, int64_t ldyc, const P *weight, "
       "double eps, P *rstd, int num_threads"),
    section("switchable and batch-layer normalization"),
    op("switch_norm",
       "int64_t N, int64_t R, int64_t C, int64_t L, const T *x, T *y, const P *weight, "
       "const P *bias, const double *mean_weight, const double *var_weight, "
       "const double *running_mean, const double *running_var, double eps, double *mean, "
       "double *rstd, double *in_mean, double *in_var, double *ln_mean, double *ln_var, "
       "double *bn_mean, double *bn_var, int num_threads",
       """\
Switchable normalization. x is a C-ordered (N, R, C, L) array: N samples,
R rows, C channels and L contiguous elements per channel ((N, 1, C, H*W)
for NCHW data, (N, H*W, C, 1) for channels-last). The instance moments
in_mean, in_var (N, C) are mixed with the layer moments ln_mean, ln_var (N)
and the batch moments bn_mean, bn_var (C) by the softmaxed weights
mean_weight and var_weight (3 doubles each: IN, LN, BN):
  mean = mw[0] in_mean + mw[1] ln_mean + mw[2] bn_mean, var alike,
  y = (x - mean) / sqrt(var + eps) * weight + bias,
every statistic in double (docs/numerics.md §9; the sums in NumPy's
pairwise order, driver_mixed.h). The batch moments come from the
batch, or, where running_mean and running_var (C doubles) are not NULL, are
those. mean and rstd (N, C) are the mixed statistics the backward takes,
with the other seven arrays. weight and bias (C elements) may be NULL. With
no elements nothing is written to y and every statistic is NaN. y may be x
itself, and must not otherwise overlap the inputs.

The backward writes dx (x's shape; it must not overlap dy or x), dweight
and dbias (C doubles each, either may be NULL; weight NULL means ones) and
the gradients of the mixing weights dmean_weight, dvar_weight (3 doubles
each, with respect to the softmaxed weights' logits). batch_stats is
whether the forward used the batch's moments (else they are constants).
rstd_cubed (N, C) is rstd**3 as the caller computed it, or NULL:
pow(rstd, 3). With no elements the gradients are zero."""),
    op("switch_norm_backward",
       "int64_t N, int64_t R, int64_t C, int64_t L, const T *dy, const T *x, "
       "const P *weight, const double *mean_weight, const double *var_weight, "
       "const double *mean, const double *rstd, const double *in_mean, const double *in_var, "
       "const double *ln_mean, const double *ln_var, const double *bn_mean, "
       "const double *bn_var, int batch_stats, const double *rstd_cubed, T *dx, "
       "double *dweight, double *dbias, double *dmean_weight, double *dvar_weight, "
       "int num_threads"),
    op("batch_layer_norm",
       "int64_t B, int64_t M, int64_t D, const T *x, T *y, const P *weight, const P *bias, "
       "int64_t batch_size, const double *running_mean, const double *running_var, "
       "double eps, P *feature_mean, P *feature_rstd, double *batch_mean, "
       "double *batch_rstd, double *batch_center, double *batch_var, int num_threads",
       """\
Batch layer normalization. x is a C-ordered (B, M, D) array: B samples, M
positions and D features (x.shape[1:-1] merged into M), F = M * D columns.
With g = weight / sqrt(D) (weight NULL: ones) and a = 1/n - 1e-4,
b = 1 - 1/n - 1e-4 for n = batch_size, or B where batch_size <= 0
(a = b = 0 for an empty batch):
  y = a * g * LN_features(x) + b * g * (x - batch_mean) * batch_rstd + bias
(docs/numerics.md §8). The feature branch's statistics feature_mean
and feature_rstd (B * M elements) are those of a layer norm over the last
axis; the batch branch's, per column (F doubles each): batch_center and
batch_var, the mini-batch's mean and biased variance (NaN for an empty
batch), and batch_mean and batch_rstd, the ones used -- running_mean and
1 / sqrt(running_var + eps) where those (F doubles) are not NULL, else the
mini-batch's. bias (D elements) may be NULL. y must not overlap x or the
parameters.

The backward takes the forward's statistics; frozen_mean and frozen_var
say whether batch_mean and batch_rstd came from the running statistics
(constants, then). It writes dx (x's shape; it must not overlap dy or x),
dweight and dbias (D elements; either may be NULL). With no elements the
gradients are zero."""),
    op("batch_layer_norm_backward",
       "int64_t B, int64_t M, int64_t D, const T *dy, const T *x, const P *weight, "
       "int64_t batch_size, const P *feature_mean, const P *feature_rstd, "
       "const double *batch_mean, const double *batch_rstd, const double *batch_center, "
       "int frozen_mean, int frozen_var, T *dx, P *dweight, P *dbias, int num_threads"),
]


# The table's layout, version 1. Its first members are the ints
# table_version, table_size and version_number; then, in this order, each
# entry below: a function of fastnorm.h's hand-written part (by name, without
# the fastnorm_ prefix), or a block of operations in the data types given --
# for each operation its data types ("each_operation"), or for each data type
# its operations ("each_dtype"). A block may carry a comment for the struct.
# Append new entries at the end, never elsewhere, and keep API_TABLE_VERSION:
# programs compiled against an older header read the members they know.
API_TABLE_VERSION = 1

TABLE_DOC = """\
For hosts that reach the kernels through an already loaded copy instead
of linking them: the Python package hands this table to other extension
modules in the capsule fastnorm._core._C_API (fastnorm_capi.h and
fastnorm/kernels.pxd use it). Members are only ever appended: a user
compiled with this header needs table_version == FASTNORM_API_TABLE_VERSION
and table_size >= sizeof(fastnorm_api_table). Each member is the entry
point of the same name with the fastnorm_ prefix."""


def functions(*names):
    return {"kind": "functions", "names": names, "comment": None}


def each_operation(names, dtypes, comment=None):
    return {"kind": "ops", "pairs": [(n, d) for n in names for d in dtypes], "comment": comment}


def each_dtype(dtypes, names, comment=None):
    return {"kind": "ops", "pairs": [(n, d) for d in dtypes for n in names], "comment": comment}


ALL_DTYPES = tuple(d[0] for d in DTYPES)

TABLE = [
    functions("cpu_features", "isa_available", "set_isa", "get_isa", "has_openmp",
              "max_threads", "num_procs", "serial_after_fork"),
    each_operation(
        ["layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward",
         "add_layer_norm", "add_rms_norm", "layer_norm_per_sample",
         "layer_norm_per_sample_backward", "group_norm", "group_norm_backward",
         "channel_moments", "channel_normalize", "channel_sums", "channel_affine_backward"],
        ("f32", "f64")),
    each_operation(
        ["layer_norm_axis", "rms_norm_axis", "layer_norm_axis_backward",
         "rms_norm_axis_backward", "weight_norm", "weight_norm_backward", "channel_sums_scale"],
        ("f32", "f64"), "LayerNorm / RMSNorm over a non-last axis"),
    each_dtype(
        ("f16", "bf16"),
        ["layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward",
         "add_layer_norm", "add_rms_norm", "layer_norm_per_sample",
         "layer_norm_per_sample_backward", "group_norm", "group_norm_backward",
         "channel_moments", "channel_normalize", "channel_sums", "channel_affine_backward",
         "layer_norm_axis", "rms_norm_axis", "layer_norm_axis_backward",
         "rms_norm_axis_backward", "channel_sums_scale", "weight_norm", "weight_norm_backward"],
        "16-bit data (float16, bfloat16)"),
    each_dtype(ALL_DTYPES, ["add_layer_norm_axis", "add_rms_norm_axis"],
               "appended: the fused residual add over a non-last axis"),
    functions("bf16_convert_in_use"),
    each_dtype(ALL_DTYPES, ["add_layer_norm_backward", "add_rms_norm_backward"],
               "appended: the fused residual add's backward with ds"),
    functions("avx512_in_use"),
    each_dtype(ALL_DTYPES, ["switch_norm", "switch_norm_backward", "batch_layer_norm",
                            "batch_layer_norm_backward"],
               "appended: switchable and batch-layer normalization"),
]
