/*
 * pool.c -- fastnorm's thread pool: one per process, started lazily.
 *
 * A call cuts its items into chunks and publishes them; the calling thread
 * and any worker that is awake claim chunks one at a time from a shared
 * atomic counter. The caller never waits for a worker that has not started:
 * when the counter runs out, it waits only for the chunks workers have
 * claimed and not yet finished. A worker that wakes late finds nothing left
 * and goes back to waiting. After a call, workers spin for a short budget
 * (back-to-back calls find them awake), then sleep on a futex (Linux) or a
 * condition variable.
 *
 * The operating system's primitives (threads, the wait on a word, the clock,
 * the CPU count, fork) live in the first section below; the rest is plain
 * C with atomics. Without POSIX threads and GCC-style atomics, or when built
 * with FASTNORM_SERIAL, every call runs on the calling thread.
 *
 * docs/threads.md describes the design and its choices.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#endif
#include "pool.h"

#include <stdlib.h>
#include <string.h>

#if !defined(FASTNORM_SERIAL) && !defined(_WIN32) && (defined(__GNUC__) || defined(__clang__))
#define FN_POOL 1
#endif

#ifdef FN_POOL
#include <pthread.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#define FN_FUTEX 1
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
#endif

/* Chunks per thread of a call: more than one, so that the threads that are
 * awake share the work of one that is not, and few, because each claim moves
 * the shared word between CPUs, a cost that is not small beside the whole of
 * a small call. */
#ifndef FN_CHUNKS_PER_THREAD
#define FN_CHUNKS_PER_THREAD 2
#endif
/* Workers' default spin after a call, in microseconds (docs/threads.md:
 * bench/spin_budget.py measures it). */
#ifndef FN_POOL_SPIN_US
#define FN_POOL_SPIN_US 200
#endif
/* The caller's spin while it waits for chunks claimed by workers, before it
 * sleeps, in microseconds. */
#define FN_POOL_WAIT_SPIN_US 20
/* When a call stalls (the OS descheduled one of its threads in the middle of
 * it: the CPUs are oversubscribed), the pool keeps quiet for this long, in
 * milliseconds: workers do not spin, and calls run on the caller alone. On
 * such a machine a spinning worker uses up its share of the CPU and is
 * descheduled, possibly holding a chunk the caller then waits for, and a
 * woken worker often lands on the caller's CPU and pushes the caller out
 * for a time slice (milliseconds); a call on the caller alone risks
 * neither. After the pause, the next call wakes the workers again and so
 * checks whether the load is gone (a stall again doubles the period, up to
 * 16 times). A call stalled when the caller, after
 * its last chunk, waited for workers' chunks, or took for one of its own
 * chunks, more than FN_POOL_STALL_US beyond its quickest chunk (and more
 * than twice that chunk), and more threads are runnable than there are CPUs
 * (fn_pool_oversubscribed, read only then): on an idle machine the page
 * faults of a fresh output (a huge page zeroed on its first touch) make
 * some chunks that much slower than others too, and a quiet period there
 * would only halve the speed of the calls that follow. */
#define FN_POOL_STALL_US 200
#ifndef FN_POOL_QUIET_MS
#define FN_POOL_QUIET_MS 100
#endif

#ifndef FN_POOL

void fn_pool_run(int nt, int64_t count, fn_range_body body, void *ctx) {
    (void)nt;
    body(ctx, 0, count);
}
void fn_pool_set_team(fn_team_runner run) { (void)run; }
fn_team_runner fn_pool_team(void) { return NULL; }
int fn_pool_built(void) { return 0; }
int fn_pool_usable_cpus(void) { return 1; }
int fn_pool_default_threads(void) { return 1; }
void fn_pool_set_limit(int n) { (void)n; }
int fn_pool_serial_after_fork(void) { return 0; }
int fn_pool_spin_us(int us) { (void)us; return 0; }
int fn_pool_quiet_ms(int ms) { (void)ms; return 0; }
int fn_pool_oversubscribed(void) { return 0; }
long fn_pool_runnable(void) { return -1; }
int fn_pool_shuffle(int on) { (void)on; return 0; }
int fn_pool_workers(void) { return 0; }

#else /* FN_POOL */

/* ---- operating-system primitives ----------------------------------------- */

