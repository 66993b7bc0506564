"""The quick path of manifest validation gives the node path's answer, and is taken when it can be.

`validate_manifest` reads a manifest with yaml_rs (YAML 1.2) when `plain_repos`
promises the reading equals PyYAML's safe loader's (YAML 1.1), and composes
nodes otherwise. Every case here is validated both ways (`validate_nodes` is the
node path alone) and must give the same manifest or the same problems, word for
word; the table also says which texts the quick path must take, so a quick path
that silently never runs fails too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mahavishnu.orchestrator import manifest_validation
from mahavishnu.orchestrator.manifest_fast import plain_repos
from mahavishnu.orchestrator.manifest_model import Repo
from mahavishnu.orchestrator.manifest_validation import validate_manifest, validate_nodes
from mahavishnu.orchestrator.manifest_yaml import implicit_tag
from mahavishnu.orchestrator.settings import DEFAULT_ROLES

SOURCE = "repos.yaml"
ROOT = "/nonexistent-mahavishnu-root"
"""Paths need not exist to be confined: resolving a missing folder keeps its spelling."""

GOOD = f"""\
# the fleet
repos:
  - name: alpha
    nickname: a
    package: alpha-pkg
    path: {ROOT}/alpha
    role: app
    tags: [web, python]
    description: "The first: with a colon, quoted"
    mcp: server
  - name: beta
    path: '{ROOT}/beta'
    tags:
      - cli
    description: >
      Folded over
      two lines.
  - {{name: gamma, path: {ROOT}/gamma, nickname: ~, role: null, tags: []}}
