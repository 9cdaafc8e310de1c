# syntax=docker/dockerfile:1
# Tollgate: build the release binary, ship it on a slim Debian with CA certificates.
# See docs/deployment.md. (No Docker engine on the development machines: this file
# is reviewed, not built, there.)

FROM rust:1.95-slim-bookworm AS build
# jemalloc (the binary's allocator) is built from C with make.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that source changes do not rebuild them.
# .cargo/config.toml carries jemalloc's settings, baked in when it is built.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
# Cargo.toml names bench targets by path, so placeholders must exist for them.
RUN mkdir -p src benches load-tests \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/signing.rs \
 && for b in data_plane customer_api uploads events side_by_side; do echo 'fn main() {}' > load-tests/$b.rs; done \
 && cargo build --release --locked \
 && rm -rf src benches load-tests
COPY src ./src
COPY benches ./benches
COPY load-tests ./load-tests
# Make sure cargo sees the real sources as newer than the placeholder build.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin tollgate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tollgate --create-home --shell /usr/sbin/nologin tollgate
COPY --from=build /src/target/release/tollgate /usr/local/bin/tollgate
COPY config/ /usr/share/tollgate/config/
USER tollgate
WORKDIR /var/lib/tollgate
VOLUME ["/var/lib/tollgate"]
# Probes come from outside the container: let the admin listener (health and
# readiness) listen on all interfaces; keep its port private to the cluster.
ENV TOLLGATE_ADMIN__LISTEN=0.0.0.0:9090
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve"]
