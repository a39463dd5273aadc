# wsgate and wsgate-backend in one small image, run as a non-root user.
#
#   docker build -t wsgate:dev .
#   docker run --rm wsgate:dev version
#
# The default command runs the proxy with /etc/wsgate/config/wsgate.yaml
# (the Kubernetes example mounts its ConfigMap there); the reference
# backend is /usr/local/bin/wsgate-backend. examples/kubernetes/image_test.go
# runs this file's go build commands and checks that the binaries are
# static, since no Docker engine runs where the tests do.

# The Go of go.mod's go line.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static binaries (no libc: the final image has none), without the build
# machine's paths in them.
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags="-s -w" -o /out/wsgate ./cmd/wsgate && \
    go build -trimpath -ldflags="-s -w" -o /out/wsgate-backend ./cmd/wsgate-backend

# distroless/static: CA certificates (for an ACME directory), tzdata and a
# passwd with the nonroot user (65532), and nothing else: no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/wsgate /out/wsgate-backend /usr/local/bin/
USER 65532:65532
# 8443: the TLS listener; 9090: the admin listener; 9001: wsgate-backend.
EXPOSE 8443 9090 9001
ENTRYPOINT ["/usr/local/bin/wsgate"]
CMD ["run", "-config", "/etc/wsgate/config/wsgate.yaml"]
