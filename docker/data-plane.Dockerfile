# The data plane: one static binary. Docker bind-mounts /etc/hosts and
# /etc/resolv.conf into every container, which is all that glibc's static
# resolver needs to find the control plane by its compose service name.
FROM scratch
COPY data-plane /data-plane
EXPOSE 5000
USER 65534:65534
ENTRYPOINT ["/data-plane"]
CMD ["--listen", "0.0.0.0:5000"]
