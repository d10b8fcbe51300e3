# syntax=docker/dockerfile:1
#
# rekey's container image: the `rekey` binary alone on a distroless base (glibc, CA
# certificates, /etc/passwd with the unprivileged user 65532; no shell, no package
# manager), running as that user. Build from the repository root:
#
#   docker build -t registry.example.com/rekey:0.1.0 .
#   docker run --rm registry.example.com/rekey:0.1.0 --version
#
# The image holds no configuration and writes nothing outside the volumes it is given
# (config at /etc/rekey, state at /var/lib/rekey): see
# examples/deploy/kubernetes-cronjob.yaml. A second target adds busybox's sh, for
# recipes that compute arguments (examples/deploy/kubernetes-indexed-job.yaml):
#
#   docker build --target shell -t registry.example.com/rekey:0.1.0-shell .
#
# `rekey --version` shows the commit as `unknown`: .git stays out of the build context.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p rekey --bin rekey \
    && install -D -m 0755 target/release/rekey /out/rekey

# With a shell (busybox at /busybox/sh), for the Indexed Job's shard arithmetic.
FROM gcr.io/distroless/cc-debian12:debug-nonroot AS shell
COPY --from=build /out/rekey /usr/local/bin/rekey
USER 65532:65532
ENV REKEY_CONFIG=/etc/rekey/rekey.toml
WORKDIR /var/lib/rekey
ENTRYPOINT ["/usr/local/bin/rekey"]

# The default target: the binary only.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/rekey /usr/local/bin/rekey
USER 65532:65532
ENV REKEY_CONFIG=/etc/rekey/rekey.toml
WORKDIR /var/lib/rekey
ENTRYPOINT ["/usr/local/bin/rekey"]
CMD ["--help"]
