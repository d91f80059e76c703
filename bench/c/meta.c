/* Small-file metadata through the C ABI (issue 18, part 0): create+close,
 * stat and delete of empty files, with one thread and with many sharing one
 * client. Run by bench/benches/c_meta.rs: argv[1] master, argv[2] files per
 * phase, argv[3] threads. Prints, per phase, "<phase>_ops_per_s", the
 * client process's CPU per operation "<phase>_cpu_us" (user + system of
 * this process: the C ABI, the Rust client and its runtime), and with one
 * thread the median latency "<phase>_p50_us". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "eddy.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 +
         (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

enum phase { CREATE, STAT, DELETE };
static const char *NAMES[] = {"create", "stat", "delete"};

struct job {
  eddy_client_t *c;
  int thread;
  long files;
  enum phase phase;
  double *lat; /* per operation, seconds; NULL: not kept */
  int failed;
};

static int one(struct job *j, const char *path) {
  switch (j->phase) {
  case CREATE: {
    eddy_file_t *f;
    if (eddy_create(j->c, path, EDDY_WRITE_MUST_CACHE, 0, &f)) return 1;
    return eddy_close(f) != 0;
  }
  case STAT: {
    eddy_status_t st;
    return eddy_stat(j->c, path, &st) != 0;
  }
  case DELETE:
    return eddy_delete(j->c, path, 0) != 0;
  }
  return 1;
}

static void *run(void *arg) {
  struct job *j = arg;
  char path[64];
  for (long i = 0; i < j->files; i++) {
    snprintf(path, sizeof path, "/meta/t%d-%ld", j->thread, i);
    double t = now();
    if (one(j, path)) {
      fprintf(stderr, "%s %s: %s\n", NAMES[j->phase], path, eddy_last_error_message());
      j->failed = 1;
      return NULL;
    }
    if (j->lat) j->lat[i] = now() - t;
  }
  return NULL;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  long files = strtol(argv[2], NULL, 10);
  int threads = atoi(argv[3]);
  if (files < threads || threads < 1 || threads > 256) return 2;
  eddy_client_t *c;
  if (eddy_connect(argv[1], NULL, NULL, 0, &c)) {
    fprintf(stderr, "connect: %s\n", eddy_last_error_message());
    return 1;
  }
  if (eddy_mkdir(c, "/meta", 1)) {
    fprintf(stderr, "mkdir: %s\n", eddy_last_error_message());
    return 1;
  }
  long per = files / threads;
  double *lat = threads == 1 ? calloc((size_t)per, sizeof(double)) : NULL;
  struct job jobs[256];
  pthread_t tid[256];
  for (int p = CREATE; p <= DELETE; p++) {
    double cpu0 = cpu_seconds(), t0 = now();
    for (int t = 0; t < threads; t++) {
      jobs[t] = (struct job){c, t, per, (enum phase)p, lat, 0};
      pthread_create(&tid[t], NULL, run, &jobs[t]);
    }
    int failed = 0;
    for (int t = 0; t < threads; t++) {
      pthread_join(tid[t], NULL);
      failed |= jobs[t].failed;
    }
    if (failed) return 1;
    double wall = now() - t0, cpu = cpu_seconds() - cpu0;
    double ops = (double)(per * threads);
    printf("%s_ops_per_s %.0f\n", NAMES[p], ops / wall);
    printf("%s_cpu_us %.1f\n", NAMES[p], cpu / ops * 1e6);
    if (lat) {
      qsort(lat, (size_t)per, sizeof(double), cmp);
      printf("%s_p50_us %.1f\n", NAMES[p], lat[per / 2] * 1e6);
    }
  }
  free(lat);
  eddy_delete(c, "/meta", 1);
  eddy_disconnect(c);
  return 0;
}
