/*
 * Plain exported functions over libfabric's data-path calls.
 *
 * fi_read, fi_mr_reg, fi_cq_read and most of libfabric's API are static
 * inline functions that jump through a provider's ops table, so Rust cannot
 * bind them directly. Each function here is one such call (or the fixed
 * setup sequence of one endpoint), returning libfabric's negative error
 * codes unchanged. Memory safety and locking are the Rust layer's job
 * (src/sys.rs, src/fabric.rs); this file keeps no state besides the handles
 * and the loaded library.
 *
 * libfabric is loaded at first use (dlopen), not linked: Debian's build
 * pulls in providers whose libraries (libinfinipath, via psm) install
 * signal handlers from their constructors, SIGTERM's and SIGSEGV's
 * among them. Linked, they would run in every process using Eddy's client
 * (a JVM, whose own SIGSEGV handling they would replace) whether or not it
 * ever uses RDMA. Loaded here, only a process that opens a fabric loads
 * them, and the signal dispositions from before the load are put back.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define EDDY_FI_VERSION FI_VERSION(1, 17)

/* The five functions libfabric exports that this file calls (everything
 * else goes through the handles' ops tables). */
static struct {
	struct fi_info *(*dupinfo)(const struct fi_info *);
	int (*fabric)(struct fi_fabric_attr *, struct fid_fabric **, void *);
	void (*freeinfo)(struct fi_info *);
	int (*getinfo)(uint32_t, const char *, const char *, uint64_t,
		       const struct fi_info *, struct fi_info **);
	const char *(*strerror)(int);
} lf;
static pthread_once_t lf_once = PTHREAD_ONCE_INIT;
static int lf_loaded;
static char lf_error[512];

static void lf_load(void)
{
	static struct sigaction saved[NSIG];
	static int have[NSIG];
	const char *name;
	void *h;
	int s;

	for (s = 1; s < NSIG; s++)
		have[s] = sigaction(s, NULL, &saved[s]) == 0;
	name = getenv("EDDY_LIBFABRIC");
	if (!name || !*name)
		name = "libfabric.so.1";
	h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	for (s = 1; s < NSIG; s++)
		if (have[s] && s != SIGKILL && s != SIGSTOP)
			sigaction(s, &saved[s], NULL);
	if (!h) {
		const char *e = dlerror();
		snprintf(lf_error, sizeof(lf_error), "%s", e ? e : name);
		return;
	}
	*(void **)&lf.dupinfo = dlsym(h, "fi_dupinfo");
	*(void **)&lf.fabric = dlsym(h, "fi_fabric");
	*(void **)&lf.freeinfo = dlsym(h, "fi_freeinfo");
	*(void **)&lf.getinfo = dlsym(h, "fi_getinfo");
	*(void **)&lf.strerror = dlsym(h, "fi_strerror");
	if (!lf.dupinfo || !lf.fabric || !lf.freeinfo || !lf.getinfo || !lf.strerror) {
		snprintf(lf_error, sizeof(lf_error), "%s lacks fi_getinfo & co.", name);
		return;
	}
	lf_loaded = 1;
}

/* Loads libfabric once per process; 0, or -1 with why in `err`. */
int eddy_fab_load(char *err, size_t len)
{
	pthread_once(&lf_once, lf_load);
	if (lf_loaded)
		return 0;
	if (len)
		snprintf(err, len, "%s", lf_error);
	return -1;
}

struct eddy_fab {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
};

/* What the provider granted, for the Rust side to honour. */
struct eddy_fab_attr {
	uint64_t mr_mode;
	uint64_t max_msg_size;
	uint64_t mr_key_size;
	uint64_t tx_size;
	int manual_progress;
	char provider[64];
};

/* The values Rust hard-codes, from the installed headers (checked by a test). */
struct eddy_fi_consts {
	uint64_t mr_local, mr_virt_addr, mr_allocated, mr_prov_key, mr_endpoint;
	uint64_t rma, read, remote_read, transmit, recv;
	int64_t eagain, eavail, ecanceled, eaccess, einval, enodata, etoosmall;
	uint32_t version;
	int64_t enomem, efault, eperm;
};

