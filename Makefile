# Everyday commands, written down once. `make test` is the test command the
# README and CI use.
GO       ?= go
BIN      ?= prometheus-streams
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/prometheus/common/version.Version=$(VERSION) \
            -X github.com/prometheus/common/version.Revision=$(shell git rev-parse --short HEAD 2>/dev/null) \
            -X github.com/prometheus/common/version.Branch=$(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
FUZZTIME ?= 10s

.PHONY: all build test vet fmt-check lint fuzz bench demo ci package pkg-version package-test image rules

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/prometheus-streams

# Unit, integration (real NATS Streaming and Pushgateway in-process) and
# end-to-end tests (the built binary, Debian's node exporter and Prometheus).
# GORACE: a binary built with -race sleeps a second before it exits, for
# other threads to report races still being found; it still waits for the
# reports being written and still fails the package after any. Without the
# sleep each package's test binary and every daemon e2e starts stops at once.
test:
	GORACE="$(strip $(GORACE) atexit_sleep_ms=0)" $(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...
	$(GO) -C packaging/tools vet ./...

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
	cd packaging/tools && $(GOLANGCI_LINT) run ./...

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

# The alerting and 1.0 recording rules, checked and unit-tested with
# Debian's promtool (make test runs the same through e2e/TestRulesPromtool).
PROMTOOL ?= promtool
rules:
	$(PROMTOOL) check rules packaging/prometheus/*.rules.yml
	$(PROMTOOL) test rules packaging/prometheus/tests/*.yml

# deb and rpm packages in dist/ (packaging/README.md): a static binary with
# the version above, man pages and shell completions generated from it, and
# nfpm (pinned by packaging/tools/go.mod, built into ./bin) packing them with
# packaging/nfpm.yaml. PKG_VERSION is VERSION as dpkg and rpm accept it:
# v2.1.0 (or 2.1.0) -> 2.1.0, v2.1.0-3-gabc -> 2.1.0.3.gabc, a pre-release
# v2.1.0-rc.1 -> 2.1.0~rc.1 (below 2.1.0), and anything not a release tag
# (an untagged abc1234, abc1234-dirty, dev) -> 2.0.0~dev.abc1234...: above
# 1.0's releases (0.0.1 to 0.0.6), so it installs over 1.0 as an upgrade, and
# below 2.0.0 (~ sorts first in dpkg and rpm). `make pkg-version` prints it;
# packaging/test-deb.sh checks the mapping with dpkg --compare-versions.
PKG_GOARCH        ?= $(shell $(GO) env GOARCH)
PKG_VERSION       ?= $(shell echo '$(VERSION)' | sed -E -e '/^v?[0-9]+\.[0-9]/!s/^/2.0.0~dev./' -e 's/^v//' -e 's/^2\.0\.0~dev\.dev$$/2.0.0~dev/' -e 's/-(rc|alpha|beta)/~\1/' -e 's/-/./g')
# Timestamps in the packages, man pages and image: the commit's time.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
STAGE             := dist/stage
NFPM              := $(CURDIR)/bin/nfpm
# Generates from a binary for this machine, whatever PKG_GOARCH is.
GEN               := SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) CGO_ENABLED=0 $(GO) run -ldflags '$(LDFLAGS)' ./cmd/prometheus-streams

$(NFPM): packaging/tools/go.mod packaging/tools/go.sum
	$(GO) -C packaging/tools build -o $@ github.com/goreleaser/nfpm/v2/cmd/nfpm

package: $(NFPM)
	rm -rf $(STAGE) dist/*.deb dist/*.rpm && mkdir -p $(STAGE)/man $(STAGE)/completions
	CGO_ENABLED=0 GOOS=linux GOARCH=$(PKG_GOARCH) $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $(STAGE)/prometheus-streams ./cmd/prometheus-streams
	$(GEN) man --dir $(STAGE)/man
	gzip -n -9 $(STAGE)/man/*.1
	$(GEN) completion bash > $(STAGE)/completions/prometheus-streams.bash
	$(GEN) completion zsh > $(STAGE)/completions/_prometheus-streams
	$(GEN) completion fish > $(STAGE)/completions/prometheus-streams.fish
	for p in deb rpm; do \
	  GOARCH=$(PKG_GOARCH) PKG_VERSION='$(PKG_VERSION)' STAGE=$(STAGE) SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) \
	    $(NFPM) package --config packaging/nfpm.yaml --packager $$p --target dist/ || exit 1; \
	done
	ls -l dist/*.deb dist/*.rpm

pkg-version:
	@echo '$(PKG_VERSION)'

# Installs the deb on this machine (as root) and checks it: see the script.
package-test: package
	bash packaging/test-deb.sh

# The container image as a tarball (docker load / podman load), built
# without a daemon by packaging/tools/mkimage, then checked: user not root,
# entrypoint present and running. packaging/container/Dockerfile builds the
# same image where a daemon is available.
IMAGE_TAR ?= dist/prometheus-streams-image.tar
image:
	mkdir -p $(STAGE)
	CGO_ENABLED=0 GOOS=linux GOARCH=$(PKG_GOARCH) $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $(STAGE)/prometheus-streams ./cmd/prometheus-streams
	$(GO) -C packaging/tools build -o $(CURDIR)/bin/mkimage ./mkimage
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) bin/mkimage -binary $(STAGE)/prometheus-streams -arch $(PKG_GOARCH) -version '$(VERSION)' \
	  -tag 'prometheus-streams:$(subst +,_,$(VERSION))' -out $(IMAGE_TAR)
	bin/mkimage -verify $(IMAGE_TAR)

ci: fmt-check vet lint fuzz bench package image rules test
