# syntax=docker/dockerfile:1
# One image for every entry point: the four function targets (chosen per Knative Service by FUNCTION_TARGET
# and FUNCTION_SOURCE), the standalone server (`cocoon-webhook`) and the CronJob sender
# (`python -m common.tick`). Build: docker build -t ghcr.io/cocoonstack/cocoon-webhook:<version> .
#
# Pinned to a patch release; a release build should also pin the digest
# (--build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:...). Both stages must use the same image:
# the runtime venv links to its interpreter.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY common/ common/
# Our wheel and every dependency as wheels, so the runtime stage installs offline and keeps no build tools.
RUN python -m pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links /wheels cocoon-webhook \
    && /opt/venv/bin/pip uninstall --yes pip \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nonroot
# Function files are loaded by path (FUNCTION_SOURCE=/app/functions/<target>.py); they import `common`
# from the venv.
COPY functions/ /app/functions/
WORKDIR /app
# functions-framework reads PORT, WORKERS (one worker: the process keeps shared state) and, per Service,
# FUNCTION_TARGET/FUNCTION_SOURCE. It serves our async targets under gunicorn with a uvicorn worker on its
# own, on uvloop and httptools (runtime dependencies, so already in /wheels), which uvicorn picks by itself;
# nothing here selects a server. Knative sets PORT itself and forbids overriding it.
ENV PORT=8080 \
    WORKERS=1
USER 65532:65532
EXPOSE 8080
CMD ["functions-framework"]
