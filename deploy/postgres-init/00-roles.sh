#!/bin/sh
# The database roles (docs/database-roles.md), created when the postgres image initialises a
# fresh data volume (/docker-entrypoint-initdb.d runs only then; on an existing volume run
# `python -m devstack.roles <superuser URL>` instead, and see the doc for Temporal's role).
#
#   petition_owner    owns the application's schema; only migrations log in as it
#   petition_app      the worker and the service: rows only (migration 0006's grants)
#   petition_reports  `petition report`: SELECT only
#   temporal          owns Temporal's two databases, and nothing of the application's
#   keycloak          owns Keycloak's database (the identity provider), nothing else
#   petition_backup   REPLICATION only: takes the physical backups (docs/backup.md)
#
# POSTGRES_USER (the cluster's superuser, the image's own) is used by nobody at run time.
# The role names are the settings' defaults (adapters/settings.py, PETITION_DB_*_ROLE).
set -eu

: "${PETITION_OWNER_PASSWORD:?set PETITION_OWNER_PASSWORD}"
: "${PETITION_APP_PASSWORD:?set PETITION_APP_PASSWORD}"
: "${PETITION_REPORTS_PASSWORD:?set PETITION_REPORTS_PASSWORD}"
: "${TEMPORAL_DB_PASSWORD:?set TEMPORAL_DB_PASSWORD}"
: "${KEYCLOAK_DB_PASSWORD:?set KEYCLOAK_DB_PASSWORD}"
: "${PETITION_BACKUP_PASSWORD:?set PETITION_BACKUP_PASSWORD}"

# psql variables (:'name') quote the passwords as literals; they never pass through SQL text.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner_password="$PETITION_OWNER_PASSWORD" \
    -v app_password="$PETITION_APP_PASSWORD" \
    -v reports_password="$PETITION_REPORTS_PASSWORD" \
    -v temporal_password="$TEMPORAL_DB_PASSWORD" \
    -v keycloak_password="$KEYCLOAK_DB_PASSWORD" \
    -v backup_password="$PETITION_BACKUP_PASSWORD" \
    -v app_database="$POSTGRES_DB" <<'SQL'
CREATE ROLE petition_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE petition_app LOGIN PASSWORD :'app_password';
CREATE ROLE petition_reports LOGIN PASSWORD :'reports_password';
CREATE ROLE temporal LOGIN PASSWORD :'temporal_password';
CREATE ROLE keycloak LOGIN PASSWORD :'keycloak_password';
CREATE ROLE petition_backup LOGIN REPLICATION PASSWORD :'backup_password';

-- The application's database: only its three roles connect; only the owner creates.
REVOKE ALL ON DATABASE :"app_database" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"app_database"
    TO petition_owner, petition_app, petition_reports;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CREATE ON SCHEMA public TO petition_owner;
-- Migration 0010's exclusion constraint on hearings needs btree_gist (contrib, in the
-- official images), which the owner, without CREATE on the database, may not create.
CREATE EXTENSION IF NOT EXISTS btree_gist SCHEMA public;

-- Temporal's databases, its own (docker-compose.yml's temporal-schema job creates and
-- updates the schemas in them as the temporal role). Visibility's btree_gin is a trusted
-- extension: the database's owner creates it.
CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
REVOKE ALL ON DATABASE temporal FROM PUBLIC;
REVOKE ALL ON DATABASE temporal_visibility FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE temporal TO temporal;
GRANT CONNECT, TEMPORARY ON DATABASE temporal_visibility TO temporal;

-- Keycloak's database, its own.
CREATE DATABASE keycloak OWNER keycloak;
REVOKE ALL ON DATABASE keycloak FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE keycloak TO keycloak;
SQL

# The backup role connects for replication (pg_basebackup) from the compose network, with
# its password; no other role may. Read when the server restarts after this script.
echo "host replication petition_backup all scram-sha-256" >> "$PGDATA/pg_hba.conf"
