"""The commands in the operations documents exist, and the read-only ones work.

Every ```sh block of docs/PRODUCTION_DEPLOYMENT_GUIDE.md, docs/RUNBOOK.md, docs/MAINTENANCE.md and
README.md is read (blocks of any other language, e.g. ```sh-example, ```text or ```crontab, are
illustrative and skipped; the opening HTML comment of each document states this convention). Each
line is one shell command line: `\\` continuations are joined, a `$ ` prompt and a trailing
`# comment` are dropped; `|`, `&&`, `||` and `;` separate its simple commands, and a `$(...)`
substitution is a command too.

a) Every `mahavishnu ...` command walks the real click tree word by word (each word a sub-command
   of the group before it) and uses only options of the command it reaches;
   `python -m mahavishnu PATH --help` exits 0 for every path. README's synopsis notation
   (`[--json]`, `list|show ID`) is understood. The scripts' arguments match their usage lines.
b) Every path under scripts/ or deploy/ that the documents name exists.
c) The read-only commands run for real (bash, from the repository root) against a real server
   started for this module in production mode (auth on, SQLite in a temporary folder), with the
   documents' placeholder URL replaced by the server's; each must exit 0. Lines that address
   Session-Buddy (`$SESSION_BUDDY_URL`, its port 8678, `--service session-buddy`) run against a
   real Session-Buddy in production mode, with a token for it in MAHAVISHNU_TOKEN.

And the documents' own promises: one runbook section per alert rule (so each rule's runbook
annotation resolves), PromQL that promtool accepts and that selects only metrics the server
exports, every environment variable documented, the settings example loading as written.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from mahavishnu.cli import app
from mahavishnu.orchestrator.settings import MahavishnuSettings
from mahavishnu.platform import PlatformSettings
from mahavishnu.session_buddy.settings import SessionBuddySettings
from tests.ops.support import ENCRYPTION_KEY, ROOT, find_tool, promql_metric_names, require_tool
from tests.support.akosha import akosha_env, spawn_akosha
from tests.support.repos import make_repos, standard_specs
from tests.support.server import SECRET, RunningServer, base_env, free_port, start_server, wait_ready
from tests.support.session_buddy import session_buddy_env, spawn_session_buddy
from tests.support.tokens import claims, hs256

DOCS = ("docs/PRODUCTION_DEPLOYMENT_GUIDE.md", "docs/RUNBOOK.md", "docs/MAINTENANCE.md")
ALL_DOCS = (*DOCS, "README.md")
GUIDE = "docs/PRODUCTION_DEPLOYMENT_GUIDE.md"
PLACEHOLDER_URLS = ("http://127.0.0.1:8680", "http://localhost:8680")
URL_VARIABLES = ("$MAHAVISHNU_URL", "${MAHAVISHNU_URL}")
SESSION_BUDDY_PLACEHOLDER_URLS = ("http://127.0.0.1:8678", "http://localhost:8678")
SESSION_BUDDY_URL_VARIABLES = ("$SESSION_BUDDY_URL", "${SESSION_BUDDY_URL}")
MIN_EXECUTED = 8
COMMAND_TIMEOUT = 60
# Kinds of command the documents must keep runnable (each must be among the executed lines).
MUST_RUN = (
    "mahavishnu smoke",
    "scripts/smoke_tests.sh",
    "mahavishnu readiness",
    "mahavishnu backup create",
    "mahavishnu backup verify",
    "mahavishnu db status",
    "mahavishnu dlq list",
    "mahavishnu repos validate",
    "curl",
)
# The same for the lines that address Session-Buddy.
SESSION_BUDDY_MUST_RUN = (
    "mahavishnu smoke",
    "mahavishnu readiness",
    "mahavishnu config show",
    "mahavishnu backup create",
    "mahavishnu token create",
    "curl",
)

# --- reading the documents ------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\s`]*)[ \t]*$")
_FENCE_CLOSE = re.compile(r"^[ \t]*```[ \t]*$")


@dataclass(frozen=True)
class Block:
    doc: str
    lang: str
    line: int  # the line number of the block's first content line
    text: str


@dataclass(frozen=True)
class CommandLine:
    doc: str
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def read_blocks(doc: str) -> list[Block]:
    lines = (ROOT / doc).read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent = len(opening["indent"])
        end = i + 1
        while end < len(lines) and not _FENCE_CLOSE.match(lines[end]):
            end += 1
        body = [line[indent:] if not line[:indent].strip() else line for line in lines[i + 1 : end]]
        found.append(Block(doc, opening["lang"], i + 2, "\n".join(body)))
        i = end + 1
    return found


def strip_comment(line: str) -> str:
    """Drop an unquoted `#` comment (one at the start of a word)."""
    quote: str | None = None
    escaped = False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def command_lines(block: Block) -> list[CommandLine]:
    found: list[CommandLine] = []
    pending = ""
    first = block.line
    for offset, raw in enumerate(block.text.splitlines()):
        line = raw.strip()
        if not pending:
            first = block.line + offset
            line = line.removeprefix("$ ")
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        text = strip_comment(pending + line).strip()
        pending = ""
        if text:
            found.append(CommandLine(block.doc, first, text))
    return found


def doc_commands(doc: str) -> list[CommandLine]:
    return [line for block in read_blocks(doc) if block.lang == "sh" for line in command_lines(block)]


# --- shell structure ----------------------------------------------------------------------------------

_OPERATORS = {"|", "||", "&&", ";", "&", "|&"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    return list(lexer)


def simple_commands(text: str) -> list[list[str]]:
    """The simple commands of a command line, in order (operators and parentheses removed)."""
    segments: list[list[str]] = [[]]
    for token in tokens(text):
        if token in _OPERATORS:
            segments.append([])
        elif token not in {"(", ")"}:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def substitutions(text: str) -> list[str]:
    """The command lines inside `$(...)` substitutions of a line."""
    found = []
    for token in tokens(text):
        start = token.find("$(")
        while start != -1:
            depth, i = 0, start + 1
            while i < len(token):
                depth += {"(": 1, ")": -1}.get(token[i], 0)
                if depth == 0:
                    break
                i += 1
            found.append(token[start + 2 : i])
            start = token.find("$(", i)
    return found


def split_assignments(words: list[str]) -> tuple[dict[str, str], list[str]]:
    assignments: dict[str, str] = {}
    i = 0
    while i < len(words) and _ASSIGNMENT.match(words[i]):
        name, _, value = words[i].partition("=")
        assignments[name] = value
        i += 1
    return assignments, words[i:]


def is_synopsis(text: str) -> bool:
    """README-style notation: `[--json]`, `list|show ID` (outside quotes)."""
    bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", text)
    return bool(re.search(r"\[|\]|\S\|\S", bare))


def is_mahavishnu(program: str) -> bool:
    return program == "mahavishnu" or program.endswith("/bin/mahavishnu")


# --- the real command tree ----------------------------------------------------------------------------

CLI = typer.main.get_command(app)  # typer's own (vendored) click classes: duck-typed below


def is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def is_option(param: Any) -> bool:
    return bool(param.param_type_name == "option")


class DocCommandError(Exception):
    pass


@dataclass
class Invocation:
    path: tuple[str, ...]
    options: dict[str, str | None] = field(default_factory=dict)
    positionals: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join(("mahavishnu", *self.path))


def resolve(words: list[str], *, synopsis: bool) -> list[Invocation]:
    """The invocations a `mahavishnu ...` word list stands for (several for `a|b` synopses)."""
    return _walk(CLI, (), words[1:], synopsis)


def _walk(node: Any, path: tuple[str, ...], rest: list[str], synopsis: bool) -> list[Invocation]:
    while is_group(node):
        if not rest:
            raise DocCommandError(f"`{' '.join(('mahavishnu', *path))}` needs a sub-command")
        word = rest[0]
        if word == "--help":
            return [Invocation(path, {"--help": None})]
        if synopsis and "|" in word:
            return [
                inv for alt in " ".join(rest).split("|") for inv in _walk(node, path, alt.split(), synopsis)
            ]
        child = node.commands.get(word)
        if child is None:
            raise DocCommandError(
                f"`{word}` is not a sub-command of `{' '.join(('mahavishnu', *path))}` "
                f"(it has: {', '.join(sorted(node.commands))})"
            )
        node, path, rest = child, (*path, word), rest[1:]
    return [_parse_leaf(node, path, rest)]


def _parse_leaf(command: Any, path: tuple[str, ...], rest: list[str]) -> Invocation:
    name = " ".join(("mahavishnu", *path))
    lookup: dict[str, Any] = {}
    for param in command.params:
        if is_option(param):
            for opt in (*param.opts, *param.secondary_opts):
                lookup[opt] = param
    invocation = Invocation(path)
    i = 0
    while i < len(rest):
        word = rest[i]
        i += 1
        if not word.startswith("-") or len(word) == 1 or re.fullmatch(r"-\d+(\.\d+)?", word):
            invocation.positionals.append(word)
            continue
        option, has_value, value = word.partition("=")
        if option == "--help":
            invocation.options[option] = None
            continue
        param = lookup.get(option)
        if param is None:
            raise DocCommandError(f"`{name}` has no option {option} (it has: {', '.join(sorted(lookup))})")
        if param.is_flag or param.count or has_value:
            invocation.options[option] = value if has_value else None
        elif i < len(rest):
            invocation.options[option] = rest[i]
            i += 1
        else:
            raise DocCommandError(f"`{name}`: {option} needs a value")
    if "--help" in invocation.options:
        return invocation
    for param in command.params:
        given = any(opt in invocation.options for opt in (*param.opts, *getattr(param, "secondary_opts", [])))
        if is_option(param) and param.required and not given:
            raise DocCommandError(f"`{name}` needs {param.opts[0]}")
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    most = sum(p.nargs if p.nargs > 0 else 1000 for p in arguments)
    least = sum(max(p.nargs, 1) for p in arguments if p.required)
    if not least <= len(invocation.positionals) <= most:
        raise DocCommandError(f"`{name}` takes {least}..{most} argument(s), got {invocation.positionals}")
    return invocation


@dataclass
class Checked:
    line: CommandLine
    invocations: list[Invocation]
    errors: list[str]


def check_line(line: CommandLine) -> Checked:
    """Resolve every `mahavishnu` command of a line (its substitutions included)."""
    checked = Checked(line, [], [])
    pieces = [line.text, *substitutions(line.text)]
    for piece in pieces:
        if is_synopsis(piece):
            _, words = split_assignments(piece.split())
            groups = (
                [[w.replace("[", "").replace("]", "") for w in words]]
                if words and is_mahavishnu(words[0])
                else []
            )
        else:
            groups = [words for _, words in map(split_assignments, simple_commands(piece))]
        for words in groups:
            if not words or not is_mahavishnu(words[0]):
                continue
            try:
                checked.invocations.extend(resolve(words, synopsis=is_synopsis(piece)))
            except DocCommandError as exc:
                checked.errors.append(f"{line.where}: {line.text}\n    {exc}")
    return checked


# --- the scripts' usage lines -------------------------------------------------------------------------


@dataclass
class ScriptUsage:
    choices: set[str]
    flags: set[str]
    valued: set[str]
    positionals: int


def script_usage(script: str) -> ScriptUsage:
    """From the script's header: `#   scripts/x.sh {a|b} URL [-v|--verbose] [--token TOKEN]`."""
    header = (ROOT / script).read_text().splitlines()[:12]
    line = next(h for h in header if re.match(rf"^#\s+{re.escape(script)}\s", h))
    words = line.split()[2:]
    usage = ScriptUsage(set(), {"-h", "--help"}, set(), 0)
    for i, raw in enumerate(words):
        word = raw.strip("[]{}")
        if raw.startswith("[") and not raw.endswith("]") and i + 1 < len(words):
            usage.valued.update(word.split("|"))
        elif word.startswith("-"):
            usage.flags.update(word.split("|"))
        elif "|" in word or word.islower():
            usage.choices.update(word.split("|"))
        elif word.isupper() and not words[i - 1].startswith("[--"):
            usage.positionals += 1
    return usage


