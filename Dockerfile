# syntax=docker/dockerfile:1
# One image for the application's processes (docker-compose.yml): the petition worker
# (`python worker.py`, the default), the petition service (uvicorn, service.main), the
# codec server (`petition codec-server`) and the migration job (`alembic upgrade head`).
#
# tests/test_image.py proves it without a Docker engine: it copies exactly the files the
# COPY lines below name (minus .dockerignore) into a temporary /app, installs them as this
# file does into a fresh virtual environment and starts the worker, the service, the codec
# server and the migrations from there. `scripts/image_proof.py` does the same by hand.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Every process imports the code from /app, whatever starts it (`python worker.py`,
    # uvicorn, alembic, the `petition` console script): the settings find .data/,
    # alembic.ini, migrations/ and the sample directory relative to the code.
    PYTHONPATH=/app

WORKDIR /app

# Written notices are PDF letters in Chinese (documents/, WeasyPrint): Pango and the Noto
# CJK fonts, from Debian's packages as on the development machines.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
       fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, from pyproject.toml alone, so editing the code does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt

# The code: one COPY per package folder of pyproject.toml's [tool.setuptools] packages
# (their package-data inside them), its py-modules, and what the migration job reads.
# tests/test_image.py checks this list against pyproject.toml and builds from it.
COPY domain ./domain
COPY adapters ./adapters
COPY reports ./reports
COPY security ./security
COPY observability ./observability
COPY service ./service
COPY workflows ./workflows
COPY activities ./activities
COPY documents ./documents
COPY starter ./starter
COPY devstack ./devstack
COPY worker.py ./
COPY migrations ./migrations
COPY alembic.ini ./
# Installs the `petition` command (and fails the build if a package or its data is missing).
RUN pip install --no-deps . && rm -rf build *.egg-info

RUN useradd --create-home --uid 10001 petition \
    && mkdir -p /app/.data/outbox /app/.data/letters /app/.data/audit \
    && chown -R petition:petition /app/.data
USER petition

CMD ["python", "worker.py"]
