# syntax=docker/dockerfile:1
# One image for every entry point: the five function targets (chosen per Knative Service by FUNCTION_TARGET
# and FUNCTION_SOURCE), the standalone server (`cocoon-webhook`) and the CronJob sender
# (`python -m common.tick`). Build: docker build -t ghcr.io/cocoonstack/cocoon-webhook:<version> .
#
# The base is pinned by tag and digest: the digest is that of the multi-architecture index of
# python:3.11.14-slim-bookworm as public Dockerfiles pin it (it was not pulled where this was written;
# `docker buildx imagetools inspect python:3.11.14-slim-bookworm` shows the current one). Bumping the
# tag means replacing both. Both stages must use the same image: the runtime venv links to its interpreter.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# The dependencies first, from the lock alone: a code change reuses this layer. Wheels only, each checked
# against the lock's hashes (requirements/runtime.txt, `make lock`), so the runtime stage installs offline
# and keeps no build tools.
COPY requirements/runtime.txt requirements/runtime.txt
RUN python -m pip download --require-hashes --no-deps --only-binary=:all: --dest /wheels \
    -r requirements/runtime.txt

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,source=requirements/runtime.txt,target=/tmp/runtime.txt \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links /wheels --require-hashes -r /tmp/runtime.txt \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nonroot
# Then the code: our package alone, its dependencies already in place, built by the locked setuptools
# (no build isolation: nothing is fetched). The source is bind-mounted read-write so the build's scratch
# files are discarded with the mount; pip goes last, it is not needed at run time.
RUN --mount=type=bind,source=.,target=/src,rw \
    /opt/venv/bin/pip install --no-index --no-deps --no-build-isolation /src \
    && /opt/venv/bin/pip uninstall --yes pip
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