def script_errors(line: CommandLine) -> list[str]:
    errors = []
    for words in simple_commands(line.text):
        _, words = split_assignments(words)
        if not words:
            continue
        script = words[0].removeprefix("./")
        if not re.fullmatch(r"scripts/[\w.-]+\.sh", script) or not (ROOT / script).is_file():
            continue
        usage = script_usage(script)
        positionals, args = 0, words[1:]
        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            if arg.startswith("-"):
                option = arg.partition("=")[0]
                if option in usage.valued:
                    i += 0 if "=" in arg else 1
                elif option not in usage.flags:
                    errors.append(f"{line.where}: {script} has no option {option}")
            elif usage.choices:
                if arg not in usage.choices:
                    errors.append(f"{line.where}: {script} does not take {arg!r} ({sorted(usage.choices)})")
            else:
                positionals += 1
        if positionals > usage.positionals:
            errors.append(f"{line.where}: {script} takes {usage.positionals} argument(s): {line.text}")
    return errors


# --- (c): which lines are safe to run ---------------------------------------------------------------

READ_ONLY_TOOLS = frozenset(
    {
        "list_repos", "get_repo", "get_all_repo_paths", "list_roles", "get_repos_by_role", "get_health",
        "list_workflow_definitions", "get_workflow_status", "list_workflows", "search_workflows",
        "get_workflow_statistics", "list_dead_letters", "list_backups",
        "get_memory", "get_memory_history", "list_memories", "search_memories", "memory_stats",
        "get_session", "list_sessions", "verify_audit_log",
    }
)  # fmt: skip
READ_ONLY_METHODS = frozenset({"initialize", "tools/list", "ping", "resources/list"})
FILTERS = frozenset({"jq", "grep", "head", "tail", "sort", "uniq", "wc", "cut"})


