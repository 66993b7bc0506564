# TEST ONLY: a stand-in for the official redis image of deploy/compose.yaml, for machines that
# cannot pull it (scripts/local_engine.sh builds it as mahavishnu-test/redis:7). Redis 7 from Debian
# bookworm; like the official image it turns protected mode off when it runs redis-server without a
# configuration file, so the other containers of the network can connect.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/*
COPY redis-entrypoint.sh /usr/local/bin/redis-entrypoint.sh
USER redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entrypoint.sh"]
CMD ["redis-server"]
