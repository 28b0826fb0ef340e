# MLScope exporters and demo tools: one image, the `mlscope` command as entry point.
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/mlscope
COPY constraints.txt pyproject.toml README.md ./
COPY exporters ./exporters
# Pinned through constraints.txt; the demo extra brings moto for the local AWS emulator.
RUN pip install -c constraints.txt '.[demo]' \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mlscope

USER 10001:10001
ENTRYPOINT ["mlscope"]
CMD ["--help"]