def _no_positionals(inv: Invocation) -> bool:
    return not inv.positionals


SAFE_MAHAVISHNU: dict[tuple[str, ...], Callable[[Invocation], bool]] = {
    ("config", "show"): _no_positionals,
    ("repos", "validate"): _no_positionals,
    ("repos", "list"): _no_positionals,
    ("db", "status"): _no_positionals,
    ("workflows", "list"): _no_positionals,
    ("dlq", "list"): _no_positionals,
    ("backup", "list"): _no_positionals,
    ("backup", "create"): _no_positionals,
    ("backup", "verify"): lambda inv: inv.positionals in ([], ["latest"]),
    ("backup", "prune"): lambda inv: "--dry-run" in inv.options and not inv.positionals,
    ("backup", "keygen"): _no_positionals,
    ("token", "create"): _no_positionals,
    ("readiness",): _no_positionals,
    ("smoke",): lambda inv: len(inv.positionals) == 1 and is_local_url(inv.positionals[0]),
}


def is_local_url(word: str) -> bool:
    return word.startswith(
        (*URL_VARIABLES, *PLACEHOLDER_URLS, *SESSION_BUDDY_URL_VARIABLES, *SESSION_BUDDY_PLACEHOLDER_URLS)
    )


def addresses_session_buddy(text: str) -> bool:
    """A line about Session-Buddy: its URL, its port's placeholder, or `--service session-buddy`."""
    marks = (*SESSION_BUDDY_URL_VARIABLES, *SESSION_BUDDY_PLACEHOLDER_URLS, "--service session-buddy")
    return any(mark in text for mark in marks) or "--service=session-buddy" in text


