# syntax=docker/dockerfile:1
# The tally binary (every role: serve, ingest, projector, query-api, migrate, demo, …).
# librdkafka is built from rdkafka-sys's bundled sources with OpenSSL (the kafka-tls feature:
# TLS and SASL/SCRAM to Kafka), using the rust image's C compiler, make and libssl-dev.
# BuildKit's cache mounts keep the registry and the compiled dependencies between builds, so a
# change to Tally's own code rebuilds Tally, not librdkafka and the rest.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tally --features kafka-tls \
    && cp target/release/tally /usr/local/bin/tally

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 tally \
    && useradd --system --uid 10001 --gid tally --home-dir /var/lib/tally --shell /usr/sbin/nologin tally \
    && mkdir -p /var/lib/tally \
    && chown tally:tally /var/lib/tally
COPY --from=build /usr/local/bin/tally /usr/local/bin/tally
# Inside a container the server must listen on every interface to be reachable through a
# published port (the binary's own default is loopback).
ENV TALLY_LISTEN=0.0.0.0:8080 \
    TALLY_DATA_DIR=/var/lib/tally
VOLUME /var/lib/tally
EXPOSE 8080
USER 10001:10001
ENTRYPOINT ["tally"]
CMD ["serve"]