static int fn_env_threads(void) {
    /* OMP_NUM_THREADS: its first value ("4" or "4,2"), if a positive count */
    const char *s = getenv("OMP_NUM_THREADS");
    if (!s) return 0;
    while (*s == ' ' || *s == '\t') s++;
    long v = 0;
    int digits = 0;
    for (; *s >= '0' && *s <= '9' && digits < 9; s++, digits++) v = v * 10 + (*s - '0');
    while (*s == ' ' || *s == '\t') s++;
    if (!digits || (*s != '\0' && *s != ',') || v < 1) return 0;
    return (int)v;
}

static inline void fn_os_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

static inline void fn_os_yield(void) { sched_yield(); }

static int64_t fn_os_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fn_os_sleep_us(int us) {
    struct timespec ts = {0, (long)us * 1000};
    nanosleep(&ts, NULL);
}

static int fn_os_usable_cpus(void) {
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    /* the process's affinity (its main thread's), not that of whichever
     * thread asks first: a thread pinned to one core must not size the pool */
    if (sched_getaffinity(getpid(), sizeof(set), &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n >= 1) return n;
    }
#endif
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 ? (n > 1 << 20 ? 1 << 20 : (int)n) : 1;
}

/* The threads runnable now over the whole system (on Linux, the running
 * count of /proc/loadavg, its fourth field's number before the '/', which
 * includes the caller and a worker still spinning after a call), or -1 where
 * that cannot be read. Parsed by hand: no stdio buffer, and no dependence on
 * the locale's decimal point (the load averages before it). */
static long fn_os_runnable(void) {
#if defined(__linux__)
    const int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[128];
    const ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0) return -1;
    buf[got] = '\0';
    const char *q = buf;
    for (int field = 0; field < 3; field++) { /* past the three load averages */
        while (*q && *q != ' ') q++;
        while (*q == ' ') q++;
    }
    long running = 0;
    int digits = 0;
    for (; *q >= '0' && *q <= '9' && digits < 9; q++, digits++) running = running * 10 + (*q - '0');
    return digits && *q == '/' ? running : -1;
#else
    return -1;
#endif
}

/* Waits while *word == expected (it may return early: callers loop), and
 * wakes up to n waiters of word. The futex wait returns at once when the
 * word has changed; the condition-variable version checks the word under its
 * mutex, and the waker takes the mutex after changing the word, so no wake
 * is lost either way. */
#ifdef FN_FUTEX
static void fn_os_wait(uint32_t *word, uint32_t expected) {
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}
static void fn_os_wake(uint32_t *word, int n) {
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}
#else
static pthread_mutex_t fn_os_wait_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t fn_os_wait_cond = PTHREAD_COND_INITIALIZER;
static void fn_os_wait(uint32_t *word, uint32_t expected) {
    pthread_mutex_lock(&fn_os_wait_mutex);
    if (__atomic_load_n(word, __ATOMIC_SEQ_CST) == expected)
        pthread_cond_wait(&fn_os_wait_cond, &fn_os_wait_mutex);
    pthread_mutex_unlock(&fn_os_wait_mutex);
}
static void fn_os_wake(uint32_t *word, int n) {
    (void)word, (void)n;
    pthread_mutex_lock(&fn_os_wait_mutex);
    pthread_cond_broadcast(&fn_os_wait_cond);
    pthread_mutex_unlock(&fn_os_wait_mutex);
}
#endif

/* Starts a detached thread running fn(arg), with every signal blocked (they
 * go to the process's own threads); 0 on success. */
