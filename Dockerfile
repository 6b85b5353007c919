# Production image: one binary on a slim base.
#   docker build -t inlet .
#   docker run -p 8080:8080 -v inlet-data:/data -e INLET_ADMIN_TOKEN=… inlet
# With no DATABASE_URL the leads live in SQLite on the /data volume, so they survive the
# container being recreated. The image checks itself with `inlet healthcheck` (GET /readyz).
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: a change to Inlet's code does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin inlet \
    && rm -rf src target/release/.fingerprint/inlet-* target/release/deps/inlet-* target/release/deps/libinlet-*
COPY . .
RUN cargo build --release --locked --bin inlet

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown 65534:65534 /data
COPY --from=build /src/target/release/inlet /usr/local/bin/inlet
USER 65534:65534
WORKDIR /data
VOLUME ["/data"]
ENV DATABASE_URL=sqlite:///data/inlet.db \
    INLET_MAIL_DIR=/data/mail
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=6s --start-period=10s --retries=3 \
    CMD ["inlet", "healthcheck", "--url", "http://127.0.0.1:8080"]
ENTRYPOINT ["inlet"]
CMD ["serve", "--bind", "0.0.0.0:8080"]
