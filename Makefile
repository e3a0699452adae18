# The README's two commands, `make demo` and `make test`, plus the longer runs. Everything is
# built under build/ (build-sanitize/ for the instrumented build).
BUILD      ?= build
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
FUZZ_SECONDS ?= 60
# The instrumented build: clang, whose UBSan also catches arithmetic on null pointers (gcc's
# does not), with AddressSanitizer.
SANITIZE_CONFIGURE = cmake -S . -B build-sanitize -DCMAKE_C_COMPILER=clang -DUVCHAN_SANITIZE=ON \
  -DCMAKE_BUILD_TYPE=Debug -DUVCHAN_BUILD_BENCH=OFF
# ThreadSanitizer: the thread tests (test/test-thread*.c), the owner-thread test and the threads
# stress, in their own build.
TSAN_CONFIGURE = cmake -S . -B build-tsan -DCMAKE_C_COMPILER=clang -DUVCHAN_TSAN=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUVCHAN_BUILD_BENCH=OFF -DUVCHAN_BUILD_EXAMPLES=OFF
TSAN_TESTS = $(basename $(notdir $(wildcard test/test-thread*.c))) test-owner
STRESS_ARGS  ?=
CMAKE_ARGS ?=

.PHONY: all deps build demo test test-sanitize test-tsan test-valgrind test-aarch64 bench fuzz stress install docs clean

all: build

deps:
	@sh cmake/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	@for d in hello handshake worker backpressure seed_tasks "sieve 20" deadlock; do \
	  echo; echo "==== build/examples/$$d"; ./$(BUILD)/examples/$$d || exit 1; \
	done

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-sanitize: deps
	@sh cmake/install-deps.sh clang
	$(SANITIZE_CONFIGURE)
	cmake --build build-sanitize -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir build-sanitize --output-on-failure -j $(JOBS)

test-tsan: deps
	@sh cmake/install-deps.sh clang
	$(TSAN_CONFIGURE)
	cmake --build build-tsan -j $(JOBS) --target $(TSAN_TESTS) uvchan-stress-thread
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --test-dir build-tsan --output-on-failure -j $(JOBS) \
	  -R '^($(subst $(eval) ,|,$(strip $(TSAN_TESTS)))|stress-thread-smoke)$$'

# Its own build, configured after valgrind (and so its header) is installed: task stacks are then
# registered with valgrind, which a build made without the header cannot do. Runs every ctest
# program but the consumer builds (label "consumer": compilers, not uvchan code): the suites, the
# fuzz corpus replay, the stress smoke and the switch check.
VALGRIND = valgrind --error-exitcode=1 --leak-check=full \
  --errors-for-leak-kinds=all -q
test-valgrind: deps
	@sh cmake/install-deps.sh valgrind
	cmake -S . -B build-valgrind -DUVCHAN_BUILD_BENCH=OFF -DUVCHAN_BUILD_EXAMPLES=OFF
	cmake --build build-valgrind -j $(JOBS)
	@cd build-valgrind && ctest -N -V -LE consumer | sed -n 's/^[0-9]*: Test command: //p' | tr -d '"' | \
	while read -r cmd; do \
	  log=$$(basename $$(echo "$$cmd" | cut -d' ' -f1)).valgrind.log; \
	  $(VALGRIND) $$cmd > $$log 2>&1 || { cat $$log; echo "valgrind: $$cmd FAILED"; exit 1; }; \
	  echo "valgrind: $$cmd clean"; \
	done

# The aarch64 context switch, cross-built and run under qemu-user (test/fiber-check.c).
test-aarch64:
	@sh cmake/install-deps.sh aarch64
	@mkdir -p $(BUILD)
	aarch64-linux-gnu-gcc -std=c11 -O2 -Wall -Wextra -Wpedantic -D_GNU_SOURCE -Isrc -static \
	  test/fiber-check.c src/fiber.c -o $(BUILD)/fiber-check-aarch64 -lm
	qemu-aarch64 $(BUILD)/fiber-check-aarch64

bench: build
	@sh cmake/install-deps.sh go
	@sh bench/run.sh $(BUILD)
	@sh bench/echo-idle.sh $(BUILD)

# libFuzzer against the reference model in fuzz/fuzz-chan.c, for FUZZ_SECONDS (default 60), from
# the committed corpus; new inputs go to fuzz/corpus-work/, a crash to fuzz/crash-*. Exits 0 when
# clean.
fuzz: deps
	@sh cmake/install-deps.sh clang fuzz
	cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DUVCHAN_BUILD_FUZZ=ON -DUVCHAN_SANITIZE=ON \
	  -DUVCHAN_BUILD_TESTS=OFF -DUVCHAN_BUILD_EXAMPLES=OFF -DUVCHAN_BUILD_BENCH=OFF
	cmake --build build-fuzz -j $(JOBS) --target fuzz-chan
	@mkdir -p fuzz/corpus-work
	build-fuzz/fuzz/fuzz-chan -max_total_time=$(FUZZ_SECONDS) -max_len=2048 -print_final_stats=1 \
	  -artifact_prefix=fuzz/ fuzz/corpus-work fuzz/corpus

# The randomized runs of test/stress.c at full size, 20 rounds with their own seeds, plain and
# (5 rounds) under ASan+UBSan. STRESS_ARGS="-s SEED -r 1" replays a round. Then the threads
# stress (test/stress-thread.c): 10 rounds plain, 2 under ASan+UBSan, 2 under ThreadSanitizer
# (STRESS_THREAD_ARGS likewise).
STRESS_THREAD_ARGS ?=
stress: build
	./$(BUILD)/test/uvchan-stress -r 20 $(STRESS_ARGS)
	./$(BUILD)/test/uvchan-stress-thread -r 10 $(STRESS_THREAD_ARGS)
	@sh cmake/install-deps.sh clang
	$(SANITIZE_CONFIGURE)
	cmake --build build-sanitize -j $(JOBS) --target uvchan-stress uvchan-stress-thread
	ASAN_OPTIONS=detect_leaks=1 ./build-sanitize/test/uvchan-stress -r 5 $(STRESS_ARGS)
	ASAN_OPTIONS=detect_leaks=1 ./build-sanitize/test/uvchan-stress-thread -r 2 $(STRESS_THREAD_ARGS)
	$(TSAN_CONFIGURE)
	cmake --build build-tsan -j $(JOBS) --target uvchan-stress-thread
	TSAN_OPTIONS=halt_on_error=1 ./build-tsan/test/uvchan-stress-thread -r 2 $(STRESS_THREAD_ARGS)

# Installs the headers, both libraries, the CMake package and uvchan.pc under PREFIX (default: the
# configured CMAKE_INSTALL_PREFIX, /usr/local).
PREFIX ?=
install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

# The API reference from the public headers, Doxygen into build/docs/html; fails on any warning.
# Configures again so that a build made before doxygen was installed gets the target.
docs: deps
	@sh cmake/install-deps.sh doxygen
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)
	cmake --build $(BUILD) --target docs

clean:
	rm -rf $(BUILD) build-sanitize build-tsan build-valgrind build-fuzz
