# One image for every service of the line; the command picks the service:
#   docker run IMAGE run mask_finder | run anomaly | run reviewer | publish --fps 10 | status
# docker-compose.yml builds it once and runs each stage from it.

# ---- build: a virtual environment with the project and its dependencies -----------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# torch is pinned to 2.13.0 in pyproject.toml. On PyPI the Linux wheel of that version is the
# CUDA build (several GB with its nvidia-* dependencies). The PyTorch CPU index serves
# 2.13.0+cpu, which satisfies the pin and sorts above 2.13.0, so with this extra index pip
# takes the CPU build. For a GPU host: --build-arg TORCH_INDEX_URL= (empty: PyPI only).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# Dependencies first, from pyproject.toml alone (empty packages stand in for the code), so a
# code change does not reinstall torch.
COPY pyproject.toml setup.py README.md ./
RUN mkdir -p schemas services shared \
 && touch schemas/__init__.py services/__init__.py shared/__init__.py \
 && pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} . \
 && rm -rf build *.egg-info schemas services shared

# Then the code (with the JSON Schemas and report templates it ships as package data).
COPY schemas/ schemas/
COPY services/ services/
COPY shared/ shared/
RUN pip install --no-deps --force-reinstall . \
 && python -c "import lineinspect.shared.cli.main, lineinspect.services.reviewer.stage"

# ---- runtime: the virtual environment only, run as a non-root user -------------------------
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    LINEINSPECT_PACKAGES=/packages \
    LINEINSPECT_LOG_FORMAT=json

RUN useradd --create-home --uid 10001 --user-group lineinspect
COPY --from=build /opt/venv /opt/venv

USER lineinspect
WORKDIR /home/lineinspect

# Model packages are mounted read-only at /packages (LINEINSPECT_PACKAGES). A stage serves
# /healthz and /readyz only when LINEINSPECT_HEALTH_PORT is set (compose sets 8080), so the
# health check is defined per service in docker-compose.yml, not here.
ENTRYPOINT ["lineinspect"]
CMD ["--help"]
