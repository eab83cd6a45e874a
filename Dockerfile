# actpatch: the web page and REST API, on CPU by default (docker-compose.gpu.yml builds the
# CUDA variant). `docker compose up --build`, then open http://localhost:8000.
#
# Build arguments:
#   BASE_IMAGE       a Debian-based image with python3 (3.11+) and its venv module
#   TORCH            the torch requirement (default: the release actpatch pins)
#   TORCH_INDEX_URL  where torch comes from: PyTorch's CPU wheels by default; PyPI's
#                    (https://pypi.org/simple) are the CUDA build
#   WHEELS           a URL (or folder in the image) with wheels already at hand, e.g. a local
#                    torch wheel served for the build (`make docker-test` does this)
# A build secret `ca_bundle` (docker build --secret id=ca_bundle,src=...) makes pip trust
# that CA bundle, e.g. behind a TLS-inspecting proxy; it is used by pip only, never stored.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG WHEELS=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/actpatch \
    PATH=/opt/actpatch/bin:$PATH \
    HF_HOME=/home/actpatch/.cache/huggingface \
    ACTPATCH_HOST=0.0.0.0 \
    ACTPATCH_PORT=8000 \
    MALLOC_ARENA_MAX=2
# MALLOC_ARENA_MAX: glibc keeps one arena per allocating thread (up to 8 per core), and memory
# freed in one is not reused by another (benchmarks/README.md, 60 concurrent sweeps: peak RSS
# 1,060 MiB with 2 arenas, 1,397 MiB with glibc's default).

# A user of its own: the server never runs as root. The Hugging Face cache is its volume.
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin actpatch \
    && mkdir -p "$HF_HOME" && chown -R actpatch:actpatch /home/actpatch \
    && python3 -m venv "$VIRTUAL_ENV"

# torch first, in a layer of its own (the largest, and the one that changes least).
RUN --mount=type=secret,id=ca_bundle \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && pip install --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple \
        ${WHEELS:+--find-links=$WHEELS} "$TORCH"

# Then the dependencies, from pyproject.toml alone (an empty package and README stand in for
# the real ones, built in a folder of its own), so editing the sources or the README does not
# download them again; then actpatch itself.
COPY pyproject.toml /deps/
RUN --mount=type=secret,id=ca_bundle \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && mkdir -p /deps/src/actpatch && touch /deps/src/actpatch/__init__.py /deps/README.md \
    && pip install /deps && rm -rf /deps
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN --mount=type=secret,id=ca_bundle \
    if [ -f /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && pip install --no-deps --force-reinstall /src && rm -rf /src

USER actpatch
WORKDIR /home/actpatch
VOLUME ["/home/actpatch/.cache/huggingface"]
EXPOSE 8000

# GPT-2 small when its weights can be had (downloaded once into the volume), else the bundled
# demo model, said in the log and on the page, as `make run` does.
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python3", "-m", "actpatch.api.healthcheck"]
CMD ["actpatch", "serve"]