void eddy_fi_consts(struct eddy_fi_consts *c)
{
	c->mr_local = FI_MR_LOCAL;
	c->mr_virt_addr = FI_MR_VIRT_ADDR;
	c->mr_allocated = FI_MR_ALLOCATED;
	c->mr_prov_key = FI_MR_PROV_KEY;
	c->mr_endpoint = FI_MR_ENDPOINT;
	c->rma = FI_RMA;
	c->read = FI_READ;
	c->remote_read = FI_REMOTE_READ;
	c->transmit = FI_TRANSMIT;
	c->recv = FI_RECV;
	c->eagain = FI_EAGAIN;
	c->eavail = FI_EAVAIL;
	c->ecanceled = FI_ECANCELED;
	c->eaccess = FI_EACCES;
	c->einval = FI_EINVAL;
	c->enodata = FI_ENODATA;
	c->etoosmall = FI_ETOOSMALL;
	c->version = EDDY_FI_VERSION;
	c->enomem = FI_ENOMEM;
	c->efault = FI_EFAULT;
	c->eperm = FI_EPERM;
}

const char *eddy_fi_strerror(int err)
{
	if (!lf_loaded)
		return strerror(err < 0 ? -err : err);
	return lf.strerror(err < 0 ? -err : err);
}

/* Closes the endpoint alone: after it no operation can still write into a
 * local buffer, so the Rust side may then free buffers of abandoned reads. */
int eddy_fab_close_ep(struct eddy_fab *f)
{
	int rc = 0;
	if (f->ep)
		rc = fi_close(&f->ep->fid);
	if (rc == 0)
		f->ep = NULL;
	return rc;
}

void eddy_fab_close(struct eddy_fab *f)
{
	if (!f)
		return;
	/* Children before parents: libfabric refuses to close a busy parent. */
	if (f->ep)
		fi_close(&f->ep->fid);
	if (f->av)
		fi_close(&f->av->fid);
	if (f->cq)
		fi_close(&f->cq->fid);
	if (f->domain)
		fi_close(&f->domain->fid);
	if (f->fabric)
		fi_close(&f->fabric->fid);
	if (f->info)
		lf.freeinfo(f->info);
	free(f);
}

/* fi_getinfo for an RDM endpoint with one-sided reads. Every memory
 * registration mode Eddy can honour is offered; the provider answers with
 * the subset it needs. `node` (may be NULL) is a local address to bind. */
static int eddy_getinfo(const char *prov, const char *node, struct fi_info **out)
{
	struct fi_info *hints = lf.dupinfo(NULL);
	int ret;

	if (!hints)
		return -FI_ENOMEM;
	hints->caps = FI_RMA | FI_READ | FI_REMOTE_READ;
	hints->ep_attr->type = FI_EP_RDM;
	hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_PROV_KEY |
				      FI_MR_ALLOCATED | FI_MR_ENDPOINT;
	/* The Rust layer serialises every call on a fabric with one lock. */
	hints->domain_attr->threading = FI_THREAD_DOMAIN;
	hints->fabric_attr->prov_name = strdup(prov);
	ret = lf.getinfo(EDDY_FI_VERSION, node, NULL, node ? FI_SOURCE : 0, hints, out);
	lf.freeinfo(hints);
	return ret;
}

/* Steps of eddy_fab_open, by number, so an error can name the call. */
enum { STEP_GETINFO = 1, STEP_FABRIC, STEP_DOMAIN, STEP_CQ, STEP_AV, STEP_EP, STEP_BIND, STEP_ENABLE };

int eddy_fab_open(const char *prov, const char *node, struct eddy_fab **out, int *step)
{
	struct eddy_fab *f = calloc(1, sizeof(*f));
	struct fi_cq_attr cq_attr = { .format = FI_CQ_FORMAT_CONTEXT };
	struct fi_av_attr av_attr = { .type = FI_AV_UNSPEC };
	int ret;

	*out = NULL;
	if (!f)
		return -FI_ENOMEM;
	*step = STEP_GETINFO;
	ret = eddy_getinfo(prov, node, &f->info);
	if (ret)
		goto fail;
	*step = STEP_FABRIC;
	ret = lf.fabric(f->info->fabric_attr, &f->fabric, NULL);
	if (ret)
		goto fail;
	*step = STEP_DOMAIN;
	ret = fi_domain(f->fabric, f->info, &f->domain, NULL);
	if (ret)
		goto fail;
	*step = STEP_CQ;
	ret = fi_cq_open(f->domain, &cq_attr, &f->cq, NULL);
	if (ret)
		goto fail;
	*step = STEP_AV;
	ret = fi_av_open(f->domain, &av_attr, &f->av, NULL);
	if (ret)
		goto fail;
	*step = STEP_EP;
	ret = fi_endpoint(f->domain, f->info, &f->ep, NULL);
	if (ret)
		goto fail;
	*step = STEP_BIND;
	ret = fi_ep_bind(f->ep, &f->av->fid, 0);
	if (!ret)
		ret = fi_ep_bind(f->ep, &f->cq->fid, FI_TRANSMIT | FI_RECV);
	if (ret)
		goto fail;
	*step = STEP_ENABLE;
	ret = fi_enable(f->ep);
	if (ret)
		goto fail;
	*out = f;
	return 0;
fail:
	eddy_fab_close(f);
	return ret ? ret : -FI_ENODATA;
}

