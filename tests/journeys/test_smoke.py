"""The README's server starts with the default set-up and the CLI finds it by itself."""

from __future__ import annotations

from tests.journeys.conftest import Journey


def test_server_starts_and_cli_finds_it(journey: Journey) -> None:
    journey.start()
    result = journey.cli("work-pool", "ls", check=True)
    assert result.returncode == 0, result.stderr
