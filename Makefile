# Serverledge build targets. `make` builds the binaries, `make images` the
# runtime images (from the host's Debian mirror, no registry), `make run`
# starts a single node with embedded etcd, `make test` runs the test suite.

GO      ?= go
BIN     := bin
GOFLAGS := -trimpath
LDFLAGS := -s -w

.PHONY: all build images run test bench clean

all: build

build:
	$(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/serverledge ./cmd/serverledge
	$(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/serverledge-cli ./cmd/serverledge-cli
	$(GO) build $(GOFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/lb ./cmd/lb
	CGO_ENABLED=0 $(GO) build $(GOFLAGS) -buildvcs=false -ldflags '$(LDFLAGS)' -o $(BIN)/serverledge-executor ./cmd/serverledge-executor

images: build
	bash scripts/build-images.sh

run: images
	./$(BIN)/serverledge $(ARGS)

test: images
	$(GO) test -count=1 -timeout 40m ./...

bench: images
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench/...

clean:
	rm -rf $(BIN)