void eddy_fab_attr(const struct eddy_fab *f, struct eddy_fab_attr *a)
{
	const struct fi_info *i = f->info;

	a->mr_mode = (uint64_t)i->domain_attr->mr_mode;
	a->max_msg_size = i->ep_attr->max_msg_size;
	a->mr_key_size = i->domain_attr->mr_key_size;
	a->tx_size = i->tx_attr->size;
	a->manual_progress = i->domain_attr->data_progress == FI_PROGRESS_MANUAL;
	snprintf(a->provider, sizeof(a->provider), "%s", i->fabric_attr->prov_name);
}

/* The endpoint's address, for the peer's eddy_fab_av_insert. On entry *len is
 * the buffer's size; on return the address's (also on -FI_ETOOSMALL). */
int eddy_fab_getname(struct eddy_fab *f, void *buf, size_t *len)
{
	return fi_getname(&f->ep->fid, buf, len);
}

/* Returns 0 with *out set, or a negative error. */
int eddy_fab_av_insert(struct eddy_fab *f, const void *addr, uint64_t *out)
{
	fi_addr_t a = FI_ADDR_NOTAVAIL;
	int n = fi_av_insert(f->av, addr, 1, &a, 0, NULL);

	if (n < 0)
		return n;
	if (n != 1 || a == FI_ADDR_NOTAVAIL)
		return -FI_EADDRNOTAVAIL;
	*out = a;
	return 0;
}

/* Registers [buf, buf+len) for `access`. `requested_key` is used unless the
 * provider picks keys (FI_MR_PROV_KEY). Where the provider asks for
 * FI_MR_ENDPOINT the region is bound to the endpoint and enabled. */
int eddy_fab_mr_reg(struct eddy_fab *f, const void *buf, size_t len, uint64_t access,
		    uint64_t requested_key, struct fid_mr **mr, uint64_t *key, void **desc)
{
	int ret = fi_mr_reg(f->domain, buf, len, access, 0, requested_key, 0, mr, NULL);

	if (ret)
		return ret;
	if (f->info->domain_attr->mr_mode & FI_MR_ENDPOINT) {
		ret = fi_mr_bind(*mr, &f->ep->fid, 0);
		if (!ret)
			ret = fi_mr_enable(*mr);
		if (ret) {
			fi_close(&(*mr)->fid);
			*mr = NULL;
			return ret;
		}
	}
	*key = fi_mr_key(*mr);
	*desc = fi_mr_desc(*mr);
	if (*key == FI_KEY_NOTAVAIL) {
		fi_close(&(*mr)->fid);
		*mr = NULL;
		return -FI_ENOKEY;
	}
	return 0;
}

int eddy_mr_close(struct fid_mr *mr)
{
	return fi_close(&mr->fid);
}

/* Posts one read of `len` bytes from the peer's `addr` (an offset or a
 * virtual address, per FI_MR_VIRT_ADDR) under `key` into `buf`. */
ssize_t eddy_fab_read(struct eddy_fab *f, void *buf, size_t len, void *desc, uint64_t peer,
		      uint64_t addr, uint64_t key, void *context)
{
	return fi_read(f->ep, buf, len, desc, peer, addr, key, context);
}

/* Polls the completion queue: up to `max` operation contexts into `ctx`.
 * Returns the count, -FI_EAGAIN if none, -FI_EAVAIL if an error entry waits.
 * Polling is also what drives a manual-progress provider. */
ssize_t eddy_fab_cq_read(struct eddy_fab *f, void **ctx, size_t max)
{
	struct fi_cq_entry e[16];
	ssize_t n;

	if (max > 16)
		max = 16;
	n = fi_cq_read(f->cq, e, max);
	for (ssize_t i = 0; i < n; i++)
		ctx[i] = e[i].op_context;
	return n;
}

/* Takes one error entry: its context, errno (positive) and the provider's
 * own description in `text`. */
int eddy_fab_cq_readerr(struct eddy_fab *f, void **ctx, int *err, char *text, size_t text_len)
{
	struct fi_cq_err_entry e;
	const char *s;
	ssize_t n;

	memset(&e, 0, sizeof(e));
	n = fi_cq_readerr(f->cq, &e, 0);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return -FI_EAGAIN;
	*ctx = e.op_context;
	*err = e.err;
	s = fi_cq_strerror(f->cq, e.prov_errno, e.err_data, text, text_len);
	if (s && s != text)
		snprintf(text, text_len, "%s", s);
	return 0;
}
