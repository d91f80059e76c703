/* Against a master that accepts connections but never answers (argv[1]),
 * every call returns EDDY_ERR_DEADLINE_EXCEEDED within the timeout given
 * to eddy_connect: nothing blocks forever (include/eddy.h). */
#include <stdio.h>
#include <time.h>

#include "eddy.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: deadline HOST:PORT\n");
        return 2;
    }
    const char *keys[] = {"timeout_ms"};
    const char *values[] = {"300"};
    double start = now();
    eddy_client_t *c = NULL;
    int rc = eddy_connect(argv[1], keys, values, 1, &c);
    if (rc == EDDY_OK) {
        eddy_status_t st;
        rc = eddy_stat(c, "/", &st);
        eddy_disconnect(c);
    }
    double took = now() - start;
    if (rc != EDDY_ERR_DEADLINE_EXCEEDED) {
        fprintf(stderr, "expected EDDY_ERR_DEADLINE_EXCEEDED, got %d: %s\n", rc,
                eddy_last_error_message());
        return 1;
    }
    if (took > 5.0) {
        fprintf(stderr, "took %.1f s for a 0.3 s timeout\n", took);
        return 1;
    }
    const char *bad_keys[] = {"timeout_ms"};
    const char *bad_values[] = {"soon"};
    if (eddy_connect(argv[1], bad_keys, bad_values, 1, &c) != EDDY_ERR_INVALID_ARGUMENT) {
        fprintf(stderr, "timeout_ms=soon was not refused\n");
        return 1;
    }
    printf("deadline after %.2f s: %s\n", took, eddy_last_error_message());
    return 0;
}