def _option_value(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if name.startswith("--") and arg.startswith(f"{name}="):
                return arg.partition("=")[2]
    return None


def _safe_curl(args: list[str]) -> bool:
    urls = [a for a in args if a.startswith(("http:", "https:", "$"))]
    if not urls or not all(is_local_url(u) for u in urls):
        return False
    if (_option_value(args, "-X", "--request") or "GET").upper() not in {"GET", "POST", "HEAD"}:
        return False
    if _option_value(args, "-o", "--output") not in (None, "/dev/null"):
        return False
    data = _option_value(args, "-d", "--data", "--data-raw", "--data-binary")
    if data is None:
        return True
    try:
        body = json.loads(data)
    except ValueError:
        return False
    if body.get("method") in READ_ONLY_METHODS:
        return True
    return body.get("method") == "tools/call" and body.get("params", {}).get("name") in READ_ONLY_TOOLS


def _safe_segment(words: list[str], first: bool) -> bool:
    assignments, words = split_assignments(words)
    if not words or any("$" in value for value in assignments.values()):
        return False
    program, args = words[0], words[1:]
    if not first and program in FILTERS:
        return True
    if is_mahavishnu(program):
        try:
            (inv,) = resolve(words, synopsis=False)
        except (DocCommandError, ValueError):
            return False
        if "--help" in inv.options:
            return True
        safe = SAFE_MAHAVISHNU.get(inv.path)
        return safe is not None and safe(inv)
    script = program.removeprefix("./")
    if script == "scripts/smoke_tests.sh":
        urls = [a for a in args if not a.startswith("-")]
        return len(urls) == 1 and is_local_url(urls[0]) and set(args) - set(urls) <= {"-v", "--verbose"}
    if script == "scripts/deploy_production.sh":
        return args in (["--help"], ["-h"])
    if program == "curl":
        return _safe_curl(args)
    read_only: dict[str, Callable[[list[str]], bool]] = {
        "promtool": lambda a: a[:1] in (["check"], ["test"]),
        "amtool": lambda a: a[:1] == ["check-config"],
        "kubectl": lambda a: a[:1] == ["kustomize"],
        "systemd-analyze": lambda a: a[:1] == ["calendar"],
        "python3": lambda a: a[:1] == ["-c"] and len(a) == 2 and a[1].startswith("import secrets;"),
    }
    return program in read_only and read_only[program](args)


@dataclass(frozen=True)
class Plan:
    line: CommandLine
    programs: tuple[str, ...]
    first: bool  # run before the others (backups that later lines verify)
    shape: str  # run once per shape: same sub-command, flags and arguments (option values aside)


def plan(line: CommandLine) -> Plan | None:
    """A plan to run the line, or None when it is not (provably) read-only and self-contained."""
    text = line.text
    if "$(" in text or "`" in text or is_synopsis(text):
        return None
    bare = re.sub(r"'[^']*'|\"[^\"]*\"", "", text).replace("2>&1", "")
    if "<" in bare or ">" in bare:
        return None  # a redirection: writes or reads files
    segments = simple_commands(text)
    if not segments or not all(_safe_segment(words, i == 0) for i, words in enumerate(segments)):
        return None
    programs = tuple(split_assignments(words)[1][0] for words in segments)
    creates = any(words[1:3] == ["backup", "create"] for words in (split_assignments(s)[1] for s in segments))
    shape = text
    if len(segments) == 1 and is_mahavishnu(programs[0]):
        assignments, words = split_assignments(segments[0])
        (inv,) = resolve(words, synopsis=False)
        flags = sorted(name for name, value in inv.options.items() if value is None)
        target = addresses_session_buddy(text)
        shape = repr((sorted(assignments.items()), inv.path, flags, inv.positionals, target))
    return Plan(line, programs, creates, shape)


def available(program: str) -> bool:
    if "/" in program:
        return (ROOT / program.removeprefix("./")).is_file()
    return is_mahavishnu(program) or find_tool(program) is not None


# --- fixtures ----------------------------------------------------------------------------------------


@dataclass
class Live:
    server: RunningServer
    env: dict[str, str]
    workdir: Path
    session_buddy: RunningServer
    session_buddy_env: dict[str, str]
    """The shell environment for lines that address Session-Buddy (its token in MAHAVISHNU_TOKEN)."""

    def for_line(self, text: str) -> tuple[str, dict[str, str]]:
        """The line with its placeholder URLs replaced, and the environment to run it in."""
        for placeholder in PLACEHOLDER_URLS:
            text = text.replace(placeholder, self.server.base)
        for placeholder in SESSION_BUDDY_PLACEHOLDER_URLS:
            text = text.replace(placeholder, self.session_buddy.base)
        return text, self.session_buddy_env if addresses_session_buddy(text) else self.env


LOOSE_RATE_LIMITS = {
    "RATE_LIMIT_PER_MINUTE": "100000",
    "RATE_LIMIT_PER_HOUR": "1000000",
    "RATE_LIMIT_BURST": "100000",
}


def start_session_buddy(workdir: Path) -> tuple[RunningServer, dict[str, str]]:
    """A real Session-Buddy in production mode (auth on, an encryption key, SQLite in its own
    folder), and the SESSION_BUDDY_* settings an operator's shell would have for it."""
    data = workdir / "session-buddy"
    data.mkdir()
    settings = {
        "SESSION_BUDDY_ENV": "production",
        "SESSION_BUDDY_AUTH_SECRET": SECRET,
        "SESSION_ENCRYPTION_KEY": ENCRYPTION_KEY,
    }
    server = spawn_session_buddy(data, session_buddy_env(data, **settings, **LOOSE_RATE_LIMITS))
    wait_ready(server, timeout=60)
    shell = {
        **settings,
        "SESSION_BUDDY_CONFIG": server.env["SESSION_BUDDY_CONFIG"],
        "SESSION_BUDDY_DATA_DIR": server.env["SESSION_BUDDY_DATA_DIR"],
        "SESSION_BUDDY_PORT": str(server.port),
        "SESSION_BUDDY_URL": server.base,
    }
    return server, shell


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A real server in production mode (auth on) over a small fleet, and the environment an
    operator's shell would have: the same settings, MAHAVISHNU_URL and a token."""
    workdir = tmp_path_factory.mktemp("doc-commands")
    manifest = make_repos(workdir, standard_specs())
    port = free_port()
    env = base_env(
        workdir,
        manifest,
        {
            "MAHAVISHNU_ENV": "production",
            "MAHAVISHNU_AUTH_SECRET": SECRET,
            "MAHAVISHNU_DATA_DIR": str(workdir / "var"),
            "MAHAVISHNU_PORT": str(port),
        },
    )
    server = start_server(workdir, env, port=port)
    session_buddy, session_buddy_shell = start_session_buddy(workdir)
    try:
        shell_env = {
            **env,
            **session_buddy_shell,
            "MAHAVISHNU_URL": server.base,
            "MAHAVISHNU_TOKEN": hs256(claims(sub="doc-tests", role="admin", exp=int(1e10))),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "NO_COLOR": "1",
            "COLUMNS": "160",
        }
        buddy_token = hs256(claims(sub="doc-tests", role="admin", exp=int(1e10), aud="session-buddy"))
        yield Live(server, shell_env, workdir, session_buddy, {**shell_env, "MAHAVISHNU_TOKEN": buddy_token})
    finally:
        session_buddy.stop()
        server.stop()


def all_lines(docs: tuple[str, ...] = ALL_DOCS) -> list[CommandLine]:
    return [line for doc in docs for line in doc_commands(doc)]


# --- (a) sub-commands and options exist ---------------------------------------------------------------


@pytest.mark.parametrize("doc", ALL_DOCS)
def test_every_mahavishnu_command_names_real_subcommands_and_options(doc: str) -> None:
    checked = [check_line(line) for line in doc_commands(doc)]
    errors = [e for c in checked for e in c.errors]
    assert not errors, "commands that do not exist:\n" + "\n".join(errors)
    count = sum(len(c.invocations) for c in checked)
    assert count >= (5 if doc in DOCS else 1), f"only {count} mahavishnu commands found in {doc}"


def test_help_of_every_documented_command_path() -> None:
    """`python -m mahavishnu PATH --help` answers for every path the documents use."""
    paths = sorted({inv.path for line in all_lines() for inv in check_line(line).invocations})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "RATE_LIMIT_"))}

    def run(path: tuple[str, ...]) -> tuple[tuple[str, ...], subprocess.CompletedProcess[str]]:
        result = subprocess.run(
            [sys.executable, "-m", "mahavishnu", *path, "--help"],
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        return path, result

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, paths))
    failures = [
        f"mahavishnu {' '.join(p)} --help -> {r.returncode}\n{r.stderr}" for p, r in results if r.returncode
    ]
    assert not failures, "\n".join(failures)
    assert len(paths) >= 15, paths


