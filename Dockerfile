# One image for every server process (web, worker, beat, one-shot migrations): docs/deploy.md.
# BASE_IMAGE: any Debian-based Python 3.11 image with pip (an engine without registry access can
# build FROM one it imported: docs/deploy.md, "What was run here").
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_ENV=production PIP_BREAK_SYSTEM_PACKAGES=1 \
    LOG_FORMAT=json PROMETHEUS_MULTIPROC_DIR=/run/gco-metrics
WORKDIR /app
COPY requirements/ requirements/
RUN python3 -m pip install --no-cache-dir -r requirements/base.txt
COPY . .
RUN env -u PROMETHEUS_MULTIPROC_DIR SECRET_KEY=build ALLOWED_HOSTS=build \
    DATABASE_URL=sqlite:////tmp/build.db STATICFILES_MANIFEST=1 \
    python3 manage.py collectstatic --noinput
RUN useradd --system --uid 10001 app && mkdir -p /run/gco-metrics /app/var \
    && chown -R app /app /run/gco-metrics
USER app
EXPOSE 8000
# Liveness only (the process answers); readiness (/readyz: database, cache, broker) is the
# orchestrator's check before it routes traffic (docker-compose.yml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('PORT', '8000')}/healthz\", timeout=4)"]
# The web process: WEB_PROCESSES uvicorn workers on one port (HTTP, SSE and WebSockets), all
# writing their metrics to PROMETHEUS_MULTIPROC_DIR. Override the command for worker and beat.
CMD ["sh", "-c", "exec uvicorn config.asgi:application --host 0.0.0.0 --port ${PORT:-8000} --workers ${WEB_PROCESSES:-2} --lifespan off --proxy-headers --forwarded-allow-ips \"${FORWARDED_ALLOW_IPS:-127.0.0.1}\" --no-access-log"]