static int fn_os_thread_start(void *(*fn)(void *), void *arg) {
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return -1;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t tid;
    const int rc = pthread_create(&tid, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return rc;
}

typedef pthread_mutex_t fn_os_mutex;
#define FN_OS_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
#define fn_os_lock pthread_mutex_lock
#define fn_os_unlock pthread_mutex_unlock

static pthread_once_t fn_os_once_atfork = PTHREAD_ONCE_INIT;
static void fn_pool_atfork_child(void);
static void fn_os_atfork_register(void) { pthread_atfork(NULL, NULL, fn_pool_atfork_child); }
/* Registers fn_pool_atfork_child for the children of fork() (once). */
static void fn_os_on_fork_child(void) { pthread_once(&fn_os_once_atfork, fn_os_atfork_register); }

/* ---- the pool -------------------------------------------------------------
 *
 * The current call lives in one 64-bit word, so that a worker joins it and
 * claims its chunks with compare-and-swaps that fail once the call is over:
 *   bits  0-11  chunks of the call
 *   bits 12-23  chunks claimed so far
 *   bits 24-31  tickets: workers that may still join (the call's nt - 1)
 *   bits 32-63  the call's number
 * The call's body, context and item count are written before the word is
 * published and read by a worker only after it has claimed a chunk: the
 * caller does not return, and so does not publish another call, before
 * that chunk is done. */
#define FN_ST_CHUNKS(s) ((uint32_t)((s) & 0xfff))
#define FN_ST_NEXT(s) ((uint32_t)(((s) >> 12) & 0xfff))
#define FN_ST_TICKETS(s) ((uint32_t)(((s) >> 24) & 0xff))
#define FN_ST_CALL(s) ((uint32_t)((s) >> 32))
#define FN_ST_ONE_NEXT ((uint64_t)1 << 12)
#define FN_ST_ONE_TICKET ((uint64_t)1 << 24)
#define FN_MAX_CHUNKS 4095

/* The words that threads poll or update during a call sit on cache lines of
 * their own, so that a spinning worker's reads do not slow the others'
 * updates. */
#if defined(__GNUC__) || defined(__clang__)
#define FN_LINE __attribute__((aligned(64)))
#else
#define FN_LINE
#endif

typedef struct {
    FN_LINE uint64_t state; /* the word above */
    FN_LINE uint32_t done;  /* workers' chunks of the current call finished (a futex word) */
    uint32_t waiting;   /* 1 while the caller may sleep on done */
    FN_LINE uint32_t seq; /* bumped to wake sleeping workers (a futex word) */
    uint32_t sleepers;  /* workers asleep or about to sleep on seq */
    uint32_t busy;      /* 1 while a call owns the pool */
    int32_t spin_us; /* workers' spin budget, microseconds */
    int64_t quiet_until; /* fn_os_now_ns() until which the pool keeps quiet */
    int32_t quiet_ms;    /* how long it keeps quiet, milliseconds (0: never) */
    int32_t stalls;      /* stalled calls in a row (written by the pool's owner) */
    int32_t shuffle;
    /* the current call, written by its caller before the state */
    FN_LINE fn_range_body body;
    void *ctx;
    int64_t count;
    int32_t shuffled;                  /* this call claims in the order below */
    uint16_t order[FN_MAX_CHUNKS + 1]; /* claim k runs chunk order[k] */
    /* workers */
    fn_os_mutex start_lock;
    int32_t workers;   /* started */
    int32_t start_failed;
    uint32_t call_number;
} fn_pool_t;

static fn_pool_t fn_pool = {
    .spin_us = FN_POOL_SPIN_US, .quiet_ms = FN_POOL_QUIET_MS, .start_lock = FN_OS_MUTEX_INIT};

static int32_t fn_pool_limit = 0;          /* fn_pool_set_limit; 0: none */
static int32_t fn_pool_cpus = 0;           /* fn_pool_usable_cpus, once known */
static volatile int fn_pool_forked = 0;    /* serial after fork */

#define FN_LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define FN_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define FN_ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define FN_CAS(p, expected, desired)                                                       \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_SEQ_CST,             \
                                __ATOMIC_SEQ_CST)

static fn_team_runner fn_pool_team_run = NULL; /* fn_pool_set_team */
static int32_t fn_pool_team_ran = 0;           /* a call has run on a team */

/* A child forked after threads ran calls, or while a team is set, runs its
 * calls on the caller: those threads are not in it. */
static void fn_pool_atfork_child(void) {
    if (fn_pool.workers > 0 || fn_pool_team_run || fn_pool_team_ran) fn_pool_forked = 1;
}

int fn_pool_built(void) { return 1; }

int fn_pool_usable_cpus(void) {
    int n = FN_LOAD(&fn_pool_cpus);
    if (n <= 0) {
        n = fn_os_usable_cpus();
        FN_STORE(&fn_pool_cpus, n);
    }
    return n;
}

