"""The quick ways of the manifest loader give the answers of the slow ones they replace.

`RealPaths` caches parent folders where `os.path.realpath` looks at every component;
`compose` uses libyaml and its own tag lookup where PyYAML's pure-Python safe loader
was used. Both are compared with the originals over odd inputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mahavishnu.orchestrator.manifest_paths import RealPaths, within
from mahavishnu.orchestrator.manifest_yaml import compose, gc_paused

COMPONENTS = ["real", "dir-link", "file-link", "dangling", "loop", "up", "abs-link", "x", ".", "..", ""]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folders and every kind of symlink a manifest path may cross."""
    root = tmp_path_factory.mktemp("tree")
    (root / "real" / "real").mkdir(parents=True)
    (root / "real" / "file").write_text("x")
    for folder in (root, root / "real"):
        (folder / "dir-link").symlink_to("real")
        (folder / "file-link").symlink_to("real/file" if folder == root else "file")
        (folder / "dangling").symlink_to("nowhere")
        (folder / "loop").symlink_to("loop")
        (folder / "up").symlink_to("..")
        (folder / "abs-link").symlink_to(root / "real")
    return root


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=5), min_size=1, max_size=6))
def test_real_paths_agree_with_realpath(tree: Path, paths: list[list[str]]) -> None:
    resolve = RealPaths()  # one instance for several paths, so cached parents are reused
    for components in paths:
        path = os.path.join(str(tree), *components)
        assert resolve(path) == os.path.realpath(path), path


def test_real_paths_see_a_symlink_the_parent_listing_lacks(tmp_path: Path) -> None:
    """Names missing from a parent's listing (made later, or spelled in another case on a
    case-insensitive file system) are looked at directly, so none escapes unresolved."""
    parent, outside = tmp_path / "repos", tmp_path / "outside"
    parent.mkdir()
    outside.mkdir()
    (parent / "a").mkdir()
    (parent / "b").symlink_to(outside)
    resolve = RealPaths()
    assert [resolve(str(parent / name)) for name in ("a", "b", "a", "b")] == [
        str(parent / "a"), str(outside), str(parent / "a"), str(outside),
    ]  # fmt: skip
    (parent / "late").symlink_to(outside)  # after the listing was read
    assert resolve(str(parent / "late")) == str(outside)


def test_within_compares_whole_folder_names() -> None:
    assert within("/srv/repos", ["/srv/repos"])
    assert within("/srv/repos/a", ["/srv/repos"])
    assert not within("/srv/repos-old/a", ["/srv/repos"])
    assert within("/anything", ["/"])
    assert not within("/srv", [])


def tags_and_values(node: yaml.Node) -> list[tuple[str, str, int, int]]:
    """Every node's tag, scalar value and position, depth first."""
    found = []
    stack = [node]
    while stack:
        current = stack.pop()
        value = current.value if isinstance(current, yaml.ScalarNode) else type(current).__name__
        found.append((current.tag, value, current.start_mark.line, current.start_mark.column))
        if isinstance(current, yaml.SequenceNode):
            stack.extend(reversed(current.value))
        elif isinstance(current, yaml.MappingNode):
            stack.extend(item for pair in reversed(current.value) for item in reversed(pair))
    return found


SCALARS = [
    "a", "~", "null", "Null", "", "yes", "No", "on", "0x1F", "0o7", "1_000", "-1.5e3", ".inf", ".NaN",
    "2001-12-14", "2001-12-14t21:59:43.10-05:00", "<<", "=", "12:30:45", "+12", "'q'", '"d"', "!!str 1",
    "!custom x", "&a v", "*a", "/abs/path", "café",
]  # fmt: skip


def outcome(action: Callable[[], yaml.Node | None]) -> object:
    """What composing gave: every node's tag, value and position, or the refusal's type and words."""
    try:
        node = action()
    except yaml.YAMLError as exc:
        return type(exc), str(exc)
    return None if node is None else tags_and_values(node)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SCALARS), min_size=1, max_size=12))
def test_compose_resolves_tags_as_the_safe_loader_does(scalars: list[str]) -> None:
    text = "repos:\n" + "".join(f"  - {{key: {value}, {value}: [{value}]}}\n" for value in scalars)
    expected = outcome(lambda: yaml.compose(text, Loader=yaml.SafeLoader))
    assert outcome(lambda: compose(text)) == expected


def test_compose_reports_refusals_in_the_pure_python_parsers_words() -> None:
    text = "repos:\n  - name: a\n   path: /x\n"
    with pytest.raises(yaml.YAMLError) as pure:
        yaml.compose(text, Loader=yaml.SafeLoader)
    with pytest.raises(yaml.YAMLError) as ours:
        compose(text)
    assert str(ours.value) == str(pure.value)


def test_gc_paused_restores_the_collector_as_it_found_it() -> None:
    import gc

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
