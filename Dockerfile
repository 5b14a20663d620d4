# The petition worker (and, with another command, the `alembic upgrade head` migration step);
# see docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

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

COPY domain ./domain
COPY adapters ./adapters
COPY reports ./reports
COPY security ./security
COPY service ./service
COPY workflows ./workflows
COPY activities ./activities
COPY documents ./documents
COPY starter ./starter
COPY devstack ./devstack
COPY migrations ./migrations
COPY worker.py alembic.ini ./
# Installs the `petition` CLI. `python worker.py` still imports the code from /app (a script's
# directory comes first on sys.path), so paths relative to the project root resolve to /app.
RUN pip install --no-deps .

RUN useradd --create-home --uid 10001 petition \
    && mkdir -p /app/.data/outbox /app/.data/letters \
    && chown -R petition:petition /app/.data
USER petition

CMD ["python", "worker.py"]
