# Production image: one static-ish binary on a slim base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/inlet /usr/local/bin/inlet
USER 65534:65534
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["inlet"]
CMD ["serve", "--bind", "0.0.0.0:8080"]
