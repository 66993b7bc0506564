"""Workflows as the operator defines them: argv templates, parameters, timeouts and retry policies.

A template is a list of argv elements. An element that is exactly `{name}`
is replaced by the caller's value for parameter `name`, as one whole
element; nothing else is ever substituted, and no shell is involved. So a
value can never become a second command, and it can never become an option
either: values starting with `-` are refused unless the parameter allows it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mahavishnu.platform.errors import InvalidArgumentError

__all__ = [
    "ParamSpec",
    "RetryPolicy",
    "WorkflowDefinition",
    "builtin_workflows",
    "render_argv",
    "validate_params",
]

_PLACEHOLDER = re.compile(r"^\{([a-z_][a-z0-9_]*)\}$")
_INTEGER = re.compile(r"-?[0-9]{1,30}", re.ASCII)


class ParamSpec(BaseModel):
    """One parameter a caller may pass."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["string", "integer", "boolean"] = "string"
    description: str = ""
    required: bool = True
    default: str | int | bool | None = None
    pattern: str | None = None
    """A regular expression the whole value must match."""
    max_length: int = Field(default=4096, gt=0)
    allow_leading_dash: bool = False
    """Allow values that start with `-` (they could be read as options by the program);
    for an integer parameter, this is what allows negative numbers."""

    @model_validator(mode="after")
    def _pattern_compiles(self) -> ParamSpec:
        if self.pattern is not None:
            re.compile(self.pattern)
        return self


class RetryPolicy(BaseModel):
    """When and how often a failed repo run is tried again (exponential backoff with jitter)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=1, ge=1, le=20)
    """Attempts in all, the first included; 1 means no retry."""
    initial_backoff_seconds: float = Field(default=1.0, ge=0)
    max_backoff_seconds: float = Field(default=60.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    jitter_seconds: float = Field(default=1.0, ge=0)
    retry_on_exit_codes: tuple[int, ...] = ()
    """Exit codes worth another attempt; empty means any non-zero exit code."""
    retry_on_timeout: bool = True

    def is_retryable(self, *, exit_code: int | None, timed_out: bool) -> bool:
        if timed_out:
            return self.retry_on_timeout
        if exit_code is None or exit_code == 0:
            return False
        return not self.retry_on_exit_codes or exit_code in self.retry_on_exit_codes


class WorkflowDefinition(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    argv: tuple[str, ...] = Field(min_length=1)
    description: str = ""
    timeout_seconds: float = Field(default=600.0, gt=0)
    retry: RetryPolicy = RetryPolicy()
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    env_allowlist: tuple[str, ...] = ()
    """Environment variables passed through to the command (PATH and HOME always are)."""
    admin_only: bool = False
    max_concurrency: int | None = Field(default=None, gt=0)
    """Repo runs of one such workflow at once (the global limit still applies)."""

    @model_validator(mode="after")
    def _placeholders_are_whole_and_declared(self) -> WorkflowDefinition:
        if _PLACEHOLDER.match(self.argv[0]):
            raise ValueError("argv[0] must be a fixed program, not a parameter")
        for element in self.argv:
            match = _PLACEHOLDER.match(element)
            if match is None:
                if "{" in element or "}" in element:
                    raise ValueError(
                        f"argv element {element!r}: parameters must be whole elements like '{{name}}'"
                    )
            elif match.group(1) not in self.params:
                raise ValueError(f"argv uses {{{match.group(1)}}} but no such parameter is declared")
        return self


def builtin_workflows(agent_command: Sequence[str]) -> dict[str, WorkflowDefinition]:
    """The workflows every installation has; settings may override them by name."""
    git_env = ("GIT_SSH_COMMAND", "SSH_AUTH_SOCK")
    network_retry = RetryPolicy(max_attempts=3, initial_backoff_seconds=2.0, max_backoff_seconds=30.0)
    return {
        "git-status": WorkflowDefinition(
            argv=("git", "status", "--short", "--branch"),
            description="Show the working-tree status of each repository.",
            timeout_seconds=60,
        ),
        "git-fetch": WorkflowDefinition(
            argv=("git", "fetch", "--prune"),
            description="Fetch from the remotes of each repository.",
            timeout_seconds=300,
            retry=network_retry,
            env_allowlist=git_env,
        ),
        "git-pull": WorkflowDefinition(
            argv=("git", "pull", "--ff-only"),
            description="Fast-forward each repository to its upstream (never merges).",
            timeout_seconds=300,
            retry=network_retry,
            env_allowlist=git_env,
        ),
        "agent": WorkflowDefinition(
            argv=(*agent_command, "{prompt}"),
            description="Run the configured AI agent CLI in each repository with the caller's prompt.",
            timeout_seconds=1800,
            params={"prompt": ParamSpec(description="What the agent should do.", max_length=20000)},
            env_allowlist=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "DASHSCOPE_API_KEY"),
            max_concurrency=4,
        ),
    }


def validate_params(definition: WorkflowDefinition, given: Mapping[str, Any]) -> dict[str, str]:
    """Check the caller's values against the declared parameters; return them as argv strings."""
    unknown = sorted(set(given) - set(definition.params))
    if unknown:
        raise InvalidArgumentError(f"unknown parameter(s): {', '.join(unknown)}")
    values: dict[str, str] = {}
    for name, spec in definition.params.items():
        if name in given:
            values[name] = _check(name, spec, given[name])
        elif spec.default is not None:
            values[name] = _check(name, spec, spec.default)
        elif spec.required:
            raise InvalidArgumentError(f"parameter {name!r} is required")
    return values


