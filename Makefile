# Everyday commands, written down once. `make test` is the test command the
# README and CI use.
GO       ?= go
BIN      ?= prometheus-streams
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/prometheus/common/version.Version=$(VERSION) \
            -X github.com/prometheus/common/version.Revision=$(shell git rev-parse --short HEAD 2>/dev/null) \
            -X github.com/prometheus/common/version.Branch=$(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
FUZZTIME ?= 10s

.PHONY: all build test vet fmt-check lint fuzz bench demo ci

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/prometheus-streams

# Unit, integration (real NATS Streaming and Pushgateway in-process) and
# end-to-end tests (the built binary, Debian's node exporter and Prometheus).
test:
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# golangci-lint at a pinned version, built from the module proxy into ./bin
# (.golangci.yml lists the linters).
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT := $(CURDIR)/bin/golangci-lint-$(GOLANGCI_LINT_VERSION)
$(GOLANGCI_LINT):
	GOBIN=$(CURDIR)/bin/tmp $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(CURDIR)/bin/tmp/golangci-lint $@ && rmdir $(CURDIR)/bin/tmp
lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run ./...

# Short fuzzing runs of the decoders that face untrusted input; the seed
# corpora live in */testdata/fuzz and also run as plain tests in `make test`.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./envelope/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./config/

# Benchmarks, one iteration each in CI so they cannot rot; run with
# BENCHTIME=1s for figures.
BENCHTIME ?= 1x
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

demo: build
	./$(BIN) demo

ci: fmt-check vet lint fuzz bench test
