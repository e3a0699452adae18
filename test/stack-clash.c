/* Part of test-stack: a frame far larger than the guard region below a task's stack, in code built
 * with -fstack-clash-protection (see test/CMakeLists.txt). The compiler probes every page of the
 * frame as it grows it, so the first probe below the stack lands in the guard region, however
 * deep the frame reaches. Without the flag, a frame like this writing only its lowest byte would
 * step over the guard into the stack below. */
#include <stddef.h>

void stack_clash_big_frame(void (*escape)(char*));

void stack_clash_big_frame(void (*escape)(char*)) {
  char buf[200 * 1024];
  buf[0] = 1; /* the lowest byte only */
  escape(buf);
}
