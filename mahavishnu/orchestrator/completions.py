"""What Mahavishnu suggests as a user types: repository names, and workflows with their arguments.

MCP completes the arguments of resource templates and prompts. Mahavishnu has one template,
`repo://{name}` (names and nicknames), and one prompt, `run_workflow`, which a client shows as a
command: it asks the model to run a workflow with `trigger_workflow` and report the outcome.
Its arguments complete to the workflows the caller may run (admin-only ones for admins only),
the tags, roles and names of the repositories in the caller's scope, and the chosen workflow's
parameters (`name=`; `name=true`/`name=false` for a boolean, the only kind whose values are a
known set). Nothing outside the caller's tag scope is ever offered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt
from pydantic import Field

from mahavishnu.orchestrator.manifest import ManifestStore
from mahavishnu.orchestrator.manifest_model import Repo
from mahavishnu.orchestrator.workflows.definitions import WorkflowDefinition
from mahavishnu.platform.auth import current_principal
from mahavishnu.platform.completion import Completer, CompletionSpec, install_completions

__all__ = ["REPO_TEMPLATE", "RUN_WORKFLOW", "completion_hook"]

REPO_TEMPLATE = "repo://{name}"
RUN_WORKFLOW = "run_workflow"


def completion_hook(
    store: ManifestStore, definitions: Mapping[str, WorkflowDefinition]
) -> Callable[[MCPServer], None]:
    """The `configure_mcp` hook: the `run_workflow` prompt and every completion above."""

    def visible_repos() -> Iterator[Repo]:
        principal = current_principal()
        return (r for r in store.manifest.repos if principal.can_see(r.tags))

    def runnable() -> dict[str, WorkflowDefinition]:
        admin = current_principal().has_role("admin")
        return {name: d for name, d in definitions.items() if admin or not d.admin_only}

    def of_repos(values: Callable[[Repo], Iterable[str | None]]) -> Completer:
        async def complete(_: str, __: Mapping[str, str]) -> list[str]:
            return [v for repo in visible_repos() for v in values(repo) if v]

        return complete

    async def workflows(_: str, __: Mapping[str, str]) -> list[str]:
        return list(runnable())

    async def repo_list(typed: str, _: Mapping[str, str]) -> list[str]:
        head, comma, _last = typed.rpartition(",")
        return [f"{head}{comma}{repo.name}" for repo in visible_repos()]

    async def params(typed: str, chosen: Mapping[str, str]) -> list[str]:
        definition = runnable().get(chosen.get("workflow", ""))
        if definition is None:
            return []
        head, space, _last = typed.rpartition(" ")
        given = {token.partition("=")[0] for token in head.split()}
        return [
            f"{head}{space}{choice}"
            for name, spec in definition.params.items()
            if name not in given
            for choice in ([f"{name}=true", f"{name}=false"] if spec.type == "boolean" else [f"{name}="])
        ]

    specs = [
        CompletionSpec("resource", REPO_TEMPLATE, "name", of_repos(lambda r: (r.name, r.nickname))),
        CompletionSpec("prompt", RUN_WORKFLOW, "workflow", workflows),
        CompletionSpec("prompt", RUN_WORKFLOW, "tag", of_repos(lambda r: r.tags)),
        CompletionSpec("prompt", RUN_WORKFLOW, "role", of_repos(lambda r: (r.role,))),
        CompletionSpec("prompt", RUN_WORKFLOW, "repos", repo_list),
        CompletionSpec("prompt", RUN_WORKFLOW, "params", params),
    ]
    install = install_completions(specs)

    def configure(server: MCPServer) -> None:
        prompt = Prompt.from_function(run_workflow, name=RUN_WORKFLOW, title="Run a workflow")
        server.add_prompt(prompt)
        install(server)

    return configure


async def run_workflow(
    workflow: Annotated[str, Field(description="The workflow's name (see list_workflow_definitions).")],
    tag: Annotated[str, Field(description="Only repositories with this tag.")] = "",
    role: Annotated[str, Field(description="Only repositories with this role.")] = "",
    repos: Annotated[str, Field(description="Only these repositories: names separated by commas.")] = "",
    params: Annotated[str, Field(description="The workflow's parameters: name=value, space-separated.")] = "",
) -> str:
    """Run one of the operator's workflows across repositories and report how each one went."""
    arguments: dict[str, Any] = {"workflow": workflow, **_chosen(tag=tag, role=role)}
    names = [name.strip() for name in repos.split(",") if name.strip()]
    if names:
        arguments["repos"] = names
    values = dict(token.partition("=")[::2] for token in params.split() if "=" in token)
    if values:
        arguments["params"] = values
    return (
        f"Call the trigger_workflow tool with {json.dumps(arguments)}. Then call get_workflow_status "
        "with the workflow_id it returns until the status is final (succeeded, partial, failed or "
        "cancelled), and report the outcome: how many repositories succeeded, and for each one that "
        "did not, its status, exit code and the end of its output."
    )


def _chosen(**filters: str) -> dict[str, str]:
    return {name: value for name, value in filters.items() if value}
