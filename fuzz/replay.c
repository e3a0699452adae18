/* Runs the fuzz harness over files, without libFuzzer: `fuzz-replay FILE|DIR...`. ctest replays
 * the committed corpus with it, so every input the fuzzer ever kept (and every crash it found,
 * once fixed) stays a regression test in `make test`. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
void fuzz_chan_print_stats(FILE* out);

static int run_file(const char* path) {
  FILE* f = fopen(path, "rb");
  unsigned char* buf;
  long n;
  if (f == NULL) {
    perror(path);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  buf = malloc(n > 0 ? (size_t)n : 1);
  if (buf == NULL || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
    fprintf(stderr, "%s: cannot read\n", path);
    fclose(f);
    free(buf);
    return 1;
  }
  fclose(f);
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  free(buf);
  return 0;
}

int main(int argc, char** argv) {
  int files = 0, bad = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    DIR* d;
    struct dirent* e;
    char path[4096];
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      bad |= run_file(argv[i]);
      files++;
      continue;
    }
    d = opendir(argv[i]);
    if (d == NULL) {
      perror(argv[i]);
      return 1;
    }
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] == '.')
        continue;
      snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
      bad |= run_file(path);
      files++;
    }
    closedir(d);
  }
  printf("fuzz-replay: %d input%s clean\n", files, files == 1 ? "" : "s");
  if (getenv("FUZZ_CHAN_STATS") != NULL) /* what the inputs exercised */
    fuzz_chan_print_stats(stdout);
  return bad;
}
