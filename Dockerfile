# musicmap: index a music library and serve the explorer.
#   docker build -t musicmap .
#   docker run --rm -v ~/Music:/music:ro -v musicmap-store:/store musicmap index /music --store /store
#   docker run --rm -p 8050:8050 -v ~/Music:/music:ro -v musicmap-store:/store musicmap
#
# Two stages: the first builds the wheel from the source, the second installs exactly that wheel,
# so the image holds what `pip install musicmap` gives a user, never more, never less (the same
# wheel tests/test_install.py builds and runs from a fresh virtual environment).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY musicmap ./musicmap
COPY store ./store
COPY indexer ./indexer
COPY explorer ./explorer
COPY data ./data
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg libsndfile1 \
 && rm -rf /var/lib/apt/lists/*
# torch first, the CPU build, so the project's torch range installs nothing more.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY --from=build /dist /dist
RUN pip install --no-cache-dir /dist/musicmap-*.whl && rm -rf /dist
# MusiCNN's weights (ISC): their own hash-pinned step, --no-deps (see the file).
COPY requirements-musicnn.txt /tmp/
RUN pip install --no-cache-dir --no-deps --require-hashes -r /tmp/requirements-musicnn.txt

ENV MUSICMAP_STORE=/store \
    HF_HOME=/models
VOLUME ["/store", "/models"]
EXPOSE 8050
ENTRYPOINT ["musicmap"]
# Inside a container the explorer must bind all interfaces to be reachable through -p.
CMD ["serve", "--store", "/store", "--host", "0.0.0.0", "--port", "8050"]