/* Whether the CPUs are oversubscribed now: more threads runnable than CPUs
 * this process may use (fn_os_runnable; 1 where it cannot tell). The count
 * is system-wide: a process confined to a few CPUs of a busy host (taskset,
 * a container's cpuset) sees the whole host's runnable threads and so is
 * oversubscribed more often than its own CPUs are, and a CPU quota's
 * throttling does not count at all. */
int fn_pool_oversubscribed(void) {
    const long running = fn_os_runnable();
    return running < 0 || running > fn_pool_usable_cpus();
}

int fn_pool_default_threads(void) {
    const int limit = FN_LOAD(&fn_pool_limit);
    if (limit > 0) return limit;
    const int env = fn_env_threads();
    return env > 0 ? env : fn_pool_usable_cpus();
}

void fn_pool_set_limit(int n) { FN_STORE(&fn_pool_limit, n > 0 ? n : 0); }

int fn_pool_serial_after_fork(void) { return fn_pool_forked; }

int fn_pool_spin_us(int us) {
    if (us >= 0) FN_STORE(&fn_pool.spin_us, us > 1000000 ? 1000000 : us);
    return FN_LOAD(&fn_pool.spin_us);
}

long fn_pool_runnable(void) { return fn_os_runnable(); }

int fn_pool_quiet_ms(int ms) {
    if (ms >= 0) {
        FN_STORE(&fn_pool.quiet_ms, ms > 60000 ? 60000 : ms);
        FN_STORE(&fn_pool.quiet_until, (int64_t)0);
    }
    return FN_LOAD(&fn_pool.quiet_ms);
}

int fn_pool_shuffle(int on) {
    if (on >= 0) FN_STORE(&fn_pool.shuffle, on ? 1 : 0);
    return FN_LOAD(&fn_pool.shuffle);
}

int fn_pool_workers(void) { return FN_LOAD(&fn_pool.workers); }

/* A small per-thread random stream for the shuffled order (tests only). */
static uint32_t fn_pool_random(uint64_t *r) {
    *r = *r * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*r >> 33);
}

/* The chunk bounds: chunk c of n over count items. */
static inline void fn_pool_chunk(int64_t count, uint32_t n, uint32_t c, int64_t *begin,
                                 int64_t *end) {
    *begin = count * (int64_t)c / n;
    *end = count * (int64_t)(c + 1) / n;
}

/* Claims and runs chunks of call `call` until none is left. Returns the
 * number of chunks run. The caller times its chunks: *quickest and *slowest
 * (nanoseconds) when not NULL; workers count theirs in done. */
static int fn_pool_work(fn_pool_t *p, uint32_t call, uint64_t *rnd, int64_t *quickest,
                        int64_t *slowest) {
    int ran = 0;
    for (;;) {
        if (rnd && FN_LOAD(&p->shuffle)) fn_os_sleep_us((int)(fn_pool_random(rnd) % 50));
        uint64_t s = FN_LOAD(&p->state);
        if (FN_ST_CALL(s) != call || FN_ST_NEXT(s) >= FN_ST_CHUNKS(s)) return ran;
        if (!FN_CAS(&p->state, &s, s + FN_ST_ONE_NEXT)) continue;
        /* the chunk is ours, and the call's fields are stable until it is done */
        const uint32_t n = FN_ST_CHUNKS(s), k = FN_ST_NEXT(s);
        const uint32_t c = p->shuffled ? p->order[k] : k;
        int64_t begin, end;
        fn_pool_chunk(p->count, n, c, &begin, &end);
        const int64_t t0 = quickest ? fn_os_now_ns() : 0;
        if (begin < end) p->body(p->ctx, begin, end);
        if (quickest) {
            const int64_t t = fn_os_now_ns() - t0;
            if (t < *quickest) *quickest = t;
            if (t > *slowest) *slowest = t;
        }
        ran++;
        if (!quickest) { /* a worker's chunk: the caller may be waiting for it */
            FN_ADD(&p->done, 1);
            if (FN_LOAD(&p->waiting)) fn_os_wake(&p->done, 1);
        }
    }
}

static inline int fn_pool_joinable(uint64_t s) {
    return FN_ST_TICKETS(s) > 0 && FN_ST_NEXT(s) < FN_ST_CHUNKS(s);
}

