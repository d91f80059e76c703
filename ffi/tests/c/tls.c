/* TLS through eddy_connect's "tls_ca" / "tls_cert" / "tls_key" options
 * (include/eddy.h): a plaintext client against a TLS master and a client
 * trusting another CA fail with EDDY_ERR_UNAVAILABLE and a message naming
 * what to set; bad option values are EDDY_ERR_INVALID_ARGUMENT; with the
 * right CA, bytes written and read over TCP (not short-circuit) match.
 * argv: a TLS master with a worker, the CA that signed its certificate,
 * another CA. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "%s: %d: %s\n", what, rc, eddy_last_error_message());
    return 1;
}

static int says(const char *what) {
    return strstr(eddy_last_error_message(), what) != NULL;
}

enum { LEN = 3 * 1048576 + 5 };

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: tls HOST:PORT CA.pem OTHER-CA.pem\n");
        return 2;
    }
    const char *master = argv[1], *ca = argv[2], *other = argv[3];
    eddy_client_t *c = NULL;
    eddy_status_t st;

    /* Plaintext: HTTP/2 dials lazily, so the first call fails. */
    int rc = eddy_connect(master, NULL, NULL, 0, &c);
    if (rc == EDDY_OK) {
        rc = eddy_stat(c, "/", &st);
        eddy_disconnect(c);
        c = NULL;
    }
    if (rc != EDDY_ERR_UNAVAILABLE || !says("serves TLS") || !says("tls_ca"))
        return fail("plaintext against a TLS master", rc);

    const char *k1[] = {"tls_ca"};
    const char *wrong[] = {other};
    rc = eddy_connect(master, k1, wrong, 1, &c);
    if (rc == EDDY_OK) {
        rc = eddy_stat(c, "/", &st);
        eddy_disconnect(c);
        c = NULL;
    }
    if (rc != EDDY_ERR_UNAVAILABLE || !says("certificate verification failed"))
        return fail("a client trusting another CA", rc);

    const char *missing[] = {"/nonexistent/ca.pem"};
    rc = eddy_connect(master, k1, missing, 1, &c);
    if (rc != EDDY_ERR_INVALID_ARGUMENT || !says("/nonexistent/ca.pem"))
        return fail("a CA file that is not there", rc);
    const char *k2[] = {"tls_cert"};
    const char *cert_only[] = {ca};
    rc = eddy_connect(master, k2, cert_only, 1, &c);
    if (rc != EDDY_ERR_INVALID_ARGUMENT || !says("tls_ca"))
        return fail("tls_cert without tls_ca", rc);

    const char *keys[] = {"tls_ca", "short_circuit"};
    const char *values[] = {ca, "false"};
    rc = eddy_connect(master, keys, values, 2, &c);
    if (rc != EDDY_OK) return fail("connect with tls_ca", rc);
    unsigned char *data = malloc(LEN), *back = malloc(LEN);
    if (!data || !back) return 3;
    for (size_t i = 0; i < LEN; i++) data[i] = (unsigned char)(i * 131 + (i >> 20));
    eddy_file_t *f = NULL;
    if ((rc = eddy_create(c, "/tls.bin", EDDY_WRITE_MUST_CACHE, 1048576, &f)) != EDDY_OK)
        return fail("create", rc);
    if ((rc = eddy_write(f, data, LEN)) != EDDY_OK) return fail("write", rc);
    if ((rc = eddy_close(f)) != EDDY_OK) return fail("close", rc);
    if ((rc = eddy_open(c, "/tls.bin", EDDY_READ_CACHE, &f)) != EDDY_OK) return fail("open", rc);
    size_t got = 0;
    while (got < LEN) {
        size_t n = 0;
        if ((rc = eddy_read(f, back + got, LEN - got, &n)) != EDDY_OK) return fail("read", rc);
        if (n == 0) break;
        got += n;
    }
    eddy_close(f);
    if (got != LEN || memcmp(data, back, LEN) != 0) {
        fprintf(stderr, "read back %zu bytes that differ from the %d written\n", got, LEN);
        return 1;
    }
    free(data);
    free(back);
    eddy_disconnect(c);
    printf("tls ok\n");
    return 0;
}
