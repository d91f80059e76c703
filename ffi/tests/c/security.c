/* Identity and permissions through the C ABI (include/eddy.h, options
 * "token" and "umask" of eddy_connect). argv[1] is a master with
 * authentication "token"; argv[2] a credential of a user who is not the
 * superuser (so "/" is not theirs to write). */
#include <stdio.h>

#include "eddy.h"

static int fail(const char *what, int rc) {
    fprintf(stderr, "%s: %d: %s\n", what, rc, eddy_last_error_message());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: security HOST:PORT TOKEN\n");
        return 2;
    }
    /* No credential: the master refuses every call, saying what to set. */
    eddy_client_t *anon = NULL;
    int rc = eddy_connect(argv[1], NULL, NULL, 0, &anon);
    if (rc != EDDY_OK) return fail("connect without a token", rc);
    rc = eddy_mkdir(anon, "/anon", 0);
    if (rc != EDDY_ERR_UNAUTHENTICATED) return fail("mkdir without a token", rc);
    eddy_disconnect(anon);

    /* A user's credential: authenticated, but "/" is the superuser's. */
    const char *keys[] = {"token", "umask"};
    const char *values[] = {argv[2], "077"};
    eddy_client_t *user = NULL;
    rc = eddy_connect(argv[1], keys, values, 2, &user);
    if (rc != EDDY_OK) return fail("connect with a token", rc);
    rc = eddy_mkdir(user, "/mine", 0);
    if (rc != EDDY_ERR_PERMISSION_DENIED) return fail("mkdir in the superuser's /", rc);
    eddy_disconnect(user);

    const char *bad_keys[] = {"umask"};
    const char *bad_values[] = {"999"};
    eddy_client_t *bad = NULL;
    rc = eddy_connect(argv[1], bad_keys, bad_values, 1, &bad);
    if (rc != EDDY_ERR_INVALID_ARGUMENT) return fail("umask=999 was not refused", rc);
    printf("security ok\n");
    return 0;
}
