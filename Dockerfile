# One image for every radrouter service; the command picks the service (scp, web, worker ...).
#   CPU (default): docker build -t radrouter:latest .
#   GPU:           docker build --build-arg TORCH_VARIANT=cu128 -t radrouter:cu128 .
# TORCH_VARIANT is a PyTorch wheel index: cpu, cu126, cu128, ... (https://download.pytorch.org/whl/).

# --- build: a virtual environment with torch for the variant, then radrouter itself ---
FROM python:3.11-slim-bookworm AS build
ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# torch first, from the PyTorch index: `pip install .` then finds torch==2.13.0 satisfied
# (2.13.0+cpu or +cu128) instead of pulling PyPI's default build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/${TORCH_VARIANT}
WORKDIR /src
COPY pyproject.toml ./
COPY radrouter ./radrouter
RUN pip install . && pip check

# --- runtime: the virtual environment on a clean base, run as a non-root user ---
FROM python:3.11-slim-bookworm
# The node needs only its Python dependencies; redis-tools (redis-cli) is there to inspect the broker.
# (`radrouter up` with the embedded broker would also need redis-server; compose runs redis:7 instead.)
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-tools \
    && rm -rf /var/lib/apt/lists/*
# /data is owned by radrouter, so a named volume mounted there starts out writable for it.
RUN useradd --system --create-home --uid 10001 radrouter \
    && mkdir /data && chown radrouter:radrouter /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 RADROUTER_STORAGE__ROOT=/data
USER radrouter
WORKDIR /home/radrouter
# DICOM SCP and web app (defaults of node.port and web.port).
EXPOSE 11112 8080
ENTRYPOINT ["radrouter"]
CMD ["--help"]
