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
# Dependency layer: changes only when the lock file (or the packing script)
# does. What keeps it small:
# - what the runner never imports goes: type stubs, protobuf's test data,
#   pydantic-ai's realtime and UI adapters and its skills for coding agents,
#   tiktoken with regex and requests (only pydantic-ai's realtime and
#   embeddings import tiktoken; only tiktoken imports requests), temporalio's
#   Rust sources (sdk-core: its compiled bridge is the .so), gRPC stubs
#   (grpcio is not installed), test server and integrations with other
#   frameworks (all of contrib but what pydantic-ai imports: pydantic,
#   workflow_streams), and the wheels' RECORD files (only an uninstall reads
#   them);
# - bytecode is written only for the modules the runner imports, what a model
#   request loads from the provider SDKs included (compiling that costs a run
#   1 to 2 s of CPU); the rest would never be read;
# - every pure-Python package (pydantic-ai, pydantic, openai, anthropic, ...:
#   57 MB with that bytecode) goes, bytecode too, into deflated zips (19 MB)
#   read by zipimport: the provider SDKs into one the runner puts on sys.path
#   when a run first uses a provider (a zip on sys.path costs memory by its
#   file count), the rest into one a .pth file puts there. Packages with a
#   compiled extension or data files stay on disk.
# Both are scripts/pack-site-packages.py; tests/docker/test_runner_container.py
# fails if a module the runner imports has no bytecode.
COPY pyproject.toml uv.lock scripts/pack-site-packages.py ./
# (cd: WORKDIR cannot glob the site-packages folder, named by the Python version)
# hadolint ignore=DL3003
RUN /opt/uv/bin/uv venv --python "$(command -v python3)" /opt/venv \
 && /opt/uv/bin/uv sync --frozen --only-group runner --no-install-project \
 && cd /opt/venv/lib/python3*/site-packages \
 && find /opt/venv -name '*.pyi' -delete \
 && find /opt/venv -name __pycache__ -type d -prune -exec rm -rf {} + \
 && find . -name '*.so' -exec strip --strip-unneeded {} + \
 && rm -rf google/protobuf/testdata google-stubs pydantic_ai/realtime pydantic_ai/ui \
        pydantic_ai/.agents tiktoken* regex* requests* urllib3* charset_normalizer* \
        temporalio/bridge/sdk-core temporalio/bridge/src temporalio/bridge/Cargo.* \
 && find temporalio/api -name '*_pb2_grpc.py' -delete \
 && find temporalio/contrib -mindepth 1 -maxdepth 1 ! -name __init__.py ! -name pydantic.py \
        ! -name workflow_streams -exec rm -rf {} + \
 && rm -rf temporalio/testing \
 && rm -f ./*.dist-info/RECORD \
 && /opt/venv/bin/python /build/pack-site-packages.py "$PWD"

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
