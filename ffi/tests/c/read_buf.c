/* Library-owned read buffers (include/eddy.h: eddy_buf_new, eddy_pread_buf,
 * eddy_buf_data, eddy_buf_free): positioned reads into a reused buffer
 * return the bytes written at every offset, fewer at the end of the file,
 * none past it; bad arguments and handles get their codes. argv[1] is a
 * master with a worker; the connect option "transport" comes from argv[2]
 * (the test runs it with "rdma" against a worker serving remote leases,
 * and checks the worker's lease count); argv[3] is the file to write. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "eddy.h"

#define BS (1u << 20)
#define LEN (3u * BS + 123u)

static int fail(const char *what, int rc) {
    fprintf(stderr, "%s: %d: %s\n", what, rc, eddy_last_error_message());
    return 1;
}

static uint8_t byte_at(uint64_t i) { return (uint8_t)((i * 2654435761u) >> 13); }

static uint8_t data[LEN];

/* Reads at `off` into `b` and checks the bytes and count against `data`. */
static int check_read(eddy_file_t *f, eddy_buf_t *b, uint64_t off) {
    size_t n = 0, cap = 0;
    uint8_t *p = NULL;
    int rc = eddy_pread_buf(f, b, off, &n);
    if (rc != EDDY_OK) return fail("eddy_pread_buf", rc);
    if ((rc = eddy_buf_data(b, &p, &cap)) != EDDY_OK) return fail("eddy_buf_data", rc);
    size_t want = off >= LEN ? 0 : (LEN - off < cap ? (size_t)(LEN - off) : cap);
    if (n != want) {
        fprintf(stderr, "read at %llu: %zu bytes, want %zu\n", (unsigned long long)off, n, want);
        return 1;
    }
    if (n > 0 && memcmp(p, data + off, n) != 0) {
        fprintf(stderr, "read at %llu: wrong bytes\n", (unsigned long long)off);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: read_buf HOST:PORT TRANSPORT PATH\n");
        return 2;
    }
    const char *keys[] = {"transport"};
    const char *values[] = {argv[2]};
    eddy_client_t *c = NULL;
    int rc = eddy_connect(argv[1], keys, values, 1, &c);
    if (rc != EDDY_OK) return fail("connect", rc);
    for (uint64_t i = 0; i < LEN; i++) data[i] = byte_at(i);

    eddy_file_t *w = NULL;
    if ((rc = eddy_create(c, argv[3], EDDY_WRITE_MUST_CACHE, BS, &w)) != EDDY_OK)
        return fail("create", rc);
    if ((rc = eddy_write(w, data, LEN)) != EDDY_OK) return fail("write", rc);

    eddy_buf_t *b = NULL;
    /* A writer is not read into. */
    if ((rc = eddy_buf_new(BS + 7, &b)) != EDDY_OK) return fail("eddy_buf_new", rc);
    size_t n = 0;
    rc = eddy_pread_buf(w, b, 0, &n);
    if (rc != EDDY_ERR_INVALID_ARGUMENT) return fail("pread_buf of a writer", rc);
    if ((rc = eddy_close(w)) != EDDY_OK) return fail("close writer", rc);

    eddy_file_t *f = NULL;
    if ((rc = eddy_open(c, argv[3], EDDY_READ_CACHE, &f)) != EDDY_OK) return fail("open", rc);
    /* Whole blocks, across a block boundary, twice (the second time into
     * memory already registered), the tail and past the end. */
    const uint64_t offs[] = {0, BS, BS - 5, 2 * BS + 99, 0, BS - 5, LEN - 10, LEN, LEN + 4096};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++)
        if (check_read(f, b, offs[i]) != 0) return 1;

    /* One buffer larger than the file. */
    eddy_buf_t *big = NULL;
    if ((rc = eddy_buf_new(LEN + BS, &big)) != EDDY_OK) return fail("eddy_buf_new big", rc);
    if (check_read(f, big, 0) != 0) return 1;
    if ((rc = eddy_buf_free(big)) != EDDY_OK) return fail("free big", rc);

    /* Bad arguments and handles. */
    eddy_buf_t *none = NULL;
    if ((rc = eddy_buf_new(0, &none)) != EDDY_ERR_INVALID_ARGUMENT) return fail("buf_new(0)", rc);
    rc = eddy_buf_new((size_t)EDDY_BUF_MAX + 1, &none);
    if (rc != EDDY_ERR_INVALID_ARGUMENT) return fail("buf_new(EDDY_BUF_MAX + 1)", rc);
    if (none != NULL) return fail("out written on failure", 0);
    if ((rc = eddy_buf_new(16, NULL)) != EDDY_ERR_INVALID_ARGUMENT) return fail("buf_new NULL out", rc);
    if ((rc = eddy_pread_buf(f, b, 0, NULL)) != EDDY_ERR_INVALID_ARGUMENT)
        return fail("pread_buf NULL nread", rc);
    if ((rc = eddy_pread_buf(f, NULL, 0, &n)) != EDDY_ERR_BAD_HANDLE) return fail("pread_buf NULL buf", rc);
    if ((rc = eddy_pread_buf(NULL, b, 0, &n)) != EDDY_ERR_BAD_HANDLE) return fail("pread_buf NULL file", rc);
    uint8_t *p = NULL;
    if ((rc = eddy_buf_data(b, &p, NULL)) != EDDY_ERR_INVALID_ARGUMENT) return fail("buf_data NULL cap", rc);
    if ((rc = eddy_buf_free(b)) != EDDY_OK) return fail("free", rc);
    if ((rc = eddy_buf_free(b)) != EDDY_ERR_BAD_HANDLE) return fail("double free", rc);
    if ((rc = eddy_pread_buf(f, b, 0, &n)) != EDDY_ERR_BAD_HANDLE) return fail("pread_buf freed", rc);
    size_t cap = 0;
    if ((rc = eddy_buf_data(b, &p, &cap)) != EDDY_ERR_BAD_HANDLE) return fail("buf_data freed", rc);

    if ((rc = eddy_close(f)) != EDDY_OK) return fail("close", rc);
    if ((rc = eddy_disconnect(c)) != EDDY_OK) return fail("disconnect", rc);
    printf("read_buf: ok\n");
    return 0;
}