def test_scripts_are_called_with_the_arguments_they_take() -> None:
    errors = [e for line in all_lines() for e in script_errors(line)]
    assert not errors, "\n".join(errors)


# --- (b) referenced files exist ----------------------------------------------------------------------

_REPO_PATH = re.compile(r"(?<![\w./-])(?:\./)?((?:scripts|deploy)/[\w.-][\w./-]*)")


@pytest.mark.parametrize("doc", ALL_DOCS)
def test_every_referenced_script_and_deploy_file_exists(doc: str) -> None:
    missing = []
    for number, text in enumerate((ROOT / doc).read_text().splitlines(), start=1):
        for match in _REPO_PATH.finditer(text):
            path = match.group(1).rstrip("./,:")
            if not (ROOT / path).exists():
                missing.append(f"{doc}:{number}: {path}")
    assert not missing, "\n".join(missing)


# --- (c) the read-only commands run --------------------------------------------------------------------


@pytest.mark.timeout(600)  # some 60 commands against two servers; a guard, not a goal
def test_read_only_commands_run_against_a_real_server(live: Live) -> None:
    plans: dict[str, Plan] = {}
    skipped: list[str] = []
    for line in all_lines():
        found = plan(line)
        if found is None:
            continue
        if not all(available(program) for program in found.programs):
            skipped.append(f"{line.where}: {line.text} (a program is not installed)")
            continue
        plans.setdefault(found.shape, found)

    def run(item: Plan) -> tuple[Plan, subprocess.CompletedProcess[str]]:
        shell, env = live.for_line(item.line.text)
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", shell],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        return item, result

    ordered = sorted(plans.values(), key=lambda p: not p.first)
    results = [run(p) for p in ordered if p.first]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results += list(pool.map(run, [p for p in ordered if not p.first]))

    failures = [
        f"{item.line.where}: {item.line.text}\n  exit {result.returncode}\n"
        f"  stdout: {result.stdout[-1500:]}\n  stderr: {result.stderr[-1500:]}"
        for item, result in results
        if result.returncode != 0
    ]
    assert not failures, f"{len(failures)} documented command(s) failed:\n" + "\n".join(failures)

    executed = {item.line.text for item, _ in results}
    assert len(executed) >= MIN_EXECUTED, (sorted(executed), skipped)

    def heads(texts: set[str]) -> set[str]:
        return {" ".join(split_assignments(simple_commands(text)[0])[1]).removeprefix("./") for text in texts}

    ran = heads(executed)
    missing = [kind for kind in MUST_RUN if not any(h.startswith(kind) for h in ran)]
    assert not missing, f"no runnable documented command of kind {missing}; ran: {sorted(executed)}"
    ran = heads({text for text in executed if addresses_session_buddy(text)})
    missing = [kind for kind in SESSION_BUDDY_MUST_RUN if not any(h.startswith(kind) for h in ran)]
    assert not missing, f"no runnable documented Session-Buddy command of kind {missing}; ran: {sorted(ran)}"


