# One image for the Prefect server, the workers and the dashboard.
# torch is pinned like the Makefile pins it; for the small CPU-only build point pip at a
# CPU wheel index at build time: docker compose build --build-arg PIP_EXTRA_INDEX_URL=...
FROM python:3.11-slim
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false
WORKDIR /app
RUN pip install torch==2.13.0
COPY pyproject.toml README.md prefect.yaml ./
COPY stellar_core stellar_core
COPY tasks tasks
COPY flows flows
COPY dashboard dashboard
RUN pip install .
