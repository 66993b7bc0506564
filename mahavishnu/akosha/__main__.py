"""`python -m mahavishnu.akosha [--host H] [--port P]`: Akosha alone, as `mahavishnu serve akosha`
will run it once the composition root lists it."""

from __future__ import annotations

import argparse
import sys

from mahavishnu import __version__
from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.platform import ConfigurationError, Metrics, Service
from mahavishnu.platform.server import StartupError, run_service


def _factory(settings: AkoshaSettings, metrics: Metrics) -> Service:
    from mahavishnu.akosha.service import create_service  # once the port is bound

    return create_service(settings, metrics)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m mahavishnu.akosha", description=__doc__)
    parser.add_argument("--host", help="address to listen on (setting: host)")
    parser.add_argument("--port", type=int, help="port to listen on (setting: port)")
    flags = parser.parse_args()
    try:
        run_service(AkoshaSettings, _factory, version=__version__, overrides=vars(flags))
    except StartupError as exc:
        print(f"cannot start: {exc.message}", file=sys.stderr)
        return 1
    except ConfigurationError as exc:
        print(f"refusing to start: {exc.message}", file=sys.stderr)
        return 2
    return 0


sys.exit(main())
