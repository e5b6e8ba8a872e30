"""The daemon's log lines: JSON off a terminal, one object per line, fields as keys, secrets masked."""

from __future__ import annotations

import json
import logging

import pytest

from models.logs import configure_logging

SECRET = "xoxb-LEAKCANARY-123456"


@pytest.mark.parametrize("style", ["json", "readable", "keyvalue"])
def test_fields_appear_and_secrets_never(style: str, capsys) -> None:
    configure_logging("INFO", [SECRET], style=style)
    log = logging.getLogger("salespulse.daemon")
    log.info(
        "sync:hubspot ok in 1.20 s",
        extra={"fields": {"job": "sync:hubspot", "written": 42, "error": f"token {SECRET} refused"}},
    )
    err = capsys.readouterr().err
    assert SECRET not in err
    assert err.count("\n") == 1
    if style == "json":
        line = json.loads(err)
        assert line["msg"] == "sync:hubspot ok in 1.20 s"
        assert line["level"] == "INFO"
        assert line["written"] == 42
        assert line["error"] == "token *** refused"
        assert line["ts"].endswith("Z")
    else:
        assert "job=sync:hubspot written=42 error='token *** refused'" in err


def _fail() -> None:
    raise RuntimeError(f"boom with {SECRET}")


def test_a_traceback_stays_on_one_json_line(capsys) -> None:
    configure_logging("INFO", [SECRET], style="json")
    try:
        _fail()
    except RuntimeError:
        logging.getLogger("salespulse.daemon").exception("job crashed")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    line = json.loads(err)
    assert "RuntimeError: boom with ***" in line["exc"]
