# TEST ONLY: a stand-in for the official postgres image of deploy/compose.yaml, for machines that
# cannot pull it (scripts/local_engine.sh builds it as mahavishnu-test/postgres:15). PostgreSQL 15
# from Debian bookworm, the major version of the client in deploy/Dockerfile's image. It honours
# what compose.yaml uses of the official image: POSTGRES_DB/USER/PASSWORD on first start, the data
# in /var/lib/postgresql/data, pg_isready, port 5432.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-common \
    && sed -i 's/^#\?create_main_cluster.*/create_main_cluster = false/' \
       /etc/postgresql-common/createcluster.conf \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 0700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH="/usr/lib/postgresql/15/bin:${PATH}" \
    PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
