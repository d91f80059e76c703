/* eddy-rdma's shim when libfabric's headers were not found at build time.
 *
 * A build machine without Debian's libfabric-dev still builds Eddy (the
 * README's first command works on a fresh machine); RDMA is then
 * unavailable. eddy_fab_load fails with the reason, the Rust layer refuses
 * every Fabric::open with it, and so none of the other functions is ever
 * reached; they exist to satisfy the linker and fail if called. The
 * signatures match shim/eddy_fabric.c's with opaque pointers.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#define NONE (-ENOSYS)

int eddy_fab_load(char *err, size_t len)
{
	if (len)
		snprintf(err, len, "this build of Eddy has no RDMA: libfabric's headers "
			 "were missing when it was compiled (install libfabric-dev and "
			 "build again)");
	return -1;
}

const char *eddy_fi_strerror(int err)
{
	return strerror(err < 0 ? -err : err);
}

int eddy_fab_open(const char *prov, const char *node, void **out, int *step)
{
	(void)prov, (void)node, (void)step;
	*out = NULL;
	return NONE;
}

int eddy_fab_close_ep(void *f) { (void)f; return NONE; }
void eddy_fab_close(void *f) { (void)f; }
void eddy_fab_attr(const void *f, void *a) { (void)f, (void)a; }
int eddy_fab_getname(void *f, void *buf, size_t *len) { (void)f, (void)buf, (void)len; return NONE; }
int eddy_fab_av_insert(void *f, const void *addr, uint64_t *out)
{
	(void)f, (void)addr, (void)out;
	return NONE;
}

int eddy_fab_mr_reg(void *f, const void *buf, size_t len, uint64_t access, uint64_t key,
		    void **mr, uint64_t *key_out, void **desc)
{
	(void)f, (void)buf, (void)len, (void)access, (void)key, (void)mr, (void)key_out;
	(void)desc;
	return NONE;
}

int eddy_mr_close(void *mr) { (void)mr; return NONE; }

ssize_t eddy_fab_read(void *f, void *buf, size_t len, void *desc, uint64_t peer,
		      uint64_t addr, uint64_t key, void *ctx)
{
	(void)f, (void)buf, (void)len, (void)desc, (void)peer, (void)addr, (void)key, (void)ctx;
	return NONE;
}

ssize_t eddy_fab_cq_read(void *f, void **ctx, size_t max)
{
	(void)f, (void)ctx, (void)max;
	return NONE;
}

int eddy_fab_cq_readerr(void *f, void **ctx, int *err, char *text, size_t text_len)
{
	(void)f, (void)ctx, (void)err, (void)text, (void)text_len;
	return NONE;
}

void eddy_fi_consts(void *c) { (void)c; }
