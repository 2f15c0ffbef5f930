# The agent-runner image: a Temporal worker, nothing else.
#
#   make build-agent-runner-image        (tags stigmer-agent-runner:local)
#   docker build -t stigmer-agent-runner:local .
#
# Nothing here assumes an architecture: the base image, uv and every wheel are
# resolved for the platform being built (linux/amd64, linux/arm64).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.9
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_NATIVE_TLS=1 \
    UV_COMPILE_BYTECODE=0 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
# strip (binutils) to drop debug symbols from the wheels' shared objects. Not
# pinned: a pin breaks with every Debian point release of the base image, and
# binutils only strips files in this throwaway builder stage.
# hadolint ignore=DL3008
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends binutils >/dev/null \
 && rm -rf /var/lib/apt/lists/*
# uv in a throwaway venv of the builder stage only
RUN python3 -m venv /opt/uv && /opt/uv/bin/python -m pip install --quiet "uv==${UV_VERSION}"
# Dependency layer: changes only when the lock file does. Bytecode is
# precompiled for everything but the two large provider SDKs (openai,
# anthropic; about 30 MB of .pyc, removed even if pyproject's
# `compile-bytecode` made uv write them), which keeps the image under 250 MB;
# those compile in memory when a run first uses them. What the runner never
# imports goes: pydantic-ai's realtime and UI adapters, and tiktoken with its
# regex (only pydantic-ai's realtime and embeddings import them).
COPY pyproject.toml uv.lock ./
RUN /opt/uv/bin/uv venv --python "$(command -v python3)" /opt/venv \
 && /opt/uv/bin/uv sync --frozen --only-group runner --no-install-project \
 && find /opt/venv -name '*.pyi' -delete \
 && rm -rf /opt/venv/lib/python3*/site-packages/google/protobuf/testdata \
 && find /opt/venv -name '*.so' -exec strip --strip-unneeded {} + \
 && find /opt/venv/lib/python3*/site-packages/openai /opt/venv/lib/python3*/site-packages/anthropic \
        -name __pycache__ -type d -prune -exec rm -rf {} + \
 && rm -rf /opt/venv/lib/python3*/site-packages/pydantic_ai/realtime \
        /opt/venv/lib/python3*/site-packages/pydantic_ai/ui \
        /opt/venv/lib/python3*/site-packages/tiktoken* \
        /opt/venv/lib/python3*/site-packages/regex* \
 && /opt/venv/bin/python -m compileall -q -j 0 -x '/site-packages/(openai|anthropic)/' /opt/venv/lib

FROM ${PYTHON_IMAGE}
RUN useradd --uid 1000 --user-group --home-dir /home/stigmer --create-home \
        --shell /usr/sbin/nologin stigmer \
 && mkdir -p /workspace \
 && chown stigmer:stigmer /workspace
COPY --from=builder /opt/venv /opt/venv
# Source layer: the runner's package only (see .dockerignore), precompiled
# because the root filesystem is read-only at run time.
COPY src/stigmer /app/stigmer
RUN /opt/venv/bin/python -m compileall -q /app/stigmer
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    STIGMER_WORKSPACE=/workspace \
    STIGMER_RUNNER_HEARTBEAT_FILE=/tmp/stigmer-runner.heartbeat
VOLUME ["/workspace"]
WORKDIR /workspace
USER 1000:1000
# Healthy means the worker is connected: it refreshes the heartbeat file only
# while Temporal answers.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/venv/bin/python", "-m", "stigmer.runner.health"]
# dumb-init is PID 1 and forwards SIGTERM to the worker, which then shuts down
# gracefully (in-flight activities get STIGMER_STOP_GRACE seconds).
ENTRYPOINT ["/opt/venv/bin/dumb-init", "--"]
CMD ["python", "-m", "stigmer.runner"]

ARG VERSION=0.0.0+unknown
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=https://github.com/stigmer/stigmer
ARG SOURCE_DIGEST=unknown
ARG CONTRACT_DIGEST=unknown
# The runner reports the version the image was built for (stigmer._version).
ENV STIGMER_BUILD_VERSION="${VERSION}"
LABEL org.opencontainers.image.title="stigmer agent-runner" \
      org.opencontainers.image.description="Temporal worker that runs stigmer agents" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.stigmer.source-digest="${SOURCE_DIGEST}" \
      io.stigmer.contract-digest="${CONTRACT_DIGEST}"
