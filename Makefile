# MedLedger build and test entry points. Every target installs nothing by hand: Go fetches the
# pinned modules from go.mod/go.sum, and scripts/go fetches the pinned Go toolchain from the
# module proxy (into .toolchain/) when this machine has no Go 1.21 or later.
GO        ?= $(CURDIR)/scripts/go
BIN       := bin/medledger
SEEDS     ?= 5000
SIM_N     ?= 4
CYCLES    ?= 1000
FUZZTIME  ?= 20s
# Packages whose code runs concurrently (store, node, p2p); the pure cores have none.
RACE_PKGS := ./chain/store/... ./consensus/reactor/... ./node/... ./p2p/... ./records/... ./sync/...

.PHONY: all build test race sim mutants crash fuzz lint bench bench-core demo clean testnet-docker

all: build

# -buildvcs=auto: stamp the source revision (medledger version) when git can tell it.
build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/medledger

# The README's test command: builds everything, vets, runs every test (simulation seeds, the
# kill -9 and power-loss crash tests included), the mutation check of the simulation, then the
# race detector on the concurrent packages (-short: the race pass is about concurrency, the
# full crash cycles already ran).
test: build lint
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -timeout 15m -run 'TestMutants$$' ./testnet/sim/ -sim.mutants
	$(GO) test -count=1 -race -short -timeout 10m $(RACE_PKGS)

race:
	$(GO) test -count=1 -race -short -timeout 10m $(RACE_PKGS)

# More simulation seeds than make test runs: make sim SEEDS=20000 [SIM_N=7]
sim:
	$(GO) test -count=1 -timeout 60m -run 'TestSimulation$$' ./testnet/sim/ -sim.seeds=$(SEEDS) -sim.n=$(SIM_N) -v

# The mutation check alone: each deliberate defect must make the simulation report a violation.
mutants:
	$(GO) test -count=1 -timeout 30m -run 'TestMutants$$' ./testnet/sim/ -sim.mutants -v

# More kill -9 cycles than make test runs: make crash CYCLES=2000
crash:
	$(GO) test -count=1 -timeout 60m -run 'TestCrashRecovery$$' ./chain/store/badger/ -crash.cycles=$(CYCLES) -v

# Runs every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

lint:
	@gofmt="$$($(GO) env GOROOT)/bin/gofmt"; out=$$("$$gofmt" -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')) || exit 1; \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The networked benchmark: a local 4-authority network of node processes under load
# (docs/bench.md). bench-core: the per-core micro-benchmarks of the core packages.
bench: build
	./$(BIN) bench

bench-core:
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./chain/ ./chain/state/ ./chain/store/...

demo: build
	./$(BIN) demo

# The docker testnet (README, "A docker testnet"): builds a static binary and a FROM scratch
# image, starts four authorities and two practice full nodes with docker-compose on their own
# network, runs the record story across containers and the chaos steps, and removes its
# containers, network and image. Needs Docker, docker-compose, root; not part of make test.
testnet-docker:
	MEDLEDGER_DOCKER=1 $(GO) test -count=1 -timeout 20m -v -run 'TestDockerTestnet$$' ./testnet/docker/

clean:
	rm -rf bin
