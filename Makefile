# Thin wrapper over CMake.  `make run` and `make test` install what is
# missing first (scripts/deps.sh), so both work on a fresh Debian 12.
BUILD      ?= build
# cmake --build runs make again; keep its directory chatter out of the way.
MAKEFLAGS  += --no-print-directory
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
PYTEST      = /usr/bin/python3 -m pytest
SOURCES     = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find src tests bench -name '*.[ch]')

.PHONY: all deps build asan run test unit e2e format format-check bench fuzz clean

all: build

deps:
	@bash scripts/deps.sh

build: deps
	cmake -S . -B $(BUILD) -DKR_WERROR=ON >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

asan: deps
	cmake -S . -B $(ASAN_BUILD) -DKR_WERROR=ON -DKR_SANITIZE=ON >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)

run: build
	@echo
	@echo "keyraft dev agent on http://127.0.0.1:4656. In another shell try:"
	@echo "  export KEYRAFT_ADDR=http://127.0.0.1:4656"
	@echo "  ./$(BUILD)/keyraft var put secret/db password=hunter2"
	@echo "  ./$(BUILD)/keyraft var get secret/db"
	@echo "  ./$(BUILD)/keyraft operator root keyring list"
	@echo
	./$(BUILD)/keyraft agent -dev

format:
	clang-format -i $(SOURCES)

format-check:
	@clang-format --dry-run --Werror $(SOURCES) && echo "clang-format: ok"

unit: build
	cd $(BUILD) && ctest --output-on-failure

e2e: build
	KEYRAFT_BIN=$(CURDIR)/$(BUILD)/keyraft $(PYTEST) -q tests/e2e

# libFuzzer targets, one per parser, each with the sources it needs.
# fuzz_varbody's and fuzz_jwt's corpora are seeded with one file per line
# of tests/fuzz/varbody.seeds and tests/fuzz/jwt.seeds, fuzz_archive's and
# fuzz_snapshot's with tests/fuzz/make_archive_seed.py.
FUZZ_DIR     ?= build-fuzz
FUZZ_SECONDS ?= 20
FUZZ_CFLAGS   = -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc
FUZZ_STATE    = src/common/*.c src/crypto/*.c src/kms/*.c src/state/*.c \
                src/cluster/frame.c -lssl -lcrypto
FUZZ_CONFIG   = src/common/*.c src/config/*.c
FUZZ_VARBODY  = src/common/*.c src/crypto/*.c src/http/varbody.c \
                -ljansson -lssl -lcrypto
FUZZ_ARCHIVE  = src/common/*.c src/crypto/*.c src/kms/*.c src/state/*.c \
                src/snapshot/archive.c -larchive -ljansson -lssl -lcrypto
FUZZ_JWT      = src/common/*.c src/crypto/*.c src/identity/*.c \
                -ljansson -lssl -lcrypto

fuzz: deps
	@mkdir -p $(FUZZ_DIR)
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_entry.c $(FUZZ_STATE) -o $(FUZZ_DIR)/fuzz_entry
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_snapshot.c $(FUZZ_STATE) -o $(FUZZ_DIR)/fuzz_snapshot
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_config.c $(FUZZ_CONFIG) -o $(FUZZ_DIR)/fuzz_config
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_varbody.c $(FUZZ_VARBODY) -o $(FUZZ_DIR)/fuzz_varbody
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_archive.c $(FUZZ_ARCHIVE) -o $(FUZZ_DIR)/fuzz_archive
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_jwt.c $(FUZZ_JWT) -o $(FUZZ_DIR)/fuzz_jwt
	clang $(FUZZ_CFLAGS) tests/fuzz/fuzz_wantdigest.c src/http/wantdigest.c \
	  -o $(FUZZ_DIR)/fuzz_wantdigest
	@for f in varbody jwt wantdigest; do \
	  mkdir -p $(FUZZ_DIR)/corpus-$$f; \
	  awk -v d=$(FUZZ_DIR)/corpus-$$f \
	    '{ f = sprintf("%s/seed-%02d", d, NR); printf "%s", $$0 > f; close(f) }' \
	    tests/fuzz/$$f.seeds; \
	done
	@mkdir -p $(FUZZ_DIR)/corpus-archive $(FUZZ_DIR)/corpus-snapshot
	@/usr/bin/python3 tests/fuzz/make_archive_seed.py \
	  $(FUZZ_DIR)/corpus-archive/seed-00 $(FUZZ_DIR)/corpus-snapshot/seed-00
	@for f in entry snapshot config varbody archive jwt wantdigest; do \
	  mkdir -p $(FUZZ_DIR)/corpus-$$f; \
	  echo "fuzz_$$f: $(FUZZ_SECONDS)s"; \
	  (cd $(FUZZ_DIR) && ./fuzz_$$f -max_total_time=$(FUZZ_SECONDS) \
	     -print_final_stats=0 corpus-$$f >fuzz_$$f.log 2>&1) || \
	     { tail -40 $(FUZZ_DIR)/fuzz_$$f.log; exit 1; }; \
	  grep -h '^Done' $(FUZZ_DIR)/fuzz_$$f.log; \
	done

# Everything, then everything again under ASan + UBSan, then a short run
# of every fuzz target.
test: deps format-check build asan
	cd $(BUILD) && ctest --output-on-failure
	KEYRAFT_BIN=$(CURDIR)/$(BUILD)/keyraft $(PYTEST) -q tests/e2e
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure
	KEYRAFT_BIN=$(CURDIR)/$(ASAN_BUILD)/keyraft KEYRAFT_SANITIZED=1 \
	  ASAN_OPTIONS=detect_leaks=1 $(PYTEST) -q tests/e2e
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

bench: build
	KR_DEPS_BENCH=1 bash scripts/deps.sh
	KEYRAFT_BIN=$(CURDIR)/$(BUILD)/keyraft bash bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_DIR)
