"""Where a service's settings come from: its settings file, its data folder, the shared names.

One home per service, whatever folder a command runs in (a desktop client starts `serve --stdio`
wherever it likes; a user runs `workflows list` from any folder):

- the settings file is the one `--config` or `<PREFIX>CONFIG` names, else
  `$XDG_CONFIG_HOME/mahavishnu/<service>.yaml` (`~/.config/mahavishnu/<service>.yaml`);
- the environment's file (when `<PREFIX>ENV` is set) sits beside it;
- a relative path written in a settings file is relative to that file's folder;
- the data folder (`data_dir`: the SQLite database, run logs, local backups) defaults to
  `$XDG_DATA_HOME/mahavishnu` (`~/.local/share/mahavishnu`), shared by a user's services as
  `var/` was (each keeps its own `<service>.db` there).

A `settings/<service>.yaml` in the working directory, where files were read from before, is no
longer read: `legacy_settings_notice` says so, so the change is never silent.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource

from mahavishnu.platform.errors import ConfigurationError

__all__ = [
    "APP_FOLDER",
    "SHARED_ENV",
    "SharedEnvSource",
    "config_home",
    "data_home",
    "default_env_prefix",
    "legacy_settings_notice",
    "settings_file_for",
    "settings_file_source",
]

APP_FOLDER = "mahavishnu"
"""The folder under the XDG config and data homes: the ecosystem's, shared by its services."""

SHARED_ENV: Mapping[str, str] = MappingProxyType(
    {
        "database_url": "POSTGRES_URL",
        "db_pool_min_size": "POOL_MIN_SIZE",
        "db_pool_max_size": "POOL_MAX_SIZE",
        "redis_url": "REDIS_URL",
        "otel_exporter_otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
        "rate_limit_enabled": "RATE_LIMIT_ENABLED",
        "rate_limit_per_minute": "RATE_LIMIT_PER_MINUTE",
        "rate_limit_per_hour": "RATE_LIMIT_PER_HOUR",
        "rate_limit_burst": "RATE_LIMIT_BURST",
    }
)
"""Setting → the deployment-guide name every service reads without its prefix (one database,
one Redis, one collector and one rate-limit policy per deployment)."""


def config_home() -> Path:
    """`$XDG_CONFIG_HOME/mahavishnu`; a relative XDG value is ignored, as the XDG spec says."""
    return _xdg("XDG_CONFIG_HOME", ".config") / APP_FOLDER


def data_home() -> Path:
    """`$XDG_DATA_HOME/mahavishnu`: the default data folder of every service."""
    return _xdg("XDG_DATA_HOME", ".local/share") / APP_FOLDER


def _xdg(name: str, fallback: str) -> Path:
    value = os.environ.get(name, "")
    return Path(value) if value and Path(value).is_absolute() else Path.home() / fallback


def default_env_prefix(service_name: str) -> str:
    """`session-buddy` → `SESSION_BUDDY_`: the prefix a service's variables carry by convention."""
    return service_name.upper().replace("-", "_") + "_"


def settings_file_for(service_name: str, env_prefix: str | None = None) -> Path:
    """The settings file of a service, absolute, whether it exists yet or not.

    The file `<PREFIX>CONFIG` names (what `--config` sets; a relative name is taken from the
    working directory, as a shell user means it), else `$XDG_CONFIG_HOME/mahavishnu/<service>.yaml`.
    It is the file to edit to change a setting for good (`repos init` adds a folder to
    `allowed_roots` there); a running server reads it only at start-up, so a change needs a restart.
    `env_prefix` defaults to the one the service name implies (`mahavishnu` → `MAHAVISHNU_`).
    """
    prefix = env_prefix or default_env_prefix(service_name)
    named = os.environ.get(f"{prefix}CONFIG")
    if named:
        return Path(named).expanduser().absolute()
    return config_home() / f"{service_name}.yaml"


def legacy_settings_notice(service_name: str, settings_file: Path) -> str | None:
    """A warning when `settings/<service>.yaml` in the working directory would have been read
    before and is not now; None when there is nothing to say."""
    old = Path.cwd() / "settings" / f"{service_name}.yaml"
    if not old.is_file() or old.resolve() == settings_file.resolve():
        return None
    return (
        f"{old} is not read: settings come from {settings_file} whatever the working folder "
        f"(move the file there, or pass --config {old})"
    )


def settings_file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    """The settings in one YAML file, with its relative paths anchored at the file's folder."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the settings file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigurationError(
            f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: a settings file holds a mapping of setting: value")
    return InitSettingsSource(settings_cls, init_kwargs=_anchor_paths(settings_cls, data, path.parent))


def _anchor_paths(settings_cls: type[BaseSettings], data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Relative (and `~`) paths of path-typed settings, made absolute against `folder`."""
    anchored = dict(data)
    for name, value in data.items():
        field = settings_cls.model_fields.get(name)
        shape = _path_shape(field.annotation) if field is not None else None
        if shape == "one":
            anchored[name] = _anchor(value, folder)
        elif shape == "many" and isinstance(value, list):
            anchored[name] = [_anchor(item, folder) for item in value]
    return anchored


def _path_shape(annotation: Any) -> str | None:
    """`one` for `Path` and `Path | None`, `many` for `list[Path]`, None for anything else."""
    if annotation is Path:
        return "one"
    args = get_args(annotation)
    if get_origin(annotation) is list and args == (Path,):
        return "many"
    if get_origin(annotation) in {Union, types.UnionType} and Path in args:
        return "one" if set(args) <= {Path, type(None)} else None
    return None


def _anchor(value: Any, folder: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value  # not a path: validation says so
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else folder / path)


class SharedEnvSource(PydanticBaseSettingsSource):
    """Reads the unprefixed deployment names a settings class declares in `shared_env`.

    Only those names: a bare `PORT` or `ENV` in the environment belongs to nobody. Values are
    the raw strings (the shared names are all scalars); validation converts them.
    """

    def __init__(self, settings_cls: type[BaseSettings], names: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._names = names

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = self._names.get(field_name)
        return (_environ().get(name) if name else None), field_name, False

    def __call__(self) -> dict[str, Any]:
        environ = _environ()
        return {field: environ[name] for field, name in self._names.items() if name in environ}


def _environ() -> dict[str, str]:
    """The environment by upper-cased name (names are case-insensitive, as for the prefixed ones)."""
    return {key.upper(): value for key, value in os.environ.items()}
