/* The C ABI end to end against a running cluster (started by the Rust test
 * harness, cli/tests/c_abi.rs, which passes the master address as argv[1]).
 * Exit status 0 means every check passed; a failure prints what and where. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eddy.h"

static int failures = 0;
#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,        \
              __LINE__, #cond, eddy_last_error_message());                           \
      failures++;                                                                    \
    }                                                                                \
  } while (0)
#define OK(call) CHECK((call) == EDDY_OK)

#define BS (1u << 20)
#define SIZE (3u * BS + 777u)

static unsigned char byte_at(uint64_t i) { return (unsigned char)((i * 131u + 7u) % 251u); }

struct pread_job {
  eddy_file_t *file;
  unsigned seed;
  int ok;
};

static void *pread_worker(void *arg) {
  struct pread_job *job = arg;
  unsigned char buf[70000];
  job->ok = 1;
  for (int i = 0; i < 50; i++) {
    uint64_t off = (uint64_t)rand_r(&job->seed) % SIZE;
    size_t want = 1 + (size_t)rand_r(&job->seed) % sizeof buf;
    size_t got = 0;
    if (eddy_pread(job->file, buf, want, off, &got) != EDDY_OK) job->ok = 0;
    size_t expect = want < SIZE - off ? want : (size_t)(SIZE - off);
    if (got != expect) job->ok = 0;
    for (size_t k = 0; k < got; k++)
      if (buf[k] != byte_at(off + k)) { job->ok = 0; break; }
  }
  return NULL;
}

static int count_entry(void *ctx, const char *name, const eddy_status_t *st) {
  (void)name;
  if (!st->is_dir) (*(int *)ctx)++;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s MASTER\n", argv[0]); return 2; }
  CHECK(strcmp(eddy_version(), "0.1.0") == 0);
  CHECK(EDDY_VERSION_MAJOR == 0 && EDDY_VERSION_MINOR == 1);

  const char *keys[] = {"short_circuit"}, *values[] = {"true"};
  eddy_client_t *c = NULL;
  OK(eddy_connect(argv[1], keys, values, 1, &c));
  if (!c) return 1;

  /* Write, then read back and compare. */
  unsigned char *data = malloc(SIZE);
  for (uint64_t i = 0; i < SIZE; i++) data[i] = byte_at(i);
  OK(eddy_mkdir(c, "/c/dir", 1));
  eddy_file_t *w = NULL;
  OK(eddy_create(c, "/c/dir/data.bin", EDDY_WRITE_CACHE_THROUGH, BS, &w));
  for (uint64_t off = 0; off < SIZE; off += 100000) {
    size_t n = SIZE - off < 100000 ? (size_t)(SIZE - off) : 100000;
    OK(eddy_write(w, data + off, n));
  }
  uint64_t len = 0;
  OK(eddy_file_length(w, &len));
  CHECK(len == SIZE);
  OK(eddy_close(w));

  eddy_status_t st;
  OK(eddy_stat(c, "/c/dir/data.bin", &st));
  CHECK(st.length == SIZE && st.complete == 1 && st.persisted == 1 && st.is_dir == 0);
  CHECK(st.block_size == BS);

  eddy_file_t *r = NULL;
  OK(eddy_open(c, "/c/dir/data.bin", EDDY_READ_CACHE, &r));
  unsigned char *back = malloc(SIZE);
  size_t total = 0, got = 0;
  do {
    OK(eddy_read(r, back + total, 65536, &got));
    total += got;
  } while (got > 0 && total < SIZE);
  OK(eddy_read(r, back, 16, &got));
  CHECK(got == 0); /* end of file */
  CHECK(total == SIZE && memcmp(back, data, SIZE) == 0);

  /* pread from 8 threads on one handle. */
  pthread_t th[8];
  struct pread_job jobs[8];
  for (int i = 0; i < 8; i++) {
    jobs[i] = (struct pread_job){r, (unsigned)(i + 1), 0};
    pthread_create(&th[i], NULL, pread_worker, &jobs[i]);
  }
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    CHECK(jobs[i].ok);
  }

  /* A zero-copy view of a co-located block, valid after the file closes. */
  eddy_view_t *v = NULL;
  const uint8_t *p = NULL;
  OK(eddy_map(r, BS + 10, 1000, &v, &p));
  CHECK(p != NULL && memcmp(p, data + BS + 10, 1000) == 0);
  CHECK(eddy_map(r, BS - 10, 20, &v, &p) == EDDY_ERR_INVALID_ARGUMENT); /* crosses a block */
  CHECK(eddy_map(r, SIZE - 5, 10, &v, &p) == EDDY_ERR_INVALID_ARGUMENT); /* past the end */
  OK(eddy_close(r));
  CHECK(memcmp(p, data + BS + 10, 1000) == 0);
  OK(eddy_view_release(v));
  CHECK(eddy_view_release(v) == EDDY_ERR_BAD_HANDLE);

  /* Listing and the namespace calls. */
  int files = 0;
  OK(eddy_list(c, "/c/dir", count_entry, &files));
  CHECK(files == 1);
  OK(eddy_rename(c, "/c/dir/data.bin", "/c/dir/moved.bin"));
  OK(eddy_pin(c, "/c/dir/moved.bin", 1));
  OK(eddy_stat(c, "/c/dir/moved.bin", &st));
  CHECK(st.pinned == 1);
  OK(eddy_pin(c, "/c/dir/moved.bin", 0));
  OK(eddy_free(c, "/c/dir/moved.bin"));
  OK(eddy_load(c, "/c/dir/moved.bin"));
  OK(eddy_stat(c, "/c/dir/moved.bin", &st));
  CHECK(st.percent_cached == 100);

  /* Error paths: each an error code, never a crash. */
  CHECK(eddy_stat(c, "/nope", &st) == EDDY_ERR_NOT_FOUND);
  CHECK(strstr(eddy_last_error_message(), "/nope") != NULL);
  CHECK(eddy_stat(c, "relative", &st) == EDDY_ERR_INVALID_PATH);
  CHECK(eddy_stat(c, NULL, &st) == EDDY_ERR_INVALID_ARGUMENT);
  CHECK(eddy_stat(c, "/c", NULL) == EDDY_ERR_INVALID_ARGUMENT);
  CHECK(eddy_stat(NULL, "/c", &st) == EDDY_ERR_BAD_HANDLE);
  CHECK(eddy_stat((eddy_client_t *)0x1234, "/c", &st) == EDDY_ERR_BAD_HANDLE);
  CHECK(eddy_delete(c, "/c", 0) == EDDY_ERR_DIRECTORY_NOT_EMPTY);
  CHECK(eddy_create(c, "/c/dir/moved.bin", 0, 0, &w) == EDDY_ERR_ALREADY_EXISTS);
  CHECK(eddy_create(c, "/c/x", 99, 0, &w) == EDDY_ERR_INVALID_ARGUMENT);
  CHECK(eddy_open(c, "/c/dir", EDDY_READ_CACHE, &r) == EDDY_ERR_IS_A_DIRECTORY);
  CHECK(eddy_open(c, "/c/dir/moved.bin", 42, &r) == EDDY_ERR_INVALID_ARGUMENT);
  OK(eddy_open(c, "/c/dir/moved.bin", EDDY_READ_NO_CACHE, &r));
  CHECK(eddy_pread(r, NULL, 10, 0, &got) == EDDY_ERR_INVALID_ARGUMENT);
  OK(eddy_pread(r, back, 10, SIZE + 100, &got));
  CHECK(got == 0); /* past the end: nothing, like pread(2) */
  CHECK(eddy_write(r, data, 10) == EDDY_ERR_INVALID_ARGUMENT); /* a reader */
  OK(eddy_close(r));
  CHECK(eddy_pread(r, back, 10, 0, &got) == EDDY_ERR_BAD_HANDLE); /* use after close */
  CHECK(eddy_close(r) == EDDY_ERR_BAD_HANDLE);
  const char *bad_keys[] = {"colour"}, *bad_values[] = {"blue"};
  eddy_client_t *c2 = NULL;
  CHECK(eddy_connect(argv[1], bad_keys, bad_values, 1, &c2) == EDDY_ERR_INVALID_ARGUMENT);
  CHECK(eddy_connect("127.0.0.1:1", NULL, NULL, 0, &c2) == EDDY_ERR_UNAVAILABLE);
  CHECK(c2 == NULL);

  OK(eddy_delete(c, "/c", 1));
  OK(eddy_disconnect(c));
  CHECK(eddy_disconnect(c) == EDDY_ERR_BAD_HANDLE);
  free(data);
  free(back);
  if (failures) { fprintf(stderr, "%d checks failed\n", failures); return 1; }
  printf("all C ABI checks passed\n");
  return 0;
}
