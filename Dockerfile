# catshost in a container: built with the README's build command, run as a
# non-root user on a small runtime image (glibc and libgcc, no shell).
#
#   docker build -t catshost .
#   docker run --rm -p 8080:8080 -p 127.0.0.1:9090:9090 catshost
#
# The admin port is published on the host's loopback only: it has no
# authentication, and whoever reaches it can take its connection slots
# (docs/deploy.md, "The admin port").
#
# docs/deploy.md has the Kubernetes recipe.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The README's build command (tests/deploy.rs keeps the two the same).
RUN cargo build --release --locked

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/catshost /usr/local/bin/catshost
USER nonroot:nonroot
# 8080: HTTP; 9090: the admin endpoints (/healthz, /readyz, /metrics), bound
# to 0.0.0.0 in the container so that a published port or the pod's probes
# reach it; what may reach it is the publisher's or the cluster's choice.
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/catshost"]
# Without a component, the built-in demo; mount one and name it to serve it.
CMD ["serve", "--addr", "0.0.0.0:8080", "--admin-addr", "0.0.0.0:9090", "--log-format", "json"]
