# The control plane: one static binary. It runs as root because it talks to
# the Docker socket mounted into it.
FROM scratch
COPY control-plane /control-plane
EXPOSE 5100 50051
ENTRYPOINT ["/control-plane"]
CMD ["--backend", "docker", "--http-listen", "0.0.0.0:5100", "--grpc-listen", "0.0.0.0:50051"]
