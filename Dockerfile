# The tally binary (every role: serve, ingest, projector, query-api, migrate, demo).
# librdkafka is built from rdkafka-sys's bundled sources (needs only a C compiler and make).
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p tally && cp target/release/tally /usr/local/bin/tally

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/tally /usr/local/bin/tally
ENV TALLY_DATA_DIR=/var/lib/tally
VOLUME /var/lib/tally
EXPOSE 8080
ENTRYPOINT ["tally"]
CMD ["serve"]