static void *fn_pool_worker(void *arg) {
    fn_pool_t *p = &fn_pool;
    uint64_t rnd = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    int64_t spin_from = fn_os_now_ns();
    for (;;) {
        uint64_t s = FN_LOAD(&p->state);
        if (fn_pool_joinable(s)) {
            if (FN_CAS(&p->state, &s, s - FN_ST_ONE_TICKET)) {
                fn_pool_work(p, FN_ST_CALL(s), &rnd, NULL, NULL);
                spin_from = fn_os_now_ns();
            }
            continue;
        }
        int spun = 0;
        const int64_t budget =
            spin_from >= FN_LOAD(&p->quiet_until) ? (int64_t)FN_LOAD(&p->spin_us) * 1000 : 0;
        while (!fn_pool_joinable(FN_LOAD(&p->state))) {
            fn_os_relax();
            if (++spun % 64 == 0) {
                if (fn_os_now_ns() - spin_from >= budget) break;
                /* every few microseconds, let a thread waiting for this CPU
                 * run: a caller this worker's wake-up pushed aside, above all */
                if (spun % 256 == 0) fn_os_yield();
            }
        }
        if (fn_pool_joinable(FN_LOAD(&p->state))) continue;
        /* sleep until a caller bumps seq: sleepers is counted before the last
         * look at the state, and the caller reads it after publishing */
        const uint32_t seq = FN_LOAD(&p->seq);
        FN_ADD(&p->sleepers, 1);
        if (!fn_pool_joinable(FN_LOAD(&p->state))) fn_os_wait(&p->seq, seq);
        FN_ADD(&p->sleepers, (uint32_t)-1);
        spin_from = fn_os_now_ns();
    }
    return NULL;
}

/* Starts workers until there are `want` (or one fails to start: then the
 * pool keeps the ones it has and stops trying). Returns the workers. */
static int fn_pool_grow(fn_pool_t *p, int want) {
    int have = FN_LOAD(&p->workers);
    if (have >= want || FN_LOAD(&p->start_failed)) return have;
    fn_os_lock(&p->start_lock);
    fn_os_on_fork_child(); /* before the first thread */
    have = FN_LOAD(&p->workers);
    while (have < want && !p->start_failed) {
        if (fn_os_thread_start(fn_pool_worker, (void *)(uintptr_t)(have + 1)) != 0) {
            FN_STORE(&p->start_failed, 1);
            break;
        }
        FN_STORE(&p->workers, ++have);
    }
    fn_os_unlock(&p->start_lock);
    return have;
}

/* ---- a host's team ------------------------------------------------------- */

void fn_pool_set_team(fn_team_runner run) {
    if (run) fn_os_on_fork_child(); /* see fn_pool_atfork_child */
    FN_STORE(&fn_pool_team_run, run);
}

fn_team_runner fn_pool_team(void) { return FN_LOAD(&fn_pool_team_run); }

/* One call on the team: its threads claim the chunks from `next`. */
typedef struct {
    fn_range_body body;
    void *ctx;
    int64_t count;
    uint32_t chunks;
    FN_LINE uint32_t next;
} fn_team_call;

static void fn_team_work(void *data) {
    fn_team_call *t = (fn_team_call *)data;
    for (;;) {
        const uint32_t c = __atomic_fetch_add(&t->next, 1, __ATOMIC_SEQ_CST);
        if (c >= t->chunks) return;
        int64_t begin, end;
        fn_pool_chunk(t->count, t->chunks, c, &begin, &end);
        if (begin < end) t->body(t->ctx, begin, end);
    }
}

/* The chunks of a call of count items on nt threads: FN_CHUNKS_PER_THREAD per
 * thread, at most one per item and FN_MAX_CHUNKS. */
static uint32_t fn_pool_chunks(int nt, int64_t count) {
    int64_t chunks = (int64_t)FN_CHUNKS_PER_THREAD * nt;
    if (chunks > count) chunks = count;
    if (chunks > FN_MAX_CHUNKS) chunks = FN_MAX_CHUNKS;
    return (uint32_t)chunks;
}

