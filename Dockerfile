# invoicing-api: a static Go binary on scratch, run as a non-root user.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) --build-arg GOPROXY=$(go env GOPROXY) -t invoicing-api .
#
# Reproducible: -trimpath, no build time or build id in the binary, file
# times fixed; VERSION and REVISION are the only inputs besides the source.
#
# Plain `docker build` (classic builder or BuildKit) reads the invdeploy:cache
# line below as a comment. invdeploy, building through the engine's BuildKit,
# adds a cache mount for each directory named there to every RUN of the stage,
# so a source edit recompiles only the changed packages (seconds, not minutes);
# the cache directories never enter a layer, so the image is the same.

FROM golang:1.26-bookworm AS build
# invdeploy:cache /go/pkg/mod /root/.cache/go-build
ARG GOPROXY
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
WORKDIR /src
# Download only the modules the API links, in their own layer: source edits
# reuse it, and the deployer's heavier dependencies are never fetched.
COPY go.mod go.sum ./
RUN go mod download github.com/beorn7/perks github.com/cespare/xxhash/v2 github.com/go-chi/chi/v5 \
      github.com/jackc/pgpassfile github.com/jackc/pgservicefile github.com/jackc/pgx/v5 \
      github.com/jackc/puddle/v2 github.com/mfridman/interpolate github.com/munnerz/goautoneg \
      github.com/pressly/goose/v3 github.com/prometheus/client_golang github.com/prometheus/client_model \
      github.com/prometheus/common github.com/prometheus/procfs github.com/sethvargo/go-retry \
      go.uber.org/multierr golang.org/x/sync golang.org/x/sys golang.org/x/text google.golang.org/protobuf
COPY api ./api
COPY cmd/invoicing-api ./cmd/invoicing-api
COPY internal/version ./internal/version
COPY internal/portprobe ./internal/portprobe
ARG VERSION=dev
ARG REVISION=unknown
RUN go build -trimpath \
      -ldflags "-s -w -buildid= -X github.com/invdeploy/invdeploy/internal/version.Version=${VERSION} -X github.com/invdeploy/invdeploy/internal/version.Revision=${REVISION}" \
      -o /out/invoicing-api ./cmd/invoicing-api \
 && mkdir -p /out/etc/ssl/certs \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ \
 && echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > /out/etc/passwd \
 && echo 'nonroot:x:65532:' > /out/etc/group \
 && find /out -exec touch -h -d @0 {} +

FROM scratch
COPY --from=build /out/etc/ /etc/
COPY --from=build /out/invoicing-api /invoicing-api
USER 65532:65532
ENV PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 CMD ["/invoicing-api", "healthcheck"]
ENTRYPOINT ["/invoicing-api"]
CMD ["serve"]
