# syntax=docker/dockerfile:1
# One image for the collector sidecar (Katib's sidecar args work unchanged), the injector and the local
# db-manager. Build: docker build -t katib-metrics-collector . ; local engine-less build: scripts/build-image.
#
#   sidecar:    args only, e.g. ["-t", "trial", "-m", "loss", "-s-db", "katib-db-manager.kubeflow:6789", ...]
#   injector:   command ["katib-metrics"], args ["injector", "serve", ...]   (what the Helm chart does)
#   db-manager: command ["katib-metrics"], args ["db-manager", "--listen", "0.0.0.0:6789", "--db", "/data/db"]
#
# Every dependency ships manylinux wheels for CPython 3.11, so no compiler is needed in either stage.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ONLY_BINARY=:all:
WORKDIR /src
RUN python -m venv /opt/katib-metrics
# Dependencies first, in their own layer, so a source change does not re-download them. The stubs and
# setuptools' build/ are removed afterwards: a stale build/ would shadow the real, older-dated sources.
COPY pyproject.toml README.md ./
RUN mkdir -p parsers collector injector katib_metrics \
    && touch parsers/__init__.py collector/__init__.py injector/__init__.py katib_metrics/__init__.py \
    && /opt/katib-metrics/bin/pip install ".[all]" \
    && /opt/katib-metrics/bin/pip uninstall -y katib-metrics-collector \
    && rm -rf build ./*.egg-info parsers collector injector katib_metrics
COPY parsers ./parsers
COPY collector ./collector
COPY injector ./injector
COPY katib_metrics ./katib_metrics
RUN /opt/katib-metrics/bin/pip install --no-deps . \
    && /opt/katib-metrics/bin/pip uninstall -y pip setuptools wheel \
    && find /opt/katib-metrics -name '*.pyc' -delete \
    && /opt/katib-metrics/bin/python -m compileall -q -j 0 /opt/katib-metrics \
    && /opt/katib-metrics/bin/katib-metrics --version

FROM ${PYTHON_IMAGE} AS final
LABEL org.opencontainers.image.title="katib-metrics-collector" \
      org.opencontainers.image.description="Katib-compatible metrics collector sidecar, admission webhook and db-manager" \
      org.opencontainers.image.licenses="Apache-2.0"
# The root filesystem is read-only in the pod: byte code is compiled at build time, nothing is written at run time.
ENV PATH=/opt/katib-metrics/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 65532 katib-metrics \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin katib-metrics \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /root/.cache
COPY --from=build /opt/katib-metrics /opt/katib-metrics
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/katib-metrics-entrypoint
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["/usr/local/bin/katib-metrics-entrypoint"]
