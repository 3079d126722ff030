# syntax=docker/dockerfile:1.7
# The packer-builder hook: a FastAPI service that Metacontroller calls (see docs/install.md).
#   docker build -t packer-builder-hook .
#   docker run --rm -p 8080:8080 packer-builder-hook

# uv resolves nothing here: it installs exactly what uv.lock pins.
FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM python:3.12-slim-bookworm AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
COPY pyproject.toml uv.lock ./
# Third-party dependencies only: the app is copied as source into the final stage, so no build backend
# is needed and a code change does not invalidate this layer.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

FROM python:3.12-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=8080 \
    WEB_CONCURRENCY=1
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY app ./app
# The saved hook requests: /docs shows them as examples (app/http/openapi.py).
COPY metacontroller/examples ./metacontroller/examples
COPY examples ./examples
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/healthz', timeout=2)"]
# exec: uvicorn becomes PID 1 and gets SIGTERM directly, so Kubernetes can drain it gracefully.
ENTRYPOINT ["/bin/sh", "-c", "exec uvicorn app.main:app --host 0.0.0.0 --port \"${PORT:-8080}\" --workers \"${WEB_CONCURRENCY:-1}\""]
