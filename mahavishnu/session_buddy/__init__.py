"""Session-Buddy: the memory of AI coding sessions, encrypted at rest and searchable by meaning."""
