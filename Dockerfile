# syntax=docker/dockerfile:1
# The operator image: build with the Rust toolchain, ship only the binary on distroless.
#   docker build -t redis-operator:0.1.0 .
FROM rust:1.89-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and build artifacts between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin redis-operator \
    && cp target/release/redis-operator /usr/local/bin/redis-operator

# glibc and CA certificates only: no shell, no package manager. Runs as the distroless non-root user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /usr/local/bin/redis-operator /usr/local/bin/redis-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/redis-operator", "run"]
