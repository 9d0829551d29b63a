# em340-bridge container image: the static Go binary, a CA bundle, a
# passwd entry for its user and a /tmp, on an empty (scratch) base.
#
#   docker build -t em340-bridge .                          # compiles the source here
#   docker build --build-arg BINARY=dist -t em340-bridge .  # takes dist/ (see below)
#
# BINARY chooses where the binary and the few files around it come from:
# - source (default): compiled in a golang stage on the build machine's
#   platform, cross-compiled for the target, so buildx needs no emulation.
# - dist: the release workflow's own binaries, so the image holds exactly
#   the released file. The context must have dist/em340-bridge_linux_<arch>
#   (<arch> as TARGETARCH+TARGETVARIANT: amd64, arm64, armv7, 386) and
#   dist/rootfs/ (etc/passwd, etc/group, etc/ssl/certs/ca-certificates.crt,
#   tmp/ with mode 1777). This path needs no base image at all, which is how
#   internal/containertest builds it offline.
#
# The image runs as the numeric user 65532:65532. The serial adapter belongs
# to the host's dialout group (GID 20 on Debian and Alpine), added at run
# time by number: compose/docker-compose.yml sets group_add; with docker run
# it is --group-add 20. compose/README.md explains why no privileged mode or
# devices entry is needed for a hot-pluggable adapter.
ARG GO_VERSION=1.26
ARG BINARY=source

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS source
ARG TARGETOS
ARG TARGETARCH
ARG TARGETVARIANT
ARG VERSION=dev
ENV CGO_ENABLED=0 GOTOOLCHAIN=auto
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH GOARM=${TARGETVARIANT#v} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/rootfs/em340-bridge ./cmd/em340-bridge
RUN mkdir -p /out/rootfs/etc/ssl/certs /out/rootfs/tmp && chmod 1777 /out/rootfs/tmp && \
    cp /etc/ssl/certs/ca-certificates.crt /out/rootfs/etc/ssl/certs/ && \
    echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > /out/rootfs/etc/passwd && \
    echo 'nonroot:x:65532:' > /out/rootfs/etc/group

FROM scratch AS dist
ARG TARGETARCH
ARG TARGETVARIANT
COPY dist/rootfs/ /out/rootfs/
COPY dist/em340-bridge_linux_${TARGETARCH}${TARGETVARIANT} /out/rootfs/em340-bridge

FROM ${BINARY} AS binary

FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="em340-bridge" \
      org.opencontainers.image.description="Carlo Gavazzi EM340 energy meter (Modbus RTU) to Home Assistant over MQTT" \
      org.opencontainers.image.source="https://github.com/em340-bridge/em340-bridge" \
      org.opencontainers.image.url="https://github.com/em340-bridge/em340-bridge" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=binary /out/rootfs/ /
USER 65532:65532
# healthcheck exits 1 when no poll cycle finished within EM340_STALL_TIMEOUT
# (default 2m); the start period gives the first cycle that long.
HEALTHCHECK --interval=30s --timeout=10s --start-period=2m --retries=3 \
  CMD ["/em340-bridge", "healthcheck"]
ENTRYPOINT ["/em340-bridge"]