def _check(name: str, spec: ParamSpec, value: Any) -> str:
    if spec.type == "integer":
        text = _integer_text(name, spec, value)
    elif spec.type == "boolean":
        if not isinstance(value, bool):
            raise InvalidArgumentError(f"parameter {name!r} must be true or false")
        text = "true" if value else "false"
    else:
        if not isinstance(value, str):
            raise InvalidArgumentError(f"parameter {name!r} must be a string")
        text = value
    if "\x00" in text:
        raise InvalidArgumentError(f"parameter {name!r} contains a NUL character")
    if len(text) > spec.max_length:
        raise InvalidArgumentError(f"parameter {name!r} is longer than {spec.max_length} characters")
    if text.startswith("-") and not spec.allow_leading_dash:
        raise InvalidArgumentError(f"parameter {name!r} must not start with '-' (it would read as an option)")
    if spec.pattern is not None and re.fullmatch(spec.pattern, text) is None:
        raise InvalidArgumentError(f"parameter {name!r} does not match {spec.pattern!r}")
    return text


def _integer_text(name: str, spec: ParamSpec, value: Any) -> str:
    """An integer as argv text: ASCII digits only (int() also takes '١٢', '+5', ' 5', '5_0'),
    and non-negative unless the parameter allows a leading dash: `-5` would reach a program
    such as `git log -n {count}` as an option."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidArgumentError(f"parameter {name!r} must be an integer")
    text = str(value)
    if _INTEGER.fullmatch(text) is None:
        raise InvalidArgumentError(f"parameter {name!r} must be an integer: ASCII digits, at most 30 of them")
    if text.startswith("-") and not spec.allow_leading_dash:
        raise InvalidArgumentError(f"parameter {name!r} must not be negative")
    return str(int(text))


def render_argv(definition: WorkflowDefinition, values: Mapping[str, str]) -> list[str]:
    """The command to run: placeholders replaced by whole values, everything else literal."""
    argv: list[str] = []
    for element in definition.argv:
        match = _PLACEHOLDER.match(element)
        if match is None:
            argv.append(element)
        elif match.group(1) in values:
            argv.append(values[match.group(1)])
    return argv
