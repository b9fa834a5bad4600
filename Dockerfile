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
#
# Without a registry or behind a TLS-intercepting proxy (README: "Air-gapped build"):
#   --build-arg PYTHON_IMAGE=<a local image with python3 and python3-venv>
#   --build-arg WHEELHOUSE=<URL of a folder of wheels, e.g. http://127.0.0.1:8000/> (with
#       `docker build --network host` to reach a local server): every package from there
#   --build-arg EXTRA_CA_CERTS="$(cat proxy-ca.pem)": trusted by pip and the system
# No `# syntax=` line: it would make BuildKit pull its front end from a registry.

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

# Empty: the system's trust store as it is. pip reads its own bundle (certifi) unless told,
# so it is pointed at the system's, which then includes the extra certificates.
ARG EXTRA_CA_CERTS=
RUN if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" > /usr/local/share/ca-certificates/extra-ca.crt \
        && update-ca-certificates > /dev/null \
        && pip config --global set global.cert /etc/ssl/certs/ca-certificates.crt; \
    fi

# torch first, in a layer of its own: the largest download, and the slowest to change.
# Empty TORCH_INDEX_URL: the project's install below takes torch from the default index.
# A WHEELHOUSE replaces every index; its torch build is the one installed, with torchvision
# in the same command so that pip takes the pair that match (`pip download` both together).
ARG TORCH_INDEX_URL=
ARG WHEELHOUSE=
RUN if [ -n "$WHEELHOUSE" ]; then \
        pip install --no-index --find-links "$WHEELHOUSE" torch torchvision; \
    elif [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --index-url "$TORCH_INDEX_URL" torch torchvision; \
    fi

WORKDIR /app
COPY pyproject.toml README* ./
# Four folders, one import name: they install as tunelab, tunelab.models, .objectives, .search.
COPY tunelab ./tunelab
COPY search ./search
COPY models ./models
COPY objectives ./objectives
# The check: torchvision's compiled operators load beside this torch (a torchvision built for
# another torch, or a CUDA torchvision beside a CPU-only torch, imports but fails at its first
# operator, e.g. `operator torchvision::nms does not exist`), so a mismatched pair fails here.
RUN pip install ${WHEELHOUSE:+--no-index --find-links "$WHEELHOUSE"} . \
    && tunelab --help > /dev/null \
    && python -c "import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5)"
COPY docker ./docker

# Not root, with a fixed uid (volumes and host folders can be given to it). Named volumes
# mounted on these folders start with their owner.
RUN useradd --uid 10001 --create-home tunelab \
    && mkdir -p /app/data /app/checkpoints /mlartifacts \
    && chown tunelab:tunelab /app/data /app/checkpoints /mlartifacts
USER tunelab

CMD ["tunelab", "--help"]
