/* Eight threads make their first fastnorm calls at the same moment: the
 * kernel selection, its composed tables and the streaming threshold are set
 * up by whichever thread comes first, and every thread must see them whole.
 * Built with -fsanitize=thread by tests/test_c_api.py, which fails on any
 * report. Prints "ok isa N" and exits 0 when every thread got the same
 * target and the same bits. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "fastnorm.h"
#define NT 8
static pthread_barrier_t go;
static float x[4 * 64], y[NT][4 * 64];
static int isa[NT];
static void *run(void *arg) {
    const int t = (int)(long)arg;
    pthread_barrier_wait(&go);
    isa[t] = fastnorm_get_isa();
    if (fastnorm_layer_norm_f32(4, 64, x, 64, y[t], 64, NULL, NULL, 1e-5, NULL, NULL, 1) != 0)
        return (void *)1;
    return NULL;
}
int main(void) {
    pthread_t th[NT];
    for (int i = 0; i < 4 * 64; i++) x[i] = (float)((i * 37) % 11) - 5.0f;
    pthread_barrier_init(&go, NULL, NT);
    for (long t = 0; t < NT; t++) pthread_create(&th[t], NULL, run, (void *)t);
    int bad = 0;
    for (int t = 0; t < NT; t++) { void *r; pthread_join(th[t], &r); bad |= r != NULL; }
    for (int t = 1; t < NT; t++) bad |= isa[t] != isa[0] || memcmp(y[t], y[0], sizeof y[0]) != 0;
    printf("%s isa %d\n", bad ? "MISMATCH" : "ok", isa[0]);
    return bad;
}
