# omni: one static binary on an empty base, run as a non-root user.
#
#   docker build -t omni .
#   docker run -p 8080:8080 -p 20128:20128 -p 51820:51820/udp -v omni-data:/data omni
#
# GO_IMAGE is the build stage's image: any image with Go 1.26 and a shell.
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
# The modules first, so that a change of the code alone keeps their layer.
# (With GOFLAGS=-mod=vendor and a vendor/ directory in the context, the
# build needs no network.)
COPY go.mod go.sum ./
RUN case "$GOFLAGS" in *-mod=vendor*) ;; *) go mod download ;; esac
COPY . .
# The VCS revision `omni version` prints comes from the .git directory when
# the context has one; VERSION overrides the version it prints.
ARG VERSION=
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=auto \
      -ldflags "-s -w ${VERSION:+-X github.com/omniedge/omni/internal/cli.Version=$VERSION}" \
      -o /out/omni ./cmd/omni \
 && mkdir -p /out/rootfs/etc /out/rootfs/data /out/rootfs/tmp \
 && echo 'omni:x:65532:65532:omni:/data:/sbin/nologin' > /out/rootfs/etc/passwd \
 && echo 'omni:x:65532:' > /out/rootfs/etc/group \
 && chmod 1777 /out/rootfs/tmp \
 && chown 65532:65532 /out/rootfs/data

FROM scratch
COPY --from=build /out/rootfs/ /
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/omni /usr/local/bin/omni
USER 65532:65532
WORKDIR /data
ENV OMNI_DATA=/data
VOLUME ["/data"]
# 8080: OmniEdge API and dashboard; 20128: OmniRoute gateway, its API and
# dashboard; 51820/udp: the nucleus.
EXPOSE 8080 20128 51820/udp
# The binary asks itself: the image has no shell and no curl. Set
# OMNI_HEALTHCHECK_URL for `serve route` alone (port 20128).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/omni", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/omni"]
CMD ["serve"]
