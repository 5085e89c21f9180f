# syntax=docker/dockerfile:1
#
# Latchkey in a container: a release build on the Rust image, run on Debian slim as a non-root
# user, with its data (SQLite store and master key) in the /data volume.
#
#   docker build -t latchkey .                   # podman build --format docker (keeps the HEALTHCHECK)
#   docker run -d --name latchkey -p 127.0.0.1:7420:7420 -v latchkey-data:/data \
#     -v "$PWD/latchkey.toml:/etc/latchkey/latchkey.toml:ro" latchkey
#   docker logs latchkey          # the one-time admin key is printed at first start
#   docker exec -i latchkey latchkey secret set NAME < value.txt
#
# See docs/operations.md: back up the master key (/data/master.key, or LATCHKEY_MASTER_KEY).
# packaging/test-image builds the image and checks it (user, health check, volume, restarts).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The registry and target caches make rebuilds incremental (BuildKit); the binary is copied
# out of the cached target directory, which the next stage cannot see. Without the release
# profile's line tables (kept for profiling on a workstation): 19 MB instead of 83 MB.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    CARGO_PROFILE_RELEASE_DEBUG=false cargo build --release --locked -p latchkey \
    && install -m 0755 target/release/latchkey /usr/local/bin/latchkey

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: upstream TLS is verified against the system's roots. curl: the health check.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 latchkey \
    && useradd --system --uid 10001 --gid latchkey --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin latchkey \
    && mkdir -p /data /etc/latchkey \
    && chown latchkey:latchkey /data \
    && chmod 0700 /data
COPY --from=build /usr/local/bin/latchkey /usr/local/bin/latchkey

# The configuration is read from ./latchkey.toml when it exists: mount it at
# /etc/latchkey/latchkey.toml (read-only). Without one, Latchkey starts with no connectors
# (they can be created through the admin API).
WORKDIR /etc/latchkey
ENV LATCHKEY_DATA_DIR=/data \
    LATCHKEY_LISTEN=0.0.0.0:7420
USER latchkey:latchkey
VOLUME ["/data"]
EXPOSE 7420
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:7420/healthz"]
ENTRYPOINT ["/usr/local/bin/latchkey"]
CMD ["serve"]
