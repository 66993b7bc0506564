"""The words of argument errors (platform/arguments.py), from pydantic's own structured errors."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mahavishnu.platform.arguments import describe_errors, schema_bounds


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: Annotated[int, Field(ge=1, le=200)] = 50
    timeout: Annotated[float, Field(gt=0, le=3600)] = 1.0
    name: Annotated[str, Field(min_length=2, max_length=5, pattern="^[a-z]+$")] = "ab"
    mode: Literal["fast", "slow"] = "fast"
    repos: Annotated[list[str], Field(max_length=2)] = []
    params: dict[str, str | int | bool] = {}


def words(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as refused:
        Arguments.model_validate(data)
    return describe_errors(refused.value.errors(), schema_bounds(Arguments.model_json_schema()))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"limit": 0}, "limit: must be between 1 and 200"),
        ({"limit": 201}, "limit: must be between 1 and 200"),
        ({"limit": "many"}, "limit: expected an integer"),
        ({"timeout": 0}, "timeout: must be greater than 0"),
        ({"timeout": 4000}, "timeout: must be at most 3600"),
        ({"name": "a"}, "name: must be at least 2 characters long"),
        ({"name": "abcdef"}, "name: must be at most 5 characters long"),
        ({"name": "AB"}, "name: must match the pattern '^[a-z]+$'"),
        ({"mode": "loud"}, "mode: must be 'fast' or 'slow'"),
        ({"repos": ["a", "b", "c"]}, "repos: must have at most 2 items"),
        ({"repos": ["a", 1]}, "repos[1]: expected a string"),
        ({"params": {"a": [1]}}, "params.a: expected a string, an integer or a boolean"),
        ({"other": 1}, "other: not a known argument"),
        ({"limit": 0, "mode": "x"}, "limit: must be between 1 and 200; mode: must be 'fast' or 'slow'"),
    ],
)
def test_each_kind_of_error_in_one_short_line(data: dict[str, Any], expected: str) -> None:
    text = words(data)
    assert text == expected
    assert "pydantic" not in text
    assert "Input should" not in text


def test_a_missing_field_and_a_leading_params_part() -> None:
    class Request(BaseModel):
        ref: str

    with pytest.raises(ValidationError) as refused:
        Request.model_validate({})
    errors = [{**e, "loc": ("params", *e["loc"])} for e in refused.value.errors()]
    assert describe_errors(errors, within="params") == "ref: required"  # type: ignore[arg-type]
