"""`python -m tests.support.echo_service ARGS`: the `mahavishnu` command with Echo registered,
as a real service is: one entry in `mahavishnu.cli.SERVICES`."""

from __future__ import annotations

from mahavishnu.cli import SERVICES, ServiceEntry, app
from tests.support.echo_service.service import create_service
from tests.support.echo_service.settings import EchoSettings

SERVICES["echo"] = ServiceEntry(EchoSettings, lambda: create_service)
app()
