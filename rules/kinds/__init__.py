"""The rule kinds, by the name a rule file gives in ``kind``."""

from __future__ import annotations

from collections.abc import Mapping

from rules.model import Kind

KINDS: Mapping[str, Kind] = {}
