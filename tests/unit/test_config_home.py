"""One home for settings and data, whatever the working folder.

The settings file is `--config` / `<PREFIX>CONFIG`, else `$XDG_CONFIG_HOME/mahavishnu/<service>.yaml`;
data lives in `data_dir`, else `$XDG_DATA_HOME/mahavishnu`; relative paths in a settings file are
relative to its folder; a read-only opening never creates a missing SQLite file.
(`tests/conftest.py` gives every test XDG folders of its own.)
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform.db import Database, NoDatabaseError
from mahavishnu.platform.settings import settings_file_for
from tests.support.echo_service.settings import EchoSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("MAHAVISHNU_", "ECHO_", "SESSION_BUDDY_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def config_home() -> Path:
    folder = Path(os.environ["XDG_CONFIG_HOME"]) / "mahavishnu"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def data_home() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "mahavishnu"


def test_the_settings_file_and_data_are_the_same_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (config_home() / "mahavishnu.yaml").write_text("port: 9123\n")
    answers = []
    for folder in (tmp_path / "one", tmp_path / "two" / "deeper"):
        folder.mkdir(parents=True)
        monkeypatch.chdir(folder)
        settings = MahavishnuSettings.load()
        answers.append(
            (settings.port, settings.data_dir, settings.repos_file, settings.effective_database_url)
        )
    assert answers[0] == answers[1]
    assert answers[0][:3] == (9123, data_home(), config_home() / "repos.yaml")
    assert answers[0][3] == f"sqlite:///{data_home() / 'mahavishnu.db'}"


def test_a_settings_folder_in_the_working_folder_is_not_read_and_a_warning_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings" / "mahavishnu.yaml").write_text("port: 9555\n")
    with caplog.at_level(logging.WARNING):
        settings = MahavishnuSettings.load()
    assert settings.port == 8680
    assert f"{tmp_path / 'settings' / 'mahavishnu.yaml'} is not read" in caplog.text
    assert str(config_home() / "mahavishnu.yaml") in caplog.text


def test_the_config_variable_beats_the_xdg_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (config_home() / "mahavishnu.yaml").write_text("port: 9123\n")
    explicit = tmp_path / "deploy" / "mahavishnu.yaml"
    explicit.parent.mkdir()
    explicit.write_text("port: 9200\n")
    monkeypatch.setenv("MAHAVISHNU_CONFIG", str(explicit))
    assert MahavishnuSettings.load().port == 9200
    assert MahavishnuSettings.settings_file() == explicit


def test_relative_paths_in_a_settings_file_are_relative_to_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "srv"
    folder.mkdir()
    (folder / "mahavishnu.yaml").write_text(
        "data_dir: state\nrepos_file: manifests/repos.yaml\nallowed_roots: [code, /abs, ~/Projects]\n"
        "backup_dir: ../backups\n"
    )
    (folder / "staging.yaml").write_text("repos_file: staging-repos.yaml\n")  # the environment's file too
    monkeypatch.setenv("MAHAVISHNU_CONFIG", str(folder / "mahavishnu.yaml"))
    settings = MahavishnuSettings.load()
    assert settings.data_dir == folder / "state"
    assert settings.repos_file == folder / "manifests" / "repos.yaml"
    assert settings.allowed_roots == [folder / "code", Path("/abs"), Path.home() / "Projects"]
    assert settings.effective_backup_dir == (tmp_path / "backups").resolve()
    monkeypatch.setenv("MAHAVISHNU_ENV", "staging")
    assert MahavishnuSettings.load().repos_file == folder / "staging-repos.yaml"


def test_the_manifest_defaults_to_beside_the_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_CONFIG", str(tmp_path / "elsewhere" / "mahavishnu.yaml"))
    assert MahavishnuSettings.load().repos_file == tmp_path / "elsewhere" / "repos.yaml"
    monkeypatch.setenv("MAHAVISHNU_REPOS_FILE", "/explicit/repos.yaml")
    assert MahavishnuSettings.load().repos_file == Path("/explicit/repos.yaml")


def test_settings_file_for_names_each_services_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_file_for("mahavishnu") == config_home() / "mahavishnu.yaml"
    assert settings_file_for("session-buddy") == config_home() / "session-buddy.yaml"
    monkeypatch.setenv("SESSION_BUDDY_CONFIG", "sb.yaml")  # relative: from the working folder
    assert settings_file_for("session-buddy") == tmp_path / "sb.yaml"
    assert settings_file_for("mahavishnu") == config_home() / "mahavishnu.yaml"
    assert EchoSettings.settings_file() == settings_file_for("echo", "ECHO_") == config_home() / "echo.yaml"


def test_a_settings_file_that_is_not_a_mapping_is_one_clear_error() -> None:
    from mahavishnu.platform.errors import ConfigurationError

    (config_home() / "mahavishnu.yaml").write_text("port: [1\n")
    with pytest.raises(ConfigurationError, match=r"mahavishnu\.yaml:\d+: not valid YAML"):
        MahavishnuSettings.load()
    (config_home() / "mahavishnu.yaml").write_text("- a list\n")
    with pytest.raises(ConfigurationError, match="a mapping of setting: value"):
        MahavishnuSettings.load()


async def test_a_read_only_opening_refuses_a_missing_sqlite_file(tmp_path: Path) -> None:
    settings = MahavishnuSettings.load(data_dir=tmp_path / "data")
    reader = Database.from_settings(settings)
    with pytest.raises(NoDatabaseError, match=f"no database at {tmp_path / 'data' / 'mahavishnu.db'}"):
        await reader.schema_state()
    assert await reader.ping() is False
    await reader.dispose()
    assert not (tmp_path / "data").exists()  # neither the file nor its folder

    owner = Database.from_settings(settings, create=True)
    assert (await owner.ensure_schema(upgrade=True)).is_current
    await owner.dispose()
    reader = Database.from_settings(settings)
    assert (await reader.schema_state()).is_current  # once it exists, reading it is fine
    await reader.dispose()


def mahavishnu(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mahavishnu", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_config_show_names_the_same_file_and_data_folder_from_any_folder(tmp_path: Path) -> None:
    (config_home() / "mahavishnu.yaml").write_text("port: 9123\n")
    (tmp_path / "a").mkdir()
    shown = [mahavishnu("config", "show", cwd=folder) for folder in (tmp_path, tmp_path / "a")]
    assert shown[0].returncode == 0, shown[0].stderr
    assert shown[0].stdout == shown[1].stdout
    assert f"# settings file: {config_home() / 'mahavishnu.yaml'}\n" in shown[0].stdout
    assert f"# data folder: {data_home()}\n" in shown[0].stdout
    assert "port: 9123" in shown[0].stdout


def test_the_config_flag_names_the_file_and_a_missing_one_is_refused(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen.yaml"
    chosen.write_text("port: 9321\n")
    shown = mahavishnu("--config", str(chosen), "config", "show", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"# settings file: {chosen}\n" in shown.stdout
    assert "port: 9321" in shown.stdout
    missing = mahavishnu("--config", "absent.yaml", "config", "show", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: no settings file at {tmp_path / 'absent.yaml'} (--config)"


def test_backup_list_without_a_database_says_so_and_creates_none(tmp_path: Path) -> None:
    result = mahavishnu("backup", "list", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"error: no database at {data_home() / 'mahavishnu.db'}: nothing has been stored with these "
        "settings yet (`mahavishnu config show` names the settings file and data folder in use)"
    ]
    assert not (data_home() / "mahavishnu.db").exists()


async def test_stdio_started_from_another_folder_reads_the_settings_file(tmp_path: Path) -> None:
    # A desktop client starts `serve --stdio` in a folder of its choosing: the settings file in the
    # XDG folder still applies, with its relative `allowed_roots`, and the manifest beside it.
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    from tests.support.repos import make_repos, standard_specs

    home = config_home()
    make_repos(home, standard_specs())  # writes repos.yaml beside the settings file: the default
    (home / "mahavishnu.yaml").write_text("allowed_roots: [repos]\n")
    elsewhere = tmp_path / "client-folder"
    elsewhere.mkdir()
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mahavishnu", "serve", "--stdio"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=str(elsewhere),
    )
    async with Client(params, mode="legacy", cache=None) as client:
        result = await client.call_tool("list_repos", {"tag": "web"})
        assert result.is_error is False
        assert result.structured_content is not None
        assert [r["name"] for r in result.structured_content["repos"]] == ["fastblocks", "webui"]
    assert (data_home() / "mahavishnu.db").is_file()  # the data folder, not the client's
    assert list(elsewhere.iterdir()) == []
