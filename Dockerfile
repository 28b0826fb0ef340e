# MLScope images, the `mlscope` command as entry point:
#   docker build .                 the exporters only (production; the default, last stage)
#   docker build --target demo .   plus the demo extra (AWS emulator, traffic, on-call stand-in)
FROM python:3.11.10-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/mlscope
COPY constraints.txt pyproject.toml README.md ./
COPY exporters ./exporters
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mlscope
ENTRYPOINT ["mlscope"]
CMD ["--help"]

FROM base AS demo
# Pinned through constraints.txt.
RUN pip install -c constraints.txt '.[demo]'
USER 10001:10001

FROM base AS exporters
RUN pip install -c constraints.txt .
USER 10001:10001