# --- the documents' own promises ---------------------------------------------------------------------


def github_slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def alert_rules() -> list[dict[str, object]]:
    groups = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_runbook_has_a_section_for_every_alert_with_diagnose_fix_and_confirm() -> None:
    text = (ROOT / "docs/RUNBOOK.md").read_text()
    sections = re.split(r"^## ", text, flags=re.M)
    by_slug = {github_slug(s.splitlines()[0]): s for s in sections[1:]}
    rules = alert_rules()
    assert len(rules) >= 10
    problems = []
    for rule in rules:
        name = str(rule["alert"])
        annotation = str(rule["annotations"]["runbook"])  # type: ignore[index]
        if annotation != f"docs/RUNBOOK.md#{name.lower()}":
            problems.append(f"{name}: runbook annotation {annotation}")
        section = by_slug.get(name.lower())
        if section is None:
            problems.append(f"{name}: no section with the heading `## {name}`")
            continue
        for part in ("### What it means", "### Diagnose", "### Fix", "### Confirm it cleared"):
            if part not in section:
                problems.append(f"{name}: no `{part}`")
        for part in ("### Diagnose", "### Fix"):
            after = section.split(part, 1)[-1].split("\n### ", 1)[0]
            if "```sh" not in after and "```promql" not in after:
                problems.append(f"{name}: `{part}` has no command")
    assert not problems, "\n".join(problems)


