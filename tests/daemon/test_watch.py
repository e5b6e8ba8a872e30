"""Hot reload: a valid change is applied, a broken one is refused and the last good version stays."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.watch import Watched, fingerprint
from models.errors import ConfigError

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Numbers:
    """A stand-in loader: one integer per line; a bad line refuses the whole file, like the real ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.in_use: list[int] = []
        self.loads = 0

    def apply(self) -> str:
        self.loads += 1
        values, problems = [], []
        for n, line in enumerate(self.path.read_text().splitlines(), start=1):
            if line.strip().isdigit():
                values.append(int(line))
            else:
                problems.append((n, f"{line!r} is not a number"))
        if problems:
            error = ConfigError(problems[0][1], source=str(self.path), line=problems[0][0])
            error.problems = problems  # type: ignore[attr-defined]
            raise error
        self.in_use = values
        return f"{len(values)} number(s)"


def test_valid_change_applied_broken_change_refused_and_kept_out(tmp_path: Path, caplog) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("1\n2\n")
    loader = Numbers(path)
    watched = Watched("numbers", lambda: [path], loader.apply)
    assert watched.poll(T0)
    assert loader.in_use == [1, 2]
    assert not watched.poll(T0 + timedelta(seconds=5))  # unchanged: not even read
    assert loader.loads == 1

    path.write_text("1\n2\n3\n")
    assert watched.poll(T0 + timedelta(seconds=10))
    assert loader.in_use == [1, 2, 3]

    path.write_text("1\nfour\n3\nfive\n")
    with caplog.at_level(logging.ERROR, logger="salespulse.daemon"):
        assert not watched.poll(T0 + timedelta(seconds=15))
    assert loader.in_use == [1, 2, 3]  # the last good version runs on
    state = watched.state()
    assert state["problems"] == [f"{path}:2: 'four' is not a number", f"{path}:4: 'five' is not a number"]
    assert state["summary"] == "3 number(s)"
    assert state["loaded_at"] == (T0 + timedelta(seconds=10)).isoformat()
    assert f"{path}:2: 'four' is not a number" in caplog.text
    assert not watched.poll(T0 + timedelta(seconds=20))  # the same broken content: not re-tried
    assert loader.loads == 3

    path.write_text("7\n")
    assert watched.poll(T0 + timedelta(seconds=25))
    assert loader.in_use == [7]
    assert watched.state()["problems"] == []


def test_force_re_applies_unchanged_files(tmp_path: Path) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("1\n")
    loader = Numbers(path)
    watched = Watched("numbers", lambda: [path], loader.apply)
    watched.poll(T0)
    assert watched.poll(T0, force=True)
    assert loader.loads == 2


@pytest.mark.parametrize("change", ["edit", "add file", "remove file", "rename"])
def test_fingerprint_sees_every_change_in_a_folder(tmp_path: Path, change: str) -> None:
    folder = tmp_path / "rules.d"
    folder.mkdir()
    (folder / "a.yaml").write_text("a: 1\n")
    (folder / "b.yaml").write_text("b: 1\n")

    def files() -> list[Path]:
        return [folder, *sorted(folder.iterdir())]

    before = fingerprint(files())
    if change == "edit":
        (folder / "a.yaml").write_text("a: 2\n")
    elif change == "add file":
        (folder / "c.yaml").write_text("c: 1\n")
    elif change == "remove file":
        (folder / "b.yaml").unlink()
    else:
        (folder / "b.yaml").rename(folder / "d.yaml")
    assert fingerprint(files()) != before


def test_a_failure_that_is_not_the_files_fault_is_retried(tmp_path: Path) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("1\n")
    calls = []

    def apply() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database down")
        return "ok"

    watched = Watched("numbers", lambda: [path], apply)
    with pytest.raises(ConnectionError):
        watched.poll(T0)
    assert watched.poll(T0 + timedelta(seconds=5))  # same files, looked at again
    assert watched.refused is None
