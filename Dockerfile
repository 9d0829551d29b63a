# syntax=docker/dockerfile:1
#
# em340-bridge container image: a static Go binary on distroless.
#
#   docker build --build-arg VERSION=0.1.0 -t em340-bridge .
#
# The image runs as the numeric user 65532:65532 (distroless "nonroot").
# The serial adapter belongs to the host's dialout group (GID 20 on Debian
# and Alpine), which a distroless image cannot resolve by name, so the
# group is added at run time by number: compose/docker-compose.yml sets
# group_add: ["${DIALOUT_GID:-20}"]; with docker run it is --group-add 20.
# compose/README.md explains why no privileged mode or devices entry is
# needed for a hot-pluggable adapter.

ARG GO_VERSION=1.26

# Built on the build machine's platform and cross-compiled, so multi-arch
# builds (buildx --platform linux/amd64,linux/arm64) need no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ENV CGO_ENABLED=0 GOTOOLCHAIN=auto
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/em340-bridge ./cmd/em340-bridge

# static-debian12 has CA certificates and tzdata, and a /tmp writable by
# everyone, where the bridge keeps its status file for the health check.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="em340-bridge" \
      org.opencontainers.image.description="Carlo Gavazzi EM340 energy meter (Modbus RTU) to Home Assistant over MQTT" \
      org.opencontainers.image.source="https://github.com/em340-bridge/em340-bridge" \
      org.opencontainers.image.url="https://github.com/em340-bridge/em340-bridge" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/em340-bridge /em340-bridge
USER 65532:65532
# healthcheck exits 1 when no poll cycle finished within EM340_STALL_TIMEOUT
# (default 2m); the start period gives the first cycle that long.
HEALTHCHECK --interval=30s --timeout=10s --start-period=2m --retries=3 \
  CMD ["/em340-bridge", "healthcheck"]
ENTRYPOINT ["/em340-bridge"]
