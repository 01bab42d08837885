# Multi-stage: build wheels with the compilers, run from a slim image as a non-root user.
FROM python:3.11-slim AS build
# A C compiler for the compiled hot path (stockstream/compiled.py).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
# Only the runtime dependencies (pyproject's), at the versions CI tested (the lock as constraints):
# the lock also pins the test and bench extras, which the image does not need.
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > runtime.txt \
 && pip wheel --no-cache-dir -w /wheels -c requirements.lock -r runtime.txt
COPY stockstream stockstream
COPY streams streams
COPY connectors connectors
COPY schemas schemas
COPY sinks sinks
COPY setup.py ./
# The hot path compiled by Cython (the same sources; the worker's stockstream_hot_path_compiled says so).
RUN pip install --no-cache-dir -c requirements.lock cython setuptools wheel \
 && STOCKSTREAM_COMPILE=1 pip wheel --no-cache-dir --no-deps --no-build-isolation -w /wheels .

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
