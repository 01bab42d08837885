# Multi-stage: build wheels with the compilers, run from a slim image as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
RUN pip wheel --no-cache-dir -w /wheels -r requirements.lock
COPY stockstream stockstream
COPY streams streams
COPY connectors connectors
COPY schemas schemas
COPY sinks sinks
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 stockstream
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
USER stockstream
WORKDIR /home/stockstream
# Owned by the user, so that named volumes mounted here (tables, listings) are writable by it.
RUN mkdir -p data listings
ENV STOCKSTREAM_DATA_DIR=/home/stockstream/data STOCKSTREAM_WEB_HOST=0.0.0.0
EXPOSE 6066
ENTRYPOINT ["stockstream"]
CMD ["worker"]
