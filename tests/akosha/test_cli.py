"""`mahavishnu akosha plot` run for real (a subprocess) on a store Akosha's own inbox filled:
PNG and SVG written, the report's numbers as JSON, `--source` narrowing like a scoped token,
and one-line errors with their exit codes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from mahavishnu.akosha.inbox import Inbox
from mahavishnu.akosha.metrics import IngestMetrics
from mahavishnu.akosha.settings import AkoshaSettings
from mahavishnu.platform.crypto import KeyRing, generate_key
from mahavishnu.platform.db import Database
from mahavishnu.platform.observability import Metrics
from tests.akosha.records import parsed, upsert
from tests.support.akosha import akosha_env

KEY = generate_key()
UNTIL = datetime(2026, 5, 1, tzinfo=UTC)
DAYS = 30
SHIFT = 18
"""From this day of the window, "north" made 5 memories a day instead of 1."""


def plot(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mahavishnu", "akosha", "plot", *args],
        env=akosha_env(data, AKOSHA_ENCRYPTION_KEY=KEY),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _day(k: int) -> str:
    return (UNTIL - timedelta(days=DAYS - k) + timedelta(hours=9)).isoformat()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("akosha-cli")
    north = [
        upsert(f"n{day}-{n}", 1, source="north", created_at=_day(day))
        for day in range(DAYS)
        for n in range(5 if day >= SHIFT else 1)
    ]
    south = [upsert(f"s{day}", 1, source="south", created_at=_day(day)) for day in range(DAYS)]

    async def fill() -> None:
        db = Database.from_settings(AkoshaSettings(data_dir=folder), create=True)
        await db.ensure_schema(upgrade=True)
        inbox = Inbox(db, KeyRing.parse(KEY), IngestMetrics(Metrics(prefix="akosha")), max_records=5000)
        await inbox.take("north", parsed(*north, source="north"))
        await inbox.take("south", parsed(*south, source="south"))
        await db.dispose()

    asyncio.run(fill())
    return folder


WINDOW = ("--window", f"{DAYS}d", "--bucket", "day", "--until", UNTIL.strftime("%Y-%m-%dT%H:%M:%S"))


def test_plot_writes_a_png_of_the_change_points(data: Path, tmp_path: Path) -> None:
    target = tmp_path / "north.png"
    done = plot(data, "memories", "--kind", "changepoints", "--by", "source", *WINDOW, "--out", str(target))
    assert done.returncode == 0, done.stderr
    assert "wrote the changepoints chart of memories by source (2 series, 30 buckets of 1d)" in done.stdout
    with Image.open(target) as image:
        assert image.format == "PNG"
        assert image.height > image.width / 2  # two panels
    assert not list(tmp_path.glob(".*.partial"))


def test_plot_reports_json_and_source_narrows_like_a_scoped_token(data: Path, tmp_path: Path) -> None:
    target = tmp_path / "chart.svg"
    done = plot(
        data, "memories", "--kind", "changepoints", "--by", "source", "--source", "north", *WINDOW,
        "--out", str(target), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [s["key"] for s in report["series"]] == ["north"]
    north = report["series"][0]
    assert north["values"] == [1.0] * SHIFT + [5.0] * (DAYS - SHIFT)
    assert [(c["index"], c["before"], c["after"]) for c in north["changepoints"]] == [(SHIFT, 1, 5)]
    assert target.read_bytes().startswith(b"<?xml")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("memories", "--out", "chart.gif"), 2, "--out: chart.gif must end in .png or .svg"),
        (("commits", "--out", "c.png"), 2, "metric: unknown metric 'commits'"),
        (
            ("memories", "--bucket", "1m", "--out", "c.png"),
            2,
            "bucket: 30d in buckets of 1m is 43200 buckets",
        ),
        (("memories", "--by", "tenant", "--out", "c.png"), 2, "by: memories groups by none, source, project"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    data: Path, tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    done = plot(data, *args)
    assert done.returncode == code, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_no_database_is_exit_2_and_makes_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = plot(empty, "memories", "--out", str(tmp_path / "c.png"))
    assert done.returncode == 2, done.stderr  # as `memories` answers: the settings name no store
    assert "no database at" in done.stderr
    assert list(empty.iterdir()) == [], "neither a database nor a key is made by a reader"
