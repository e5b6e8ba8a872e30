"""The channel map (``[slack] team_channels`` in the settings file) is reloaded without a restart."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import Engine

from daemon.runner import Daemon
from daemon.watch import Watched
from models.clock import FixedClock
from models.settings import load_settings

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BASE = '[slack]\ndefault_channel = "#sales-alerts"\n'


def test_team_channels_reload_and_a_broken_file_is_refused(warehouse: Engine, tmp_path: Path, caplog) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(BASE)
    settings = load_settings(config)
    daemon = Daemon(warehouse, settings, [], FixedClock(T0))
    watched = Watched("channel map", lambda: [config], partial(daemon.reload_channel_map, config))
    assert watched.poll(T0)
    assert settings.slack.team_channels == {}

    config.write_text(BASE + '\n[slack.team_channels]\n"DACH Mid-Market" = "#dach-sales"\n')
    assert watched.poll(T0 + timedelta(seconds=5))
    assert settings.slack.team_channels == {"DACH Mid-Market": "#dach-sales"}

    config.write_text(BASE + "post_interval_s = -1\n")
    assert not watched.poll(T0 + timedelta(seconds=10))
    assert settings.slack.team_channels == {"DACH Mid-Market": "#dach-sales"}  # the last good map stays
    assert watched.refused.problems[0].startswith(f"{config}:3: slack.post_interval_s")

    with caplog.at_level(logging.WARNING, logger="salespulse.daemon"):
        config.write_text(BASE + '\n[slack.team_channels]\n"DACH Mid-Market" = "#dach"\n[sync]\nbatch_size = 100\n')
        assert watched.poll(T0 + timedelta(seconds=15))
    assert settings.slack.team_channels == {"DACH Mid-Market": "#dach"}
    assert settings.sync.batch_size == 5000  # read at start only
    assert "settings changed in [sync]: applied at the next restart" in caplog.text
