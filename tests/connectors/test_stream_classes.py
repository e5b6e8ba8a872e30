"""What every stream class declares: a mapper that a concrete stream cannot leave out."""

from __future__ import annotations

import inspect

import pytest

from connectors.base import Stream
from connectors.hubspot_history import _DealHistoryStream
from connectors.hubspot_streams import SearchStream
from connectors.salesforce_streams import SalesforceStream


def subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *subclasses(sub)]
    return found


@pytest.mark.parametrize(
    ("base", "hook"), [(SalesforceStream, "map"), (SearchStream, "map"), (_DealHistoryStream, "values")]
)
def test_mappers_are_abstract_and_every_named_stream_implements_its_own(base: type[Stream], hook: str) -> None:
    assert hook in base.__abstractmethods__  # a stream that forgets it cannot be built, instead of failing per record
    named = [cls for cls in subclasses(base) if "name" in cls.__dict__]
    assert named
    for cls in named:
        assert not inspect.isabstract(cls), cls.__name__
        assert cls.primary_key in ("Id", "id"), cls.__name__
