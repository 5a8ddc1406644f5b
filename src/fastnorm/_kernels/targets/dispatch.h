/* dispatch.h -- internal: the kernel table chosen at run time, and thread sizing. */
#ifndef FASTNORM_DISPATCH_H
#define FASTNORM_DISPATCH_H

#include <stdint.h>

#include "prims.h"

/* The tables of the kernels in use (the first call selects the best target
 * the build and the CPU have; fastnorm_set_isa another). */
const fn_prims *fn_active_prims(void);
/* The tables for rows of n elements of data type `dtype` (FN_DT_*) in
 * direction `dir` (FN_FORWARD, FN_BACKWARD): those of the target in use, or
 * those its registry entry gives for rows outside its limits (dispatch.c's
 * fn_targets; the same results, only the speed differs). One read of the
 * selection: the row drivers call it once per call. */
const fn_prims *fn_row_prims(int dtype, int dir, int64_t n);
/* For tests: 0 lets the short rows below a target's row_min take the
 * target's own tables too (so that those stay tested), 1 restores the
 * registry's rule; another value only asks. Returns the setting before. */
int fn_set_row_min(int on);

/* Whether the targets that have it may round bfloat16 with the AVX-512 BF16
 * instruction (on = 1, the default where available) or must round with
 * integer instructions (0): the same bits, for tests that compare the two.
 * Returns whether it is in use now. Process-wide, like fastnorm_set_isa. */
int fn_set_bf16_convert(int on);

/* A kernel target of the registry, for the Python module's listing and its
 * error messages. */
typedef struct {
    int isa;          /* FASTNORM_ISA_* */
    const char *name; /* its name in FASTNORM_ISA */
    int built;        /* 1 when its kernel files are compiled in */
    unsigned need;    /* FASTNORM_CPU_* bits it needs of the CPU and OS */
} fn_target_info;
/* The i-th target, best first: fills *info and returns 1, or returns 0 past
 * the last. */
int fn_target_at(int i, fn_target_info *info);

/* For tests: every later selection (and fastnorm_cpu_features) treats these
 * FASTNORM_CPU_* bits as absent from the CPU, as on a CPU without them; 0
 * shows them again. The target in use stays. Returns the bits hidden before. */
unsigned fn_hide_cpu_features(unsigned bits);

/* Row outputs (y, dx) of at least this many bytes are written with
 * streaming stores where the kernel table has them (the same values: only
 * the store instruction differs): such an output will not be read from the
 * cache before it is evicted, so an ordinary store's read of each
 * destination line is wasted memory traffic. The default depends on the CPU
 * (see fn_stream_default in dispatch.c);
 * FASTNORM_STREAM_BYTES in the environment sets it at the first call (0:
 * every output; a negative number or anything but an integer: none).
 * fn_set_stream_min_bytes sets it (a negative value: none) and returns the
 * value before. */
int64_t fn_stream_min_bytes(void);
int64_t fn_set_stream_min_bytes(int64_t bytes);
/* The shortest rows (bytes) whose streamed output goes straight from the
 * registers in whole lines, with the next row's statistics or sums in the
 * same loops (the backward's rule, drivers/driver_impl.h); shorter rows go
 * through the streaming writer, whose calls cost more per row, and stream
 * from twice the threshold (fn_stream_for; bench/choices.md, "Streaming
 * stores by CPU", "The backward of long rows"). */
#define FN_STREAM_DIRECT_MIN_BYTES ((int64_t)2048)
/* The streaming copy for an output of this many bytes in rows of row_bytes,
 * with its fence in *fence (both from one read of the active table: a call
 * uses one table's pair even if another thread changes the ISA meanwhile),
 * or NULL for ordinary stores: below the threshold (twice it for rows
 * shorter than FN_STREAM_DIRECT_MIN_BYTES), for rows shorter than
 * fn_set_stream_min_row_bytes's (1 KiB by default), or for fresh outputs. */
