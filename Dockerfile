# syntax=docker/dockerfile:1
# The tunelab image: the `tunelab` CLI (workers), the MLflow tracking server and
# optuna-dashboard; every service of docker-compose.yml but PostgreSQL runs it.
#
#   docker build -t tunelab .
#       torch from PyPI's default build: CUDA-capable, several GB.
#   docker build -t tunelab --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index URL> .
#       a CPU-only torch from PyTorch's own wheel index (see pytorch.org's install page):
#       a much smaller image for CPU workers. In compose, set TORCH_INDEX_URL in .env.
#   docker build -t tunelab:gpu --build-arg VARIANT=gpu .
#       on NVIDIA's CUDA base image, for the NVIDIA Container Toolkit (compose: worker-gpu).
#       PyPI's torch wheels bring their own CUDA libraries; the base adds the driver hooks.

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04

FROM ${PYTHON_IMAGE} AS base-cpu
RUN python3 -m venv /opt/venv

FROM ${CUDA_IMAGE} AS base-gpu
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility

FROM base-${VARIANT}
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, in a layer of its own: the largest download, and the slowest to change.
# Empty TORCH_INDEX_URL: the project's install below takes torch from the default index.
ARG TORCH_INDEX_URL=
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" torch torchvision; \
    fi

WORKDIR /app
COPY pyproject.toml README* ./
# Four folders, one import name: they install as tunelab, tunelab.models, .objectives, .search.
COPY tunelab ./tunelab
COPY search ./search
COPY models ./models
COPY objectives ./objectives
RUN pip install . && tunelab --help > /dev/null
COPY docker ./docker

# Not root. Named volumes mounted on these folders start with their owner.
RUN useradd --create-home tunelab \
    && mkdir -p /app/data /app/checkpoints /mlartifacts \
    && chown tunelab:tunelab /app/data /app/checkpoints /mlartifacts
USER tunelab

CMD ["tunelab", "--help"]
