# Thin wrapper over CMake.  `make run` and `make test` install what is
# missing first (scripts/deps.sh), so both work on a fresh Debian 12.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
PYTEST      = /usr/bin/python3 -m pytest
SOURCES     = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find src tests bench -name '*.[ch]')

.PHONY: all deps build asan run test unit e2e format format-check bench clean

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

# Everything, then everything again under ASan + UBSan.
test: deps format-check build asan
	cd $(BUILD) && ctest --output-on-failure
	KEYRAFT_BIN=$(CURDIR)/$(BUILD)/keyraft $(PYTEST) -q tests/e2e
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure
	KEYRAFT_BIN=$(CURDIR)/$(ASAN_BUILD)/keyraft KEYRAFT_SANITIZED=1 \
	  ASAN_OPTIONS=detect_leaks=1 $(PYTEST) -q tests/e2e

bench: build
	KR_DEPS_BENCH=1 bash scripts/deps.sh
	KEYRAFT_BIN=$(CURDIR)/$(BUILD)/keyraft bash bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