def exported_metric_names(*bases: str) -> set[str]:
    """Every series name the servers at `bases` export, `up`, and the recording rules."""
    import httpx

    names = {"up"}
    lines = [line for base in bases for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines()]
    for line in lines:
        match = re.match(r"^# TYPE (\S+) (\w+)", line)
        if match:
            names.add(match[1])
            if match[2] == "histogram":
                names.update(f"{match[1]}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    for group in yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())["groups"]:
        names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


def doc_promql() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for block in read_blocks(doc):
            if block.lang == "promql":
                found.append((f"{doc}:{block.line}", block.text.strip()))
            elif block.lang == "sh":
                for line in command_lines(block):
                    for token in tokens(line.text):
                        if token.startswith("query="):
                            found.append((line.where, token.removeprefix("query=")))
    return found


@pytest.fixture(scope="module")
def akosha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A real Akosha on its defaults (its /metrics is what the documents' Akosha queries use)."""
    data = tmp_path_factory.mktemp("doc-akosha")
    server = spawn_akosha(data, akosha_env(data))
    wait_ready(server, timeout=60)
    yield server
    server.stop()


def test_promql_is_valid_and_uses_only_exported_metrics(
    live: Live, akosha: RunningServer, tmp_path: Path
) -> None:
    queries = doc_promql()
    assert len(queries) >= 15
    exported = exported_metric_names(live.server.base, live.session_buddy.base, akosha.base)
    unknown = [
        f"{where}: {sorted(promql_metric_names(expr) - exported)} in {expr}"
        for where, expr in queries
        if promql_metric_names(expr) - exported
    ]
    assert not unknown, "metrics the server does not export:\n" + "\n".join(unknown)

    promtool = require_tool("promtool", apt="prometheus")  # in CI installed, elsewhere a skip
    rules = {
        "groups": [
            {
                "name": "docs",
                "rules": [{"record": f"doc:query_{i}", "expr": q} for i, (_, q) in enumerate(queries)],
            }
        ]
    }
    path = tmp_path / "doc_queries.yml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def setting_env_names() -> dict[str, str]:
    """Each setting's canonical environment variable (the deployment name when it has one):
    Mahavishnu's, and the settings Session-Buddy has beyond the platform's."""
    own = set(SessionBuddySettings.model_fields) - set(PlatformSettings.model_fields)
    buddy = {f"session-buddy {k}": v for k, v in SessionBuddySettings.env_names().items() if k in own}
    return {**MahavishnuSettings.env_names(), **buddy}


def session_buddy_deploy_env_names() -> set[str]:
    """The variables the Session-Buddy entries of deploy/ set (compose, Kubernetes, Cloud Run)."""
    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())["services"]["session-buddy"]
    names = set(compose["environment"])
    config = yaml.safe_load((ROOT / "deploy/k8s/session-buddy-configmap.yaml").read_text())["data"]
    deployment = yaml.safe_load((ROOT / "deploy/k8s/session-buddy-deployment.yaml").read_text())
    cloud_run = yaml.safe_load((ROOT / "deploy/cloudrun/session-buddy.yaml").read_text())
    containers = [
        *deployment["spec"]["template"]["spec"]["containers"],
        *cloud_run["spec"]["template"]["spec"]["containers"],
    ]
    names |= set(config) | {item["name"] for c in containers for item in c["env"]}
    assert len(names) >= 15, names
    return names


def deploy_script_env_names() -> set[str]:
    header = (ROOT / "scripts/deploy_production.sh").read_text().split("# Environment", 1)[1]
    header = header.split("# Exit codes", 1)[0]
    return set(re.findall(r"(?:^#   |, )([A-Z][A-Z0-9_]+)\b", header, flags=re.M))


def compose_env_names() -> set[str]:
    text = (ROOT / "deploy/compose.yaml").read_text()
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text)) | set(
        re.findall(r"environment: ([A-Z][A-Z0-9_]*)", text)
    )


