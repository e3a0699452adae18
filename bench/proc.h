/* What the load generators read of a server process from /proc (Linux). */
#ifndef UVCHAN_BENCH_PROC_H
#define UVCHAN_BENCH_PROC_H

#include <stdio.h>

/* The resident set of process `pid` in kB (VmRSS), or -1 when it cannot be read. */
static inline long bench_rss_kb(long pid) {
  char path[64], line[256];
  long kb = -1;
  FILE* f;
  snprintf(path, sizeof(path), "/proc/%ld/status", pid);
  if ((f = fopen(path, "r")) == NULL)
    return -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

#endif
