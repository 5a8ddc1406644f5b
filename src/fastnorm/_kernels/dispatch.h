/* dispatch.h -- internal: the kernel table chosen at run time, and thread sizing. */
#ifndef FASTNORM_DISPATCH_H
#define FASTNORM_DISPATCH_H

#include <stdint.h>

#include "prims.h"

const fn_prims *fn_active_prims(void);
/* The table in use, without the AVX-512 pairs (fn_set_avx512): the same
 * results. For the calls where those measured slower. */
const fn_prims *fn_active_prims_narrow(void);

/* Whether the AVX2 kernels may use the AVX-512 BF16 conversion (on = 1, the
 * default where available) or must round bfloat16 with integer instructions
 * (0): for tests that compare the two. Returns whether it is in use now.
 * Process-wide, like fastnorm_set_isa. */
int fn_set_bf16_convert(int on);

/* Whether the AVX2 kernels may hold their loops' vector pairs in AVX-512
 * registers (on = 1, the default where available; the same results either
 * way): for tests that compare the two. Returns whether they do now. */
int fn_set_avx512(int on);

/* Row outputs (y, dx) of at least this many bytes are written with
 * streaming stores where the kernel table has them (the same values: only
 * the store instruction differs): such an output will not be read from the
 * cache before it is evicted, so an ordinary store's read of each
 * destination line is wasted memory traffic. The default depends on the CPU
 * (see fn_stream_default in dispatch.c; -1, never, on most);
 * FASTNORM_STREAM_BYTES in the environment sets it at the first call (0:
 * every output; a negative number or anything but an integer: none).
 * fn_set_stream_min_bytes sets it (a negative value: none) and returns the
 * value before. */
int64_t fn_stream_min_bytes(void);
int64_t fn_set_stream_min_bytes(int64_t bytes);
/* The streaming copy for an output of this many bytes, with its fence in
 * *fence (both from one read of the active table: a call uses one table's
 * pair even if another thread changes the ISA meanwhile), or NULL for
 * ordinary stores. */
void (*fn_stream_for(int64_t bytes, void (**fence)(void)))(void *, const void *, size_t);

/* Below this many bytes of data a call runs on one thread: waking the pool
 * costs more than the work. */
#define FN_PARALLEL_MIN_BYTES (128 * 1024)

/* Threads to use for `units` independent work items over `bytes` of data,
 * given the caller's upper bound. */
int fn_threads_for(int requested, int64_t units, int64_t bytes);

#endif
