"""completion/complete over real HTTP with the official client: repository names for `repo://{name}`
(only in the caller's tag scope), and the `run_workflow` prompt's workflows, filters and parameters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from mcp_types import PromptReference, ResourceTemplateReference

from tests.support.client import mcp_client
from tests.support.repos import make_repos, standard_specs
from tests.support.server import SECRET, RunningServer, base_env, start_server
from tests.support.tokens import claims, hs256

REPO = ResourceTemplateReference(type="ref/resource", uri="repo://{name}")
RUN = PromptReference(type="ref/prompt", name="run_workflow")
WORKFLOWS = {
    "checkout": {
        "argv": ["git", "checkout", "{branch}"],
        "params": {
            "branch": {"pattern": "[A-Za-z0-9._/-]+"},
            "force": {"type": "boolean", "required": False},
        },
    },
    "deploy": {"argv": ["true"], "admin_only": True},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Auth on; 120 generated repositories beside the standard five; two configured workflows."""
    workdir = tmp_path_factory.mktemp("completion")
    config = workdir / "mahavishnu.yaml"
    config.write_text(yaml.safe_dump({"workflows": WORKFLOWS}))
    env = base_env(
        workdir,
        make_repos(workdir, standard_specs(120)),
        {"MAHAVISHNU_AUTH_SECRET": SECRET, "MAHAVISHNU_CONFIG": str(config)},
    )
    running = start_server(workdir, env)
    yield running
    running.stop()


def token(role: str = "viewer", tags: list[str] | None = None) -> str:
    return hs256(claims(sub=f"{role}-{'-'.join(tags or ['all'])}", role=role, tags=tags))


async def complete(
    server: RunningServer,
    ref: ResourceTemplateReference | PromptReference,
    argument: str,
    value: str,
    *,
    bearer: str | None = None,
    chosen: dict[str, str] | None = None,
) -> tuple[list[str], int | None, bool | None]:
    async with mcp_client(server.url, bearer or token()) as client:
        assert client.server_capabilities.completions is not None
        result = (await client.complete(ref, {"name": argument, "value": value}, chosen)).completion
    return result.values, result.total, result.has_more


async def test_repo_template_is_published(server: RunningServer) -> None:
    async with mcp_client(server.url, token()) as client:
        templates = (await client.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["repo://{name}"]


async def test_repo_names_and_nicknames_complete_by_prefix_in_any_case(server: RunningServer) -> None:
    assert (await complete(server, REPO, "name", "AK"))[0] == ["ako", "akosha"]
    assert (await complete(server, REPO, "name", "vi"))[0] == ["vishnu"]
    assert (await complete(server, REPO, "name", "zzz"))[0] == []


async def test_a_scoped_token_is_offered_only_names_inside_its_tags(server: RunningServer) -> None:
    web = token(tags=["web"])
    assert (await complete(server, REPO, "name", "", bearer=web)) == (["fastblocks", "webui"], 2, False)
    assert (await complete(server, REPO, "name", "ak", bearer=web))[0] == []
    assert (await complete(server, RUN, "repos", "", bearer=web))[0] == ["fastblocks", "webui"]
    assert (await complete(server, RUN, "tag", "", bearer=web))[0] == ["python", "typescript", "web"]
    assert (await complete(server, RUN, "role", "", bearer=web))[0] == ["app"]


async def test_at_most_100_values_with_the_total(server: RunningServer) -> None:
    values, total, more = await complete(server, REPO, "name", "gen-")
    assert len(values) == 100
    assert total == 120
    assert more is True
    assert values == sorted(values)


async def test_workflow_names_follow_the_callers_role(server: RunningServer) -> None:
    viewer = (await complete(server, RUN, "workflow", ""))[0]
    assert {"git-status", "git-pull", "checkout", "agent"} <= set(viewer)
    assert "deploy" not in viewer
    admin = (await complete(server, RUN, "workflow", "de", bearer=token("admin")))[0]
    assert admin == ["deploy"]


async def test_workflow_parameters_complete_with_their_known_values(server: RunningServer) -> None:
    chosen = {"workflow": "checkout"}
    assert (await complete(server, RUN, "params", "", chosen=chosen))[0] == [
        "branch=",
        "force=false",
        "force=true",
    ]
    after = (await complete(server, RUN, "params", "branch=main f", chosen=chosen))[0]
    assert after == ["branch=main force=false", "branch=main force=true"]
    assert (await complete(server, RUN, "params", "", chosen={"workflow": "deploy"}))[0] == []
    assert (await complete(server, RUN, "params", "", chosen={"workflow": "nope"}))[0] == []


async def test_multiple_repositories_complete_after_a_comma(server: RunningServer) -> None:
    assert (await complete(server, RUN, "repos", "webui,fa"))[0] == ["webui,fastblocks"]


async def test_unknown_references_get_an_empty_list(server: RunningServer) -> None:
    unknown = PromptReference(type="ref/prompt", name="test_prompt_with_arguments")
    assert await complete(server, unknown, "arg1", "test") == ([], 0, False)
    assert (await complete(server, REPO, "other", ""))[0] == []


async def test_the_prompt_spells_out_the_tool_call(server: RunningServer) -> None:
    async with mcp_client(server.url, token()) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert [a.name for a in prompts["run_workflow"].arguments or []] == [
            "workflow",
            "tag",
            "role",
            "repos",
            "params",
        ]
        got = await client.get_prompt(
            "run_workflow", {"workflow": "checkout", "repos": "webui, akosha", "params": "branch=main"}
        )
    text = got.messages[0].content.text  # type: ignore[union-attr]
    assert '{"workflow": "checkout", "repos": ["webui", "akosha"], "params": {"branch": "main"}}' in text
    assert "get_workflow_status" in text
