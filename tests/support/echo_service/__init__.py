"""A throwaway second service built only from the platform's parts, as docs/ARCHITECTURE.md's
"add a service" recipe says: settings, one model with its own migration, one tool, a factory.

The tests use it to prove that the platform carries services other than Mahavishnu.
"""
