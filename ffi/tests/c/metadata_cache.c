/* The metadata bound of eddy_connect (include/eddy.h, "metadata_cache_ms"):
 * with 0 a client sees another client's delete at once; a client sees its
 * own rename at once with the default; a bad value is refused. argv[1] is a
 * master with a worker. */
#include <stdio.h>
#include <string.h>

#include "eddy.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "%s: %d: %s\n", what, rc, eddy_last_error_message());
    return 1;
}

static int put(eddy_client_t *c, const char *path) {
    eddy_file_t *f = NULL;
    int rc = eddy_create(c, path, EDDY_WRITE_MUST_CACHE, 0, &f);
    if (rc != EDDY_OK) return rc;
    rc = eddy_write(f, "hello", 5);
    int rc2 = eddy_close(f);
    return rc != EDDY_OK ? rc : rc2;
}

/* Opens and reads `path` whole; EDDY_OK if it has the 5 bytes written. */
static int read_back(eddy_client_t *c, const char *path) {
    eddy_file_t *f = NULL;
    int rc = eddy_open(c, path, EDDY_READ_CACHE, &f);
    if (rc != EDDY_OK) return rc;
    char buf[16];
    size_t n = 0;
    rc = eddy_read(f, buf, sizeof buf, &n);
    eddy_close(f);
    if (rc == EDDY_OK && (n != 5 || memcmp(buf, "hello", 5) != 0)) return -1000;
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: metadata_cache HOST:PORT\n");
        return 2;
    }
    eddy_client_t *writer = NULL, *reader = NULL;
    int rc = eddy_connect(argv[1], NULL, NULL, 0, &writer);
    if (rc != EDDY_OK) return fail("connect writer", rc);
    const char *keys[] = {"short_circuit", "metadata_cache_ms"};
    const char *values[] = {"false", "0"};
    rc = eddy_connect(argv[1], keys, values, 2, &reader);
    if (rc != EDDY_OK) return fail("connect reader", rc);

    if ((rc = put(writer, "/mc")) != EDDY_OK) return fail("create /mc", rc);
    if ((rc = read_back(reader, "/mc")) != EDDY_OK) return fail("read /mc", rc);
    if ((rc = eddy_delete(writer, "/mc", 0)) != EDDY_OK) return fail("delete /mc", rc);
    rc = read_back(reader, "/mc");
    if (rc != EDDY_ERR_NOT_FOUND) return fail("read of /mc deleted by another client", rc);

    /* The writer's own rename, with its default cache: seen at once. */
    if ((rc = put(writer, "/own")) != EDDY_OK) return fail("create /own", rc);
    if ((rc = read_back(writer, "/own")) != EDDY_OK) return fail("read /own", rc);
    if ((rc = eddy_rename(writer, "/own", "/moved")) != EDDY_OK) return fail("rename", rc);
    rc = read_back(writer, "/own");
    if (rc != EDDY_ERR_NOT_FOUND) return fail("read of /own after its rename", rc);
    if ((rc = read_back(writer, "/moved")) != EDDY_OK) return fail("read /moved", rc);

    const char *bad_keys[] = {"metadata_cache_ms"};
    const char *bad_values[] = {"-1"};
    eddy_client_t *bad = NULL;
    rc = eddy_connect(argv[1], bad_keys, bad_values, 1, &bad);
    if (rc != EDDY_ERR_INVALID_ARGUMENT) return fail("metadata_cache_ms=-1 was not refused", rc);

    eddy_disconnect(reader);
    eddy_disconnect(writer);
    printf("metadata cache bound ok\n");
    return 0;
}
