/* Zero-copy scan of a cached file through the C ABI vs the same scan of an
 * in-process buffer. Run by bench/benches/c_scan.rs: argv[1] master, argv[2]
 * size in bytes. Prints one line per measure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eddy.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static uint64_t sum(const uint8_t *p, size_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, w[4];
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    memcpy(w, p + i, 32);
    a0 += w[0]; a1 += w[1]; a2 += w[2]; a3 += w[3];
  }
  for (; i < n; i++) a0 += p[i];
  return a0 + a1 + a2 + a3;
}

#define DIE(what) do { fprintf(stderr, "%s: %s\n", what, eddy_last_error_message()); return 1; } while (0)

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  uint64_t size = strtoull(argv[2], NULL, 10);
  uint8_t *local = malloc(size);
  for (uint64_t i = 0; i < size; i++) local[i] = (uint8_t)(i * 31 % 251);

  eddy_client_t *c;
  if (eddy_connect(argv[1], NULL, NULL, 0, &c)) DIE("connect");
  eddy_file_t *f;
  if (eddy_create(c, "/scan.bin", EDDY_WRITE_MUST_CACHE, 0, &f)) DIE("create");
  for (uint64_t off = 0; off < size; off += 8u << 20) {
    uint64_t n = size - off < (8u << 20) ? size - off : (8u << 20);
    if (eddy_write(f, local + off, n)) DIE("write");
  }
  if (eddy_close(f)) DIE("close");

  eddy_status_t st;
  if (eddy_stat(c, "/scan.bin", &st)) DIE("stat");
  if (eddy_open(c, "/scan.bin", EDDY_READ_CACHE, &f)) DIE("open");
  size_t nblocks = (size_t)((size + st.block_size - 1) / st.block_size);
  eddy_view_t **views = calloc(nblocks, sizeof *views);
  const uint8_t **ptrs = calloc(nblocks, sizeof *ptrs);
  uint64_t *lens = calloc(nblocks, sizeof *lens);
  for (size_t b = 0; b < nblocks; b++) {
    uint64_t off = b * st.block_size;
    lens[b] = size - off < st.block_size ? size - off : st.block_size;
    if (eddy_map(f, off, lens[b], &views[b], &ptrs[b])) DIE("map");
  }
  uint64_t expect = sum(local, size);
  double best_eddy = 1e9, best_local = 1e9;
  for (int run = 0; run < 4; run++) { /* run 0 faults the mappings in */
    double t = now();
    uint64_t s = 0;
    for (size_t b = 0; b < nblocks; b++) s += sum(ptrs[b], lens[b]);
    double e = now() - t;
    if (s != expect) { fprintf(stderr, "sum differs\n"); return 1; }
    if (run > 0 && e < best_eddy) best_eddy = e;
    t = now();
    s = sum(local, size);
    double l = now() - t;
    if (s != expect) return 1;
    if (run > 0 && l < best_local) best_local = l;
  }
  printf("eddy_gbps %.2f\nlocal_gbps %.2f\nratio %.2f\n", size / best_eddy / 1e9, size / best_local / 1e9,
         best_local / best_eddy);
  for (size_t b = 0; b < nblocks; b++) eddy_view_release(views[b]);
  eddy_close(f);
  eddy_delete(c, "/scan.bin", 0);
  eddy_disconnect(c);
  return 0;
}
