"""Where the `allowed_roots` setting comes from, and adding a folder to it in its settings file.

A first setup outside the home folder (`repos init /srv/repos`) needs the folder
allowed before the manifest validates. Editing the file by hand means knowing
which file wins; this module finds it (the environment variable, the
environment's file, or the settings file, highest precedence first) and adds
the folder there with a small text edit, so comments, other keys and layout stay
as the person wrote them.

Settings are read at start-up only (the manifest is reloaded on change, the
settings are not): a running server needs a restart to see a new root.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import yaml

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.errors import ConfigurationError

__all__ = ["RESTART", "ROOTS", "SettingsEditError", "add_allowed_root", "setting_source", "settings_hint"]

ROOTS = "allowed_roots"
RESTART = "a running server reads settings only at start-up: restart it after the change"
NEW_FILE_MODE = 0o600
"""A settings file may hold secrets (auth_secret): a new one is readable by its owner only."""


class SettingsEditError(ConfigurationError):
    """The settings file cannot be edited safely; the message says what to do by hand."""


def setting_source(setting: str, settings_cls: type[MahavishnuSettings] = MahavishnuSettings) -> str | Path:
    """The environment variable (its name) or the file (its path) a setting comes from.

    The settings file when nothing sets it (the default applies): that is where to add it.
    """
    variable = settings_cls.env_names()[setting]
    if variable.upper() in (name.upper() for name in os.environ):
        return variable
    for file in reversed(settings_cls.config_files()):  # the environment's file wins
        if setting in _mapping(file):
            return file
    return settings_cls.settings_file()


def settings_hint(setting: str, settings_cls: type[MahavishnuSettings] = MahavishnuSettings) -> str:
    """Which place to edit to change `setting` (allowed_roots, roles), and when a server sees it."""
    source = setting_source(setting, settings_cls)
    if isinstance(source, str):
        return f"{setting} is set by the {source} environment variable: change it there; {RESTART}"
    helper = " (`mahavishnu repos init ROOT --allow-root` adds ROOT for you)" if setting == ROOTS else ""
    return f"{setting} is read from {source}: edit it there{helper}; {RESTART}"


def add_allowed_root(settings_file: Path, folder: Path) -> None:
    """Add `folder` to `allowed_roots` in `settings_file`, creating the file (or the key, keeping
    the default `~`) when missing. Written through a temporary file and a rename."""
    target = Path(os.path.realpath(settings_file))  # edit a symlinked file, not the link
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsEditError(f"cannot read {target}: {exc}") from None
    edited = _with_root(text, str(folder), target)
    _check_edit(text, edited, str(folder), target)
    try:
        _write_atomically(target, edited)
    except OSError as exc:
        raise SettingsEditError(f"cannot write {target}: {exc.strerror or exc}") from None


def _mapping(file: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}  # loading the settings reports it
    return data if isinstance(data, dict) else {}


def _with_root(text: str, folder: str, where: Path) -> str:
    """`text` with `folder` appended to its allowed_roots list, as a JSON string (valid YAML)."""
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise SettingsEditError(f"{where} is not valid YAML ({exc}); fix it first") from None
    item = json.dumps(folder)
    if document is None:  # no file, or only comments
        return _append_key(text, item)
    if not isinstance(document, yaml.MappingNode):
        raise SettingsEditError(f"{where} does not hold a mapping of setting: value; fix it first")
    values = [value for key, value in document.value if key.value == ROOTS]
    if not values:
        return _append_key(text, item)
    roots = values[-1]  # the one a YAML loader keeps
    if not isinstance(roots, yaml.SequenceNode):
        raise SettingsEditError(f"{ROOTS} in {where} is not a list; add {folder} to it by hand")
    if roots.flow_style:  # [a, b]: before the closing bracket
        close = roots.end_mark.index - 1
        separator = ", " if roots.value else ""
        return text[:close] + separator + item + text[close:]
    # A block list starts at its first dash: a new line like it, after the last item's line.
    end = text.find("\n", roots.value[-1].end_mark.index)
    end = len(text) if end == -1 else end
    return f"{text[:end]}\n{' ' * roots.start_mark.column}- {item}{text[end:]}"


def _append_key(text: str, item: str) -> str:
    separator = "\n" if text and not text.endswith("\n") else ""
    return f'{text}{separator}{ROOTS}:\n  - "~"\n  - {item}\n'


def _check_edit(before: str, after: str, folder: str, where: Path) -> None:
    """The edited file must read back as the same settings plus the folder, or nothing is written."""
    try:
        old, new = yaml.safe_load(before) or {}, yaml.safe_load(after)
    except yaml.YAMLError:
        old, new = {}, None
    expected = {**old, ROOTS: [*old.get(ROOTS, ["~"]), folder]}
    if new != expected:
        raise SettingsEditError(f"cannot add {folder} to {ROOTS} in {where} safely; add it by hand")


def _write_atomically(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
