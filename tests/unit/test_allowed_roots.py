"""Adding a folder to allowed_roots in a settings file: a text edit that keeps the rest as written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from mahavishnu.orchestrator.allowed_roots import (
    SettingsEditError,
    add_allowed_root,
    setting_source,
    settings_hint,
)
from mahavishnu.orchestrator.settings import MahavishnuSettings

NEW = Path("/srv/repos with space")


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("MAHAVISHNU_"):
            monkeypatch.delenv(name)
    path = tmp_path / "config" / "mahavishnu.yaml"
    monkeypatch.setenv("MAHAVISHNU_CONFIG", str(path))
    return path


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            "# mine\nport: 9000\nallowed_roots:\n  - ~/code   # code\n  - /data\n# end\nroles: [app]\n",
            "# mine\nport: 9000\nallowed_roots:\n  - ~/code   # code\n  - /data\n"
            '  - "/srv/repos with space"\n# end\nroles: [app]\n',
        ),
        (
            "allowed_roots:\n- /data\nport: 9000",
            'allowed_roots:\n- /data\n- "/srv/repos with space"\nport: 9000',
        ),
        ("allowed_roots: [/a, /b]  # two\n", 'allowed_roots: [/a, /b, "/srv/repos with space"]  # two\n'),
        ("allowed_roots: []\n", 'allowed_roots: ["/srv/repos with space"]\n'),
        ("port: 9000", 'port: 9000\nallowed_roots:\n  - "~"\n  - "/srv/repos with space"\n'),
        ("# only a comment\n", '# only a comment\nallowed_roots:\n  - "~"\n  - "/srv/repos with space"\n'),
    ],
)
def test_the_folder_is_added_and_everything_else_kept(settings_file: Path, before: str, after: str) -> None:
    settings_file.parent.mkdir()
    settings_file.write_text(before)
    add_allowed_root(settings_file, NEW)
    assert settings_file.read_text() == after
    assert NEW in MahavishnuSettings.load().allowed_roots


def test_a_missing_file_is_created_keeping_the_home_folder_allowed(settings_file: Path) -> None:
    add_allowed_root(settings_file, NEW)
    assert yaml.safe_load(settings_file.read_text()) == {"allowed_roots": ["~", str(NEW)]}
    assert stat.S_IMODE(settings_file.stat().st_mode) == 0o600  # it may hold secrets later
    assert MahavishnuSettings.load().allowed_roots == [Path.home(), NEW]
    assert [p.name for p in settings_file.parent.iterdir()] == ["mahavishnu.yaml"]  # no temporary left


def test_the_file_keeps_its_mode_and_a_symlink_stays_a_link(settings_file: Path, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "mahavishnu.yaml"
    real.parent.mkdir()
    real.write_text("allowed_roots: [/a]\n")
    real.chmod(0o640)
    settings_file.parent.mkdir()
    settings_file.symlink_to(real)
    add_allowed_root(settings_file, NEW)
    assert settings_file.is_symlink()
    assert yaml.safe_load(real.read_text()) == {"allowed_roots": ["/a", str(NEW)]}
    assert stat.S_IMODE(real.stat().st_mode) == 0o640


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("allowed_roots: /one\n", "is not a list; add /srv/repos with space to it by hand"),
        ("- a\n- b\n", "does not hold a mapping"),
        ("port: [\n", "is not valid YAML"),
        ("{port: 1}\n", "add it by hand"),
    ],
)
def test_what_cannot_be_edited_safely_is_left_untouched(
    settings_file: Path, text: str, fragment: str
) -> None:
    settings_file.parent.mkdir()
    settings_file.write_text(text)
    with pytest.raises(SettingsEditError) as raised:
        add_allowed_root(settings_file, NEW)
    assert fragment in str(raised.value)
    assert settings_file.read_text() == text


def test_the_source_is_the_variable_the_environment_file_or_the_settings_file(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert setting_source("allowed_roots") == settings_file  # nothing sets it: where to add it
    settings_file.parent.mkdir()
    settings_file.write_text("allowed_roots: [/a]\n")
    (settings_file.parent / "staging.yaml").write_text("allowed_roots: [/b]\n")
    monkeypatch.setenv("MAHAVISHNU_ENV", "staging")
    assert setting_source("allowed_roots") == settings_file.parent / "staging.yaml"
    assert setting_source("roles") == settings_file
    monkeypatch.setenv("mahavishnu_allowed_roots", '["/c"]')
    assert setting_source("allowed_roots") == "MAHAVISHNU_ALLOWED_ROOTS"


def test_the_hint_names_the_place_and_says_a_restart_is_needed(
    settings_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hint = settings_hint("allowed_roots")
    assert f"allowed_roots is read from {settings_file}: edit it there" in hint
    assert "--allow-root" in hint
    assert "restart it after the change" in hint
    monkeypatch.setenv("MAHAVISHNU_ROLES", '["app"]')
    assert settings_hint("roles").startswith("roles is set by the MAHAVISHNU_ROLES environment variable")
