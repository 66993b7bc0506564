"""Akosha: one memory across every Session-Buddy (a service on the platform). This first slice
receives: Session-Buddy's pushes land here, sealed, one current version per memory."""