void fn_pool_run(int nt, int64_t count, fn_range_body body, void *ctx) {
    fn_pool_t *p = &fn_pool;
    if (nt <= 1 || count <= 1 || fn_pool_forked) {
        body(ctx, 0, count);
        return;
    }
    const fn_team_runner team = fn_pool_team();
    if (team) {
        if (nt > FN_POOL_MAX_THREADS) nt = FN_POOL_MAX_THREADS;
        fn_team_call t = {body, ctx, count, fn_pool_chunks(nt, count), 0};
        if (!FN_LOAD(&fn_pool_team_ran)) FN_STORE(&fn_pool_team_ran, 1);
        team(fn_team_work, &t, (unsigned)nt, 0);
        return;
    }
    uint32_t idle = 0;
    const int quiet = fn_os_now_ns() < FN_LOAD(&p->quiet_until) && !FN_LOAD(&p->shuffle);
    if (quiet || !FN_CAS(&p->busy, &idle, 1)) {
        /* the pool keeps quiet (oversubscribed CPUs), or another call has it */
        body(ctx, 0, count);
        return;
    }
    const int cpus = fn_pool_usable_cpus();
    if (nt > cpus) nt = cpus;
    if (nt > FN_POOL_MAX_THREADS) nt = FN_POOL_MAX_THREADS;
    int helpers = fn_pool_grow(p, nt - 1);
    if (helpers > nt - 1) helpers = nt - 1;
    if (helpers < 1) {
        FN_STORE(&p->busy, 0);
        body(ctx, 0, count);
        return;
    }
    const uint32_t n = fn_pool_chunks(nt, count);

    p->body = body;
    p->ctx = ctx;
    p->count = count;
    p->shuffled = FN_LOAD(&p->shuffle);
    if (p->shuffled) { /* a random permutation of the chunks */
        uint64_t rnd = (uint64_t)fn_os_now_ns();
        for (uint32_t k = 0; k < n; k++) p->order[k] = (uint16_t)k;
        for (uint32_t k = n - 1; k > 0; k--) {
            const uint32_t j = fn_pool_random(&rnd) % (k + 1);
            const uint16_t t = p->order[k];
            p->order[k] = p->order[j];
            p->order[j] = t;
        }
    }
    FN_STORE(&p->done, 0);
    FN_STORE(&p->waiting, 0);
    const uint32_t call = ++p->call_number;
    FN_STORE(&p->state, ((uint64_t)call << 32) | ((uint64_t)helpers << 24) | n);
    const uint32_t sleepers = FN_LOAD(&p->sleepers);
    if (sleepers > 0) {
        FN_ADD(&p->seq, 1);
        fn_os_wake(&p->seq, (int)sleepers < helpers ? (int)sleepers : helpers);
    }

    int64_t quickest = INT64_MAX, slowest = 0; /* the caller's chunks, ns */
    const uint32_t theirs = n - (uint32_t)fn_pool_work(p, call, NULL, &quickest, &slowest);
    const int64_t exhausted = fn_os_now_ns();

    /* every chunk is claimed: wait for the ones workers are running */
    int64_t spin_from = 0;
    int spun = 0;
    for (;;) {
        const uint32_t d = FN_LOAD(&p->done);
        if (d >= theirs) break;
        if (spin_from == 0) spin_from = fn_os_now_ns();
        if (++spun % 64 != 0 || fn_os_now_ns() - spin_from < FN_POOL_WAIT_SPIN_US * 1000) {
            fn_os_relax();
            continue;
        }
        FN_STORE(&p->waiting, 1);
        if (FN_LOAD(&p->done) == d) fn_os_wait(&p->done, d);
    }
    /* a stall: the pool keeps quiet for a while (FN_POOL_STALL_US); the
     * pool stays busy meanwhile, so a call from another thread during the
     * read of the runnable count runs alone */
    const int64_t waited = fn_os_now_ns() - exhausted;
    if (quickest == INT64_MAX) quickest = 0;
    const int64_t excess = (waited > slowest ? waited : slowest) - quickest;
    if (excess > (int64_t)FN_POOL_STALL_US * 1000 && excess > 2 * quickest &&
        fn_pool_oversubscribed()) {
        /* stalls in a row (each the first call after a quiet period) double
         * the period, up to 16 times: long calls test the load less often */
        const int64_t ms = (int64_t)FN_LOAD(&p->quiet_ms) << p->stalls;
        if (p->stalls < 4) p->stalls++;
        FN_STORE(&p->quiet_until, fn_os_now_ns() + ms * 1000000);
    } else {
        p->stalls = 0;
    }
    FN_STORE(&p->busy, 0);
}

#endif /* FN_POOL */
