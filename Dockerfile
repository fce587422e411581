# The expansion-signal detector worker (and the simulator: same image, another command).
#   docker build -t expansion-signals .
#   docker run --rm -p 6066:6066 -e KAFKA_BOOTSTRAP=broker:9092 -e REDIS_URL=redis://redis:6379/0 expansion-signals
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the package (not editable) from a scratch copy of the sources, then drop them.
COPY pyproject.toml README.md /src/
COPY streams /src/streams
RUN pip install /src && rm -rf /src

# The shipped rules; docker-compose.yml mounts ./config/rules.yaml over this file.
WORKDIR /app
COPY config/rules.yaml /app/config/rules.yaml

# Non-root user; DATA_DIR (Faust's local data) is the only place the worker writes.
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown app /data
USER app

ENV RULES_FILE=/app/config/rules.yaml \
    DATA_DIR=/data \
    WEB_PORT=6066 \
    LOG_FORMAT=json

# /metrics, /healthz, /readyz
EXPOSE 6066

# The slim image has no curl: ask /healthz with Python (any error or non-2xx exits non-zero).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WEB_PORT', '6066'), timeout=4)" || exit 1

CMD ["python", "-m", "streams", "worker"]