void (*fn_stream_for(int64_t bytes, int64_t row_bytes,
                     void (**fence)(void)))(void *, const void *, size_t);
/* For tests: the shortest row that streams (bytes >= 0 sets it; a negative
 * value asks). Returns the value before. */
int64_t fn_set_stream_min_row_bytes(int64_t bytes);

/* Marks the calling thread's next calls as writing their streamed outputs
 * into fresh memory (1) -- pages just allocated and never written, as the
 * Python module's own result arrays -- or into memory the caller provides
 * (0, the default, as for every C caller). Fresh pages are zeroed by the OS
 * through the cache on their first touch, so ordinary stores then find
 * their lines in the cache and streaming stores only evict them: fresh
 * outputs are written with ordinary stores (bench/choices.md, "Streaming
 * stores by CPU"). Thread-local; set it around a call and clear it after. */
void fn_set_output_fresh(int fresh);
/* For tests: on = 1 lets fresh outputs stream too (by the threshold alone),
 * 0 restores the rule above, -1 asks. Returns the setting before. */
int fn_set_stream_fresh(int on);

/* The bytes of data a call's arrays may take and still stay in the last-level
 * cache from one call to the next, by the CPU (whatever FASTNORM_STREAM_BYTES
 * says): on AMD CPUs a core complex's L3 (twice fn_stream_default's
 * threshold); elsewhere the L3 the OS reports, at most 96 MiB; 32 MiB where
 * it reports none. */
int64_t fn_cache_bytes(void);

/* For tests: whether the row backward takes several rows' dx together
 * (drivers/driver_impl.h, backward_rows_together): -1 by its rule (the
 * default), 0 never, 1 wherever it can; another value only asks. Returns
 * the mode before. fn_backward_rows_mode reads it. */
int fn_set_backward_rows(int mode);
int fn_backward_rows_mode(void);

/* For tests: whether streamed rows may take the next row's statistics
 * (forward) or sums (backward) in the loops of their output where the
 * drivers' rules say so (drivers/driver_impl.h, forward_rows and
 * backward_rows_fused): 1 (the default) or 0 (never); another value only
 * asks. Returns the setting before. fn_next_row_sums_mode reads it. */
int fn_set_next_row_sums(int on);
int fn_next_row_sums_mode(void);
/* The rows whose statistics or sums were taken in the loops of the row before:
 * the drivers add each thread's count once per call (fn_count_next_row_sums);
 * fn_take_next_row_sums_count returns the count since it was last taken, for
 * tests that check the rule applies where it should. */
void fn_count_next_row_sums(int64_t rows);
int64_t fn_take_next_row_sums_count(void);

/* For tests: whether short rows may go many at a time through the row
 * primitives that take them so (drivers/driver.c, FN_SHORT_ROW_N): 1 (the
 * default) or 0 (never); another value only asks. Returns the setting before.
 * fn_short_rows_mode reads it; the drivers count the rows taken that way
 * (fn_count_short_rows), and fn_take_short_rows_count returns the count
 * since it was last taken. */
int fn_set_short_rows(int on);
int fn_short_rows_mode(void);
void fn_count_short_rows(int64_t rows);
int64_t fn_take_short_rows_count(void);

/* The longest bfloat16 rows whose backward widens dy and x into copies
 * (drivers/driver.c, FN_WIDE_BACKWARD): the target's choice, or what
 * fn_set_backward_widen_max set for tests (n >= 0 sets it, -1 restores the
 * target's choice, another value only asks; returns the setting before). */
int64_t fn_backward_widen_max(void);
int64_t fn_set_backward_widen_max(int64_t n);

/* Below this many bytes of data a call runs on one thread: waking the pool
 * costs more than the work. */
#define FN_PARALLEL_MIN_BYTES (128 * 1024)

/* Threads to use for `units` independent work items over `bytes` of data,
 * given the caller's upper bound. */
int fn_threads_for(int requested, int64_t units, int64_t bytes);

#endif
