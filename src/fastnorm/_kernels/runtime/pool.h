/* pool.h -- internal: fastnorm's thread pool (see pool.c and docs/threads.md). */
#ifndef FASTNORM_POOL_H
#define FASTNORM_POOL_H

#include <stdint.h>

/* The most threads one call uses, the caller included. */
#define FN_POOL_MAX_THREADS 256

/* A parallel body: computes the items [begin, end) of its work. */
typedef void (*fn_range_body)(void *ctx, int64_t begin, int64_t end);

/* Runs body over [0, count) on up to nt threads, the calling thread one of
 * them: [0, count) is cut into chunks (their number a function of count and
 * nt only) that the threads claim one at a time from a shared counter. The
 * caller returns when every chunk is done; it waits only for chunks a worker
 * has claimed. Runs body(ctx, 0, count) on the calling thread alone where
 * nt <= 1, count <= 1, the build is serial, the pool is busy with another
 * call or no worker thread could be started. */
void fn_pool_run(int nt, int64_t count, fn_range_body body, void *ctx);

/* A host's team of threads, as a function with the signature of the OpenMP
 * runtime's GOMP_parallel: runs fn(data) on up to nthreads threads, the
 * calling thread one of them, and returns when every one has returned. */
typedef void (*fn_team_runner)(void (*fn)(void *data), void *data, unsigned nthreads,
                               unsigned flags);
/* Sets the team on which fn_pool_run runs its calls' chunks (claimed from a
 * shared counter as in the pool, cut the same way) instead of the pool's own
 * workers; NULL goes back to the pool. A process whose other library keeps
 * its OpenMP threads spinning between its calls (PyTorch) sets it, so that
 * both libraries' work runs on one set of threads. A process forked while
 * a team is set, or after one ran a call, runs its calls on the calling
 * thread. A no-op in a serial build. */
void fn_pool_set_team(fn_team_runner run);
/* The team set, or NULL. */
fn_team_runner fn_pool_team(void);

/* 1 when the kernels were built with the pool, else 0. */
int fn_pool_built(void);
/* CPUs this process may run on (its CPU affinity), at least 1: the most
 * threads one call uses. */
int fn_pool_usable_cpus(void);
/* The default thread count: the limit set by fn_pool_set_limit if any, else
 * OMP_NUM_THREADS (its first value) if set to a positive count, else the
 * usable CPUs. 1 in a serial build. */
int fn_pool_default_threads(void);
/* Sets the default thread count (n >= 1), or drops the limit (n <= 0). */
void fn_pool_set_limit(int n);
/* 1 in a process forked after the pool started threads (its calls then run
 * on the calling thread), else 0. */
int fn_pool_serial_after_fork(void);

/* For tests and measurements only. */
/* Workers' spin time after a call, in microseconds (< 0: leave it); returns
 * the value in force. */
int fn_pool_spin_us(int us);
/* How long the pool keeps quiet once it sees the CPUs oversubscribed, in
 * milliseconds (0: never; < 0: leave it; setting it ends a quiet period);
 * returns the value in force. */
int fn_pool_quiet_ms(int ms);
/* on = 1: every call claims its chunks in a random order, and workers pause
 * a random few microseconds before each claim (the results must not change);
 * 0: the normal order; < 0: leave it. Returns the setting in force. */
int fn_pool_shuffle(int on);
/* Worker threads started so far. */
int fn_pool_workers(void);
/* Whether the pool's test for oversubscribed CPUs says so now (more threads
 * runnable over the system than CPUs the process may use; 1 where the count
 * cannot be read; 0 in a build without the pool). */
int fn_pool_oversubscribed(void);
/* The runnable-thread count that test reads, or -1 where it cannot be read
 * (or in a build without the pool). */
long fn_pool_runnable(void);

#endif
