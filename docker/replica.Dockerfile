# The replica: one static binary, nothing else.
FROM scratch
COPY replica /replica
ENV PORT=5000
EXPOSE 5000
USER 65534:65534
ENTRYPOINT ["/replica"]
