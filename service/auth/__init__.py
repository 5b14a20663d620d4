"""Who is calling: local staff accounts, intake clients, petitioners with a query code,
OpenID Connect bearer tokens. Every identity ends as a `Principal`."""
