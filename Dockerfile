# kiro-gateway: the production image. `docker build -t kiro-gateway .`; see compose.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=8990 \
    KIRO_HEALTH_PORT=8992

WORKDIR /app

# Wheels exist for every pinned package on linux/amd64 and arm64: no compiler in the image.
COPY requirements.txt .
RUN pip install --no-compile -r requirements.txt

COPY . .
RUN groupadd --system --gid 10001 kiro \
    && useradd --system --uid 10001 --gid kiro --home-dir /app --no-create-home kiro \
    && mkdir -p /data \
    && chown kiro:kiro /data \
    && chmod 0700 /data

USER 10001:10001
VOLUME ["/data"]
# 8990: the API and the admin; 8992: /healthz answered off the event loop (for probes).
EXPOSE 8990 8992

HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('KIRO_HEALTH_PORT') or os.environ.get('PORT', '8990')}/healthz\", timeout=2)"]

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["serve"]