def test_guide_documents_every_environment_variable() -> None:
    text = (ROOT / GUIDE).read_text()

    def documented(name: str) -> bool:
        return re.search(rf"(?<![A-Z0-9_]){re.escape(name)}(?![A-Z0-9_])", text) is not None

    settings = setting_env_names()
    script, compose = deploy_script_env_names(), compose_env_names()
    assert len(script) >= 25, script
    missing = [f"{v} (setting {k})" for k, v in settings.items() if not documented(v)]
    missing += [f"{v} (scripts/deploy_production.sh)" for v in sorted(script) if not documented(v)]
    missing += [f"{v} (deploy/compose.yaml)" for v in sorted(compose) if not documented(v)]
    buddy = session_buddy_deploy_env_names()
    missing += [f"{v} (Session-Buddy's deploy files)" for v in sorted(buddy) if not documented(v)]
    assert not missing, "undocumented environment variables:\n" + "\n".join(missing)
    for secret in (
        "MAHAVISHNU_AUTH_SECRET",
        "POSTGRES_URL",
        "REDIS_URL",
        "MAHAVISHNU_BACKUP_ENCRYPTION_KEY",
        "SESSION_BUDDY_AUTH_SECRET",
        "SESSION_ENCRYPTION_KEY",
    ):
        rows = [row for row in text.splitlines() if row.startswith("|") and f"`{secret}`" in row]
        assert rows, f"{secret} has no row in the guide's tables"
        assert any("🔒" in row for row in rows), f"{secret} is not marked as a secret (🔒)"


def test_settings_example_loads_as_written_and_holds_no_secret(tmp_path: Path) -> None:
    examples = [
        b.text
        for b in read_blocks(GUIDE)
        if b.lang == "yaml" and b.text.lstrip().startswith("# settings/production.yaml")
    ]
    assert len(examples) == 1
    settings_dir = tmp_path / "settings"
    settings_dir.mkdir()
    (settings_dir / "production.yaml").write_text(examples[0])
    expected = yaml.safe_load(examples[0])
    secrets = {"auth_secret", "backup_encryption_key", "redis_url", "database_url"}
    assert not secrets & set(expected), "a secret in the settings example"
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", examples[0]), "a credential URL in the settings example"

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "RATE_LIMIT_"))}
    env.pop("REDIS_URL", None)
    env.pop("POSTGRES_URL", None)
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    env.update(
        {
            "MAHAVISHNU_CONFIG": str(settings_dir / "mahavishnu.yaml"),
            "MAHAVISHNU_ENV": "production",
            "MAHAVISHNU_AUTH_SECRET": SECRET,
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "mahavishnu", "config", "show", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    differing = {k: (v, effective.get(k)) for k, v in expected.items() if effective.get(k) != v}
    assert not differing, f"settings the example sets but the process does not use: {differing}"


@pytest.mark.parametrize("doc", DOCS)
def test_yaml_examples_parse_and_docs_state_their_conventions(doc: str) -> None:
    text = (ROOT / doc).read_text()
    assert text.startswith("<!--"), f"{doc} does not open with its conventions comment"
    assert "tests/docs/test_doc_commands.py" in text.split("-->", 1)[0]
    for block in read_blocks(doc):
        if block.lang == "yaml":
            yaml.safe_load(block.text)
        assert block.lang in {"sh", "sh-example", "text", "promql", "yaml", "ini", "crontab", "json"}, (
            f"{doc}:{block.line}: unknown block language {block.lang!r}"
        )


def heading_slugs(doc: str) -> set[str]:
    """GitHub's anchors for the headings of a document (fenced blocks skipped, repeats numbered)."""
    slugs: set[str] = set()
    fenced = False
    for line in (ROOT / doc).read_text().splitlines():
        if _FENCE_OPEN.match(line) or _FENCE_CLOSE.match(line):
            fenced = not fenced
            continue
        heading = re.match(r"^#{1,6} (.+)$", line)
        if heading and not fenced:
            slug, n = github_slug(heading[1]), 0
            while (candidate := slug if n == 0 else f"{slug}-{n}") in slugs:
                n += 1
            slugs.add(candidate)
    return slugs


@pytest.mark.parametrize("doc", DOCS)
def test_links_between_the_documents_resolve(doc: str) -> None:
    text = (ROOT / doc).read_text()
    broken = []
    for target, anchor in re.findall(r"\]\(([\w./-]*)(?:#([\w-]+))?\)", text):
        path = (ROOT / doc).parent / target if target else ROOT / doc
        if target.startswith(("http:", "https:")):
            continue
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and anchor not in heading_slugs(str(path.relative_to(ROOT))):
            broken.append(f"{target}#{anchor}")
    assert not broken, f"{doc}: broken links: {broken}"