"""


def entry(**fields: str) -> str:
    """One entry under `repos:`, every value written as given (so unquoted unless quoted here)."""
    lines = [f"{key}: {value}" for key, value in {"name": "x", "path": f"{ROOT}/x", **fields}.items()]
    return "repos:\n  - " + "\n    ".join(lines) + "\n"


# (id, text, whether the quick path reads it)
CASES = [
    ("good", GOOD, True),
    ("empty list", "repos: []\n", True),
    ("crlf line ends", GOOD.replace("\n", "\r\n"), True),
    ("unicode description", entry(description="Ünïcödé ✓ 𝄞"), True),
    ("escapes in double quotes", entry(description='"tab\\there \\u00e9 \\/ \\x41"'), True),
    ("block literal", entry(description="|\n      one\n      two\n"), True),
    ("multi-line plain", entry(description="first\n      second\n\n      third"), True),
    ("document markers", "---\n" + entry() + "...\n", True),
    ("json-like flow entry", f'repos: [{{"name":x, "path":{ROOT}/x}}]\n', True),
    ("flow without spaces", f"repos: [{{name: x,path: {ROOT}/x, tags: [a,b]}}]\n", True),
    ("block indentation indicator", entry(description="|2-\n       indented"), True),
    ("folded with blank lines", entry(description=">\n\n      folded\n     \n      more\n"), True),
    ("colon inside values", entry(description="a:b", package="x:y"), True),
    ("comments everywhere", "repos: # list\n  - name: x # n\n    path: " + ROOT + "/x # p\n", True),
    ("description with R&D! and 2*3", entry(description="R&D! 2*3"), True),
    # problems found by the rules on plain values: worded by the node path
    ("duplicate names", entry() + f"  - name: X\n    path: {ROOT}/y\n", True),
    ("path outside the roots", entry(path="/elsewhere/x"), True),
    ("relative path", entry(path="x"), True),
    ("unknown role", entry(role="wizard"), True),
    ("bad tag", entry(tags="[Web]"), True),
    ("repeated tag", entry(tags="[web, web]"), True),
    ("bad mcp", entry(mcp="maybe"), True),
    ("bad name", entry(name="-x"), True),
    ("null name", entry(name="~"), True),
    ("missing path", "repos:\n  - name: x\n", True),
    ("nickname is another's name", entry(nickname="y") + f"  - name: y\n    path: {ROOT}/y\n", True),
    # YAML 1.1 and 1.2 read these differently: only the node path reads them
    ("role: no", entry(role="no"), False),
    ("tags: [on]", entry(tags="[on, yes]"), False),
    ("name: 0o17", entry(name="0o17"), False),
    ("name: 017", entry(name="017"), False),
    ("name: 1:20", entry(name="1:20"), False),
    ("name: 0x1f", entry(name="0x1f"), False),
    ("name: 1_000", entry(name="1_000"), False),
    ("name: .inf", entry(name=".inf"), False),
    ("name: =", entry(name="="), False),
    ("timestamp", entry(description="2001-12-14"), False),
    ("quoted 'no' is a string in both", entry(role="'no'"), False),
    ("merge key", f"base: &b {{role: app}}\nrepos:\n  - <<: *b\n    name: x\n    path: {ROOT}/x\n", False),
    ("merge key alone", entry() + "    <<: {role: app}\n", False),
    ("anchor and alias", f"repos:\n  - name: &n x\n    path: {ROOT}/x\n    nickname: *n\n", False),
    ("a lone * in a description (could be an alias)", entry(description="a * star"), False),
    ("flow key without a space (a key 'name:x')", f"repos: [{{name:x, path: {ROOT}/x}}]\n", False),
    (
        "lone dash in flow (yaml_rs refuses it)",
        f"repos: [{{name: x, path: {ROOT}/x, description: -}}]\n",
        False,
    ),
    ("tag dropped by yaml_rs", entry(name="!custom x"), False),
    ("str tag", entry(name="!!str 12"), False),
    ("directive", "%YAML 1.1\n---\n" + entry(), False),
    ("repeated key", entry() + "    name: y\n", False),
    ("repeated quoted key", entry() + "    'name': y\n", False),
    ("repeated top-level key", entry() + "repos: []\n", False),
    ("tab", entry(description="a\tb"), False),
    ("tab indentation", "repos:\n\t- name: x\n", False),
    ("bom", "\ufeff" + entry(), False),
    ("nel", entry(description="a\x85b"), False),
    ("line separator", entry(description="a\u2028b"), False),
    ("control character", entry(description="a\x01b"), False),
    ("lone surrogate", entry(description="a\udcffb"), False),
    ("empty file", "", False),
    ("only a comment", "# nothing\n", False),
    ("top-level list", f"- name: x\n  path: {ROOT}/x\n", False),
    ("two documents", entry() + "---\n" + entry(), False),
    ("repos: null", "repos:\n", False),
    ("unknown top-level key", entry() + "extra: 1\n", False),
    ("unknown field", entry(colour="red"), False),
    ("number description", entry(description="12"), False),
    ("list name", entry(name="[a]"), False),
    ("tags as a string", entry(tags="web"), False),
    ("null tag", entry(tags="[~]"), False),
    ("complex key", "repos:\n  - ? [name]\n    : x\n", False),
    ("invalid yaml", "repos: [\n", False),
    ("deep flow nesting", "repos: " + "[" * 300 + "]" * 300 + "\n", False),
    ("deep block nesting", "repos:\n" + "- " * 100 + "x\n", False),
]


def both_ways(text: str, roots: list[Path] | None = None) -> tuple[object, object]:
    kwargs = {"allowed_roots": roots or [Path(ROOT)], "roles": DEFAULT_ROLES}
    return validate_manifest(text, SOURCE, **kwargs), validate_nodes(text, SOURCE, **kwargs)


@pytest.mark.parametrize(("text", "quick"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_the_quick_path_gives_the_node_paths_answer(text: str, quick: bool) -> None:
    assert (plain_repos(text) is not None) == quick
    answer, reference = both_ways(text)
    assert answer == reference


def test_a_good_manifest_is_read_without_composing_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_nodes(text: str) -> None:
        raise AssertionError("the node path ran")

    monkeypatch.setattr(manifest_validation, "compose", no_nodes)
    manifest, problems = validate_manifest(GOOD, SOURCE, allowed_roots=[Path(ROOT)], roles=DEFAULT_ROLES)
    assert problems == []
    assert manifest is not None
    assert [repo.name for repo in manifest] == ["alpha", "beta", "gamma"]
    monkeypatch.undo()
    # The lines of paths, for messages about folders, are composed when first asked for.
    reference, _ = validate_nodes(GOOD, SOURCE, allowed_roots=[Path(ROOT)], roles=DEFAULT_ROLES)
    assert reference is not None
    assert [manifest.line_of(repo) for repo in manifest] == [6, 12, 18]
    assert [reference.line_of(repo) for repo in reference] == [6, 12, 18]


def test_a_symlink_escaping_the_roots_is_refused_on_the_quick_path_too(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    text = f"repos:\n  - name: x\n    path: {root}/escape\n"
    assert plain_repos(text) is not None
    (manifest, problems), reference = both_ways(text, [root])
    assert (manifest, problems) == reference
    assert manifest is None
    assert [problem.setting for problem in problems] == ["allowed_roots"]


def test_no_field_name_is_read_as_anything_but_a_string() -> None:
    """The quick path compares keys with field names as strings: PyYAML must read them so."""
    assert [name for name in [*Repo.model_fields, "repos"] if implicit_tag(name) is not None] == []


def test_block_nesting_that_would_crash_yaml_rs_is_left_to_the_node_path() -> None:
    text = "repos:\n" + "- " * 50_000 + "x\n"
    assert plain_repos(text) is None
    manifest, problems = validate_manifest(text, SOURCE, allowed_roots=[Path(ROOT)], roles=DEFAULT_ROLES)
    assert manifest is None
    assert len(problems) == 1


# --- the parity rule over generated manifests ---------------------------------------------

SCALARS = [
    "no", "No", "yes", "on", "OFF", "y", "n", "true", "False", "null", "~", "", "0", "017", "0o17",
    "0x1f", "1_000", "1:20", "-1", "+1", "1.5", "1e3", ".inf", ".NaN", "2001-12-14",
    "2001-12-14t21:59:43.10-05:00", "<<", "=", "app", "tool", "web", "x y", "a: b", "a #b", "a#b",
    "-a", "?a", ":a", "é", "'", '"', "\\", "a\\nb", "server", "none",
]  # fmt: skip
STYLES = ["{}", "'{}'", '"{}"', "|\n      {}", ">-\n      {}", "[{}]", "[{}, web]"]
FIELD_NAMES = ["nickname", "package", "role", "tags", "description", "mcp"]
parity = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def written(value: str, style: str) -> str | None:
    """`value` in a YAML style, or None where that style cannot hold it."""
    if style.startswith("'"):
        value = value.replace("'", "''")
    elif style.startswith('"'):
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    elif style.startswith(("|", ">")):
        return style.format(value) if value.strip() == value and value else None
    return style.format(value)


@st.composite
def manifests(draw: st.DrawFn) -> str:
    entries = []
    for index in range(draw(st.integers(1, 3))):
        fields = [f"name: r{index}", f"path: {ROOT}/r{index}"]
        for name in draw(st.lists(st.sampled_from(FIELD_NAMES), unique=True, max_size=4)):
            value = written(draw(st.sampled_from(SCALARS)), draw(st.sampled_from(STYLES)))
            if value is not None:
                fields.append(f"{name}: {value}")
        entries.append("  - " + "\n    ".join(draw(st.permutations(fields))))
    return "repos:\n" + "\n".join(entries) + "\n"


@parity
@given(manifests())
def test_generated_manifests_get_the_same_answer_both_ways(text: str) -> None:
    answer, reference = both_ways(text)
    assert answer == reference


plain_fields = st.dictionaries(
    st.sampled_from(FIELD_NAMES), st.text(max_size=12) | st.lists(st.text(max_size=6), max_size=3)
)


@parity
@given(st.fixed_dictionaries({"repos": st.lists(plain_fields, max_size=3)}))
def test_dumped_structures_get_the_same_answer_both_ways(data: dict[str, list[dict[str, object]]]) -> None:
    for index, fields in enumerate(data["repos"]):
        fields.update(name=f"r{index}", path=f"{ROOT}/r{index}")
    text = yaml.safe_dump(data, allow_unicode=True)
    answer, reference = both_ways(text)
    assert answer == reference
