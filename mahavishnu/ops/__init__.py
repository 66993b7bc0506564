"""Operations tooling: smoke tests against a running server (and, later, backups and readiness)."""
