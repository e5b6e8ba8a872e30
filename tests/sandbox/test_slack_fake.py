"""The fake Slack Web API, driven through the real slack-sdk WebClient."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from sandbox.slack import FakeSlack

TOKEN = "xoxb-test-token"
NOW = datetime(2024, 5, 2, 10, 0, 0, tzinfo=UTC)  # 1714644000
MISSING_TEXT = "ignore:The top-level `text` argument is missing"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server() -> Any:
    # One server for the module: stopping one waits out serve_forever's 0.5 s poll.
    with FakeSlack(token=TOKEN, clock=lambda: NOW) as fake:
        yield fake


@pytest.fixture
def slack(server: FakeSlack) -> FakeSlack:
    server.reset()
    return server


def client_for(fake: FakeSlack, token: str = TOKEN, **kw: Any) -> WebClient:
    return WebClient(token=token, base_url=fake.base_url + "/api/", **kw)


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    return client_for(slack)


def refusal(call: Any, **kw: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        call(**kw)
    return caught.value


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


# -- posting ------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["C0SALES01", "#sales-alerts", "sales-alerts"])
def test_post_message_is_accepted_and_recorded(slack: FakeSlack, client: WebClient, channel: str) -> None:
    blocks = [section("*Alice* is behind pace")]
    response = client.chat_postMessage(channel=channel, text="Alice is behind pace", blocks=blocks)

    assert response["ok"] is True
    assert response["channel"] == "C0SALES01"
    assert response["ts"] == "1714644000.000000"
    assert response["message"]["text"] == "Alice is behind pace"
    assert response["message"]["blocks"] == blocks
    [recorded] = slack.messages()
    assert (recorded.channel, recorded.channel_name, recorded.ts) == ("C0SALES01", "sales-alerts", response["ts"])
    assert (recorded.text, recorded.blocks, recorded.thread_ts) == ("Alice is behind pace", blocks, None)


def test_ts_values_stay_unique_and_increasing_when_the_clock_stands_still(client: WebClient) -> None:
    stamps = [client.chat_postMessage(channel="C0SALES01", text=str(i))["ts"] for i in range(3)]

    assert stamps == ["1714644000.000000", "1714644000.000001", "1714644000.000002"]


def test_concurrent_posts_are_all_recorded_with_distinct_ts(slack: FakeSlack, client: WebClient) -> None:
    threads = [
        threading.Thread(target=client.chat_postMessage, kwargs={"channel": "C0SALES03", "text": str(i)})
        for i in range(12)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    recorded = slack.messages("sales-ops")
    assert sorted(m.text for m in recorded) == sorted(str(i) for i in range(12))
    assert len({m.ts for m in recorded}) == 12


def test_thread_reply_is_recorded_under_its_parent(slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="#sales-alerts", text="Deal stalled")
    reply = client.chat_postMessage(channel="C0SALES01", thread_ts=parent["ts"], text="Still stalled")

    assert reply["message"]["thread_ts"] == parent["ts"]
    assert [m.thread_ts for m in slack.messages("C0SALES01")] == [None, parent["ts"]]
    assert slack.transcript().splitlines() == [
        "#sales-alerts",
        f"  [{parent['ts']}] salespulse",
        "    Deal stalled",
        f"    ↳ [{reply['ts']}] salespulse",
        "      Still stalled",
    ]


def test_reply_to_an_unknown_thread_is_accepted_but_shown_as_invisible(slack: FakeSlack, client: WebClient) -> None:
    response = client.chat_postMessage(channel="C0SALES01", thread_ts="1600000000.000100", text="lost")

    assert response["ok"] is True
    assert "(invisible: reply to unknown thread 1600000000.000100)" in slack.transcript()


def test_malformed_thread_ts_is_refused(client: WebClient) -> None:
    error = refusal(client.chat_postMessage, channel="C0SALES01", thread_ts="0", text="x")

    assert error.response["error"] == "invalid_thread_ts"
    assert error.response["response_metadata"]["messages"] == ["[ERROR] 0 is not a valid thread_ts"]


@pytest.mark.filterwarnings(MISSING_TEXT)
@pytest.mark.parametrize(
    ("token", "kwargs", "error"),
    [
        (TOKEN, {"channel": "C0NOPE000", "text": "x"}, "channel_not_found"),
        (TOKEN, {"channel": "#no-such-channel", "text": "x"}, "channel_not_found"),
        (TOKEN, {"channel": "#general", "text": "x"}, "not_in_channel"),
        (TOKEN, {"channel": "q1-pipeline-review", "text": "x"}, "is_archived"),
        (TOKEN, {"channel": "C0SALES01"}, "no_text"),
        (TOKEN, {"channel": "C0SALES01", "text": "x" * 40_001}, "msg_too_long"),
        (TOKEN, {"channel": "C0SALES01", "text": "x", "blocks": "[{"}, "invalid_blocks_format"),
        (TOKEN, {"channel": "C0SALES01", "text": "x", "blocks": [section("x" * 2000)] * 7}, "msg_blocks_too_long"),
        ("xoxb-wrong", {"channel": "C0SALES01", "text": "x"}, "invalid_auth"),
    ],
)
def test_post_message_refusals(slack: FakeSlack, token: str, kwargs: dict[str, Any], error: str) -> None:
    refused = refusal(client_for(slack, token).chat_postMessage, **kwargs)

    assert refused.response.status_code == 200
    assert refused.response["error"] == error
    assert slack.messages() == []


def test_text_of_exactly_40000_characters_is_accepted(client: WebClient) -> None:
    assert client.chat_postMessage(channel="C0SALES01", text="x" * 40_000)["ok"] is True


# -- Block Kit limits ---------------------------------------------------------------

_FIELD = {"type": "mrkdwn", "text": "f"}
_BUTTON = {"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": "https://crm.example/1"}


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ([{"type": "divider"}] * 51, "no more than 50 items allowed [json-pointer:/blocks]"),
        ([{"type": "carousel"}], "unsupported block type: carousel [json-pointer:/blocks/0/type]"),
        ([{"text": "no type"}], "missing required field: type [json-pointer:/blocks/0]"),
        ([section("x" * 3001)], "must be less than 3001 characters [json-pointer:/blocks/0/text/text]"),
        ([section("")], "must be more than 0 characters [json-pointer:/blocks/0/text/text]"),
        (
            [{"type": "section", "text": {"type": "markdown", "text": "x"}}],
            "must be plain_text or mrkdwn [json-pointer:/blocks/0/text/type]",
        ),
        ([{"type": "section"}], "must provide either text or fields [json-pointer:/blocks/0]"),
        (
            [{"type": "section", "fields": [_FIELD] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/fields]",
        ),
        (
            [{"type": "section", "fields": [_FIELD, {"type": "mrkdwn", "text": "f" * 2001}]}],
            "must be less than 2001 characters [json-pointer:/blocks/0/fields/1/text]",
        ),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}],
            "must be plain_text [json-pointer:/blocks/0/text/type]",
        ),
        (
            [{"type": "context", "elements": [_FIELD] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/elements]",
        ),
        ([{"type": "context", "elements": []}], "must provide a non-empty array [json-pointer:/blocks/0/elements]"),
        (
            [{"type": "actions", "elements": [_BUTTON] * 26}],
            "no more than 25 items allowed [json-pointer:/blocks/0/elements]",
        ),
        (
            [{"type": "actions", "elements": [{**_BUTTON, "text": {"type": "plain_text", "text": "b" * 76}}]}],
            "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
        ),
        (
            [{"type": "image", "image_url": "https://img.example/a.png"}],
            "missing required field: alt_text [json-pointer:/blocks/0]",
        ),
        (
            [{"type": "divider", "block_id": "b" * 256}],
            "must be less than 256 characters [json-pointer:/blocks/0/block_id]",
        ),
        (
            [{"type": "divider", "block_id": "same"}, {"type": "divider", "block_id": "same"}],
            "duplicate block_id: same [json-pointer:/blocks/1/block_id]",
        ),
    ],
)
def test_each_block_kit_limit_is_refused_as_invalid_blocks(
    slack: FakeSlack, client: WebClient, blocks: list[dict[str, Any]], message: str
) -> None:
    refused = refusal(client.chat_postMessage, channel="C0SALES01", text="fallback", blocks=blocks)

    assert refused.response["error"] == "invalid_blocks"
    assert f"[ERROR] {message}" in refused.response["response_metadata"]["messages"]
    assert slack.messages() == []


def test_section_text_over_the_limit_reports_the_schema_miss_then_the_length(client: WebClient) -> None:
    refused = refusal(client.chat_postMessage, channel="C0SALES01", text="x", blocks=[section("x" * 3001)])

    assert refused.response["response_metadata"]["messages"] == [
        "[ERROR] failed to match all allowed schemas [json-pointer:/blocks/0/text]",
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
    ]


def test_blocks_exactly_at_the_limits_are_accepted(client: WebClient) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}, "block_id": "b" * 255},
        section("s" * 3000),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 200}] * 10},
        {"type": "context", "elements": [_FIELD] * 10},
        {"type": "actions", "elements": [_BUTTON] * 25},
        {"type": "image", "image_url": "https://img.example/a.png", "alt_text": "chart"},
        {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": "r"}]}]},
    ] + [{"type": "divider"}] * 43

    assert client.chat_postMessage(channel="C0SALES01", text="fallback", blocks=blocks)["ok"] is True


# -- chat.update --------------------------------------------------------------------


def test_chat_update_replaces_text_and_keeps_the_earlier_version(slack: FakeSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C0SALES01", text="Pace 42%", blocks=[section("Pace 42%")])

    updated = client.chat_update(channel="C0SALES01", ts=posted["ts"], text="Pace 48%", blocks=[section("Pace 48%")])

    assert (updated["ts"], updated["text"]) == (posted["ts"], "Pace 48%")
    assert "edited" in updated["message"]
    [message] = slack.messages()
    assert (message.text, message.blocks) == ("Pace 48%", [section("Pace 48%")])
    assert [(r.text, r.blocks) for r in message.history] == [("Pace 42%", [section("Pace 42%")])]
    assert "(edited)" in slack.transcript()


@pytest.mark.parametrize(
    ("update", "blocks_after"),
    [
        ({"text": "only text"}, [section("first")]),  # Slack keeps blocks left out of the edit
        ({"text": "cleared", "blocks": []}, []),
    ],
)
def test_chat_update_keeps_blocks_unless_given(
    slack: FakeSlack, client: WebClient, update: dict[str, Any], blocks_after: list[dict[str, Any]]
) -> None:
    posted = client.chat_postMessage(channel="C0SALES01", text="first", blocks=[section("first")])

    client.chat_update(channel="C0SALES01", ts=posted["ts"], **update)

    assert slack.messages()[0].blocks == blocks_after


@pytest.mark.filterwarnings(MISSING_TEXT)
@pytest.mark.parametrize(
    ("channel", "ts", "update", "error"),
    [
        ("C0SALES01", "1714644999.000000", {"text": "x"}, "message_not_found"),
        ("C0SALES03", None, {"text": "x"}, "message_not_found"),  # right ts, other channel
        ("#sales-alerts", None, {"text": "x"}, "channel_not_found"),  # chat.update wants the id
        ("C0SALES01", None, {}, "no_text"),
        ("C0SALES01", None, {"text": "x", "blocks": [section("x" * 3001)]}, "invalid_blocks"),
    ],
)
def test_chat_update_refusals(
    client: WebClient, channel: str, ts: str | None, update: dict[str, Any], error: str
) -> None:
    posted = client.chat_postMessage(channel="C0SALES01", text="original")

    refused = refusal(client.chat_update, channel=channel, ts=ts or posted["ts"], **update)

    assert refused.response["error"] == error


# -- auth, wire forms, unknown methods ----------------------------------------------


def test_auth_test_names_the_bot(client: WebClient) -> None:
    response = client.auth_test()

    assert response["team_id"] == FakeSlack.team_id
    assert (response["user_id"], response["bot_id"]) == (FakeSlack.bot_user_id, FakeSlack.bot_id)


def test_unknown_method_is_http_200_unknown_method(client: WebClient) -> None:
    refused = refusal(client.api_call, api_method="chat.teleport")

    assert refused.response.status_code == 200
    assert refused.response.data == {"ok": False, "error": "unknown_method", "req_method": "chat.teleport"}


def raw_post(fake: FakeSlack, query: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    url = f"{fake.base_url}/api/chat.postMessage{query}"
    with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers)) as response:
        return json.loads(response.read())


_FORM = {"Content-Type": "application/x-www-form-urlencoded"}
_JSON = {"Content-Type": "application/json; charset=utf-8"}


@pytest.mark.parametrize(
    ("query", "body", "headers", "error"),
    [
        ("", urlencode({"token": TOKEN, "channel": "C0SALES01", "text": "form"}).encode(), _FORM, None),
        (
            "",
            urlencode({"channel": "C0SALES01", "text": "f", "blocks": json.dumps([section("b")])}).encode(),
            {**_FORM, "Authorization": f"Bearer {TOKEN}"},
            None,
        ),
        (f"?token={TOKEN}", urlencode({"channel": "C0SALES01", "text": "q"}).encode(), _FORM, "not_authed"),
        ("", json.dumps({"token": TOKEN, "channel": "C0SALES01", "text": "j"}).encode(), _JSON, "not_authed"),
        ("", b"{not json", {**_JSON, "Authorization": f"Bearer {TOKEN}"}, "invalid_json"),
    ],
)
def test_token_and_body_forms(
    slack: FakeSlack, query: str, body: bytes, headers: dict[str, str], error: str | None
) -> None:
    answer = raw_post(slack, query, body, headers)

    assert answer.get("error") == error
    assert len(slack.messages()) == (0 if error else 1)


# -- rate limits and faults ---------------------------------------------------------


def test_posting_faster_than_the_channel_allows_is_429_with_retry_after() -> None:
    monotonic = FakeMonotonic()
    with FakeSlack(token=TOKEN, post_rate=1, monotonic=monotonic) as fake:
        client = client_for(fake)
        client.chat_postMessage(channel="C0SALES01", text="first")

        refused = refusal(client.chat_postMessage, channel="C0SALES01", text="second")
        other_channel = client.chat_postMessage(channel="C0SALES03", text="elsewhere")
        monotonic.now += 1
        later = client.chat_postMessage(channel="C0SALES01", text="second again")

        assert refused.response.status_code == 429
        assert refused.response.headers["Retry-After"] == "1"
        assert refused.response["error"] == "ratelimited"
        assert other_channel["ok"]
        assert later["ok"]
        assert [m.text for m in fake.messages("C0SALES01")] == ["first", "second again"]


def test_rate_limit_retry_handler_waits_and_succeeds() -> None:
    with FakeSlack(token=TOKEN, post_rate=1) as fake:
        client = client_for(fake, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
        client.chat_postMessage(channel="C0SALES01", text="first")
        started = time.monotonic()

        second = client.chat_postMessage(channel="C0SALES01", text="second")

        assert second["ok"] is True
        assert time.monotonic() - started >= 1
        assert [m.text for m in fake.messages()] == ["first", "second"]
        assert len(fake.requests) == 3


def test_armed_rate_limit_fault_carries_its_retry_after(slack: FakeSlack, client: WebClient) -> None:
    slack.faults.arm("rate_limit", path="chat.postMessage", retry_after=7)

    refused = refusal(client.chat_postMessage, channel="C0SALES01", text="x")

    assert (refused.response.status_code, refused.response.headers["Retry-After"]) == (429, "7")
    assert refused.response["error"] == "ratelimited"


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, "fatal_error"), (503, "Received a response in a non-JSON format: <html><body><h1>503 Service Unavailable")],
)
def test_server_errors_without_a_retry_handler(slack: FakeSlack, client: WebClient, status: int, error: str) -> None:
    slack.faults.arm("server_error", path="chat.postMessage", status=status)

    refused = refusal(client.chat_postMessage, channel="C0SALES01", text="x")

    assert refused.response.status_code == status
    assert refused.response["error"].startswith(error)
    assert slack.messages() == []


def test_server_error_retry_handler_gets_through_a_503(slack: FakeSlack) -> None:
    handler = ServerErrorRetryHandler(max_retry_count=1, interval_calculator=FixedValueRetryIntervalCalculator(0.05))
    client = client_for(slack, retry_handlers=[handler])
    slack.faults.arm("server_error", path="chat.postMessage", status=503)

    assert client.chat_postMessage(channel="C0SALES01", text="after outage")["ok"] is True
    assert [m.text for m in slack.messages()] == ["after outage"]


def test_expired_session_fault_is_token_expired(slack: FakeSlack, client: WebClient) -> None:
    slack.faults.arm("expired_session", path="auth.test")

    refused = refusal(client.auth_test)

    assert (refused.response.status_code, refused.response["error"]) == (200, "token_expired")


# -- conversations.list -------------------------------------------------------------


def test_conversations_list_pages_with_cursor(client: WebClient) -> None:
    # The SDK's response iterator refills one object per page: copy each page out as it comes.
    pages = [dict(p.data) for p in client.conversations_list(limit=2, types="public_channel,private_channel")]

    assert [[c["name"] for c in p["channels"]] for p in pages] == [
        ["sales-alerts", "sales-leadership"],
        ["sales-ops", "q1-pipeline-review"],
        ["general"],
    ]
    assert [bool(p["response_metadata"]["next_cursor"]) for p in pages] == [True, True, False]
    flags = {c["name"]: (c["is_archived"], c["is_member"]) for p in pages for c in p["channels"]}
    assert flags["q1-pipeline-review"] == (True, True)
    assert flags["general"] == (False, False)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, ["sales-alerts", "sales-ops", "q1-pipeline-review", "general"]),
        ({"exclude_archived": True}, ["sales-alerts", "sales-ops", "general"]),
        ({"types": "private_channel"}, ["sales-leadership"]),
    ],
)
def test_conversations_list_filters(client: WebClient, kwargs: dict[str, Any], names: list[str]) -> None:
    assert [c["name"] for c in client.conversations_list(**kwargs)["channels"]] == names


def test_conversations_list_refuses_a_cursor_it_did_not_issue(client: WebClient) -> None:
    assert refusal(client.conversations_list, cursor="bm90LWEtY3Vyc29y").response["error"] == "invalid_cursor"


# -- what people see ----------------------------------------------------------------


def test_transcript_renders_blocks_as_a_person_reads_them(slack: FakeSlack, client: WebClient) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Rep behind quota pace"}},
        section("<https://crm.example/005A|Alice Smith> is at 42% &lt; 60% of Q2 pace"),
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": "*Quota*\n$100k"}, {"type": "mrkdwn", "text": "*Won*"}],
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "rule pace-q"}, {"type": "plain_text", "text": "n=12"}],
        },
        {"type": "divider"},
        {"type": "actions", "elements": [_BUTTON]},
    ]
    client.chat_postMessage(channel="#sales-leadership", text="Alice behind pace", blocks=blocks)
    client.chat_postMessage(channel="#sales-alerts", text="Deal &amp; co stalled")

    leadership = slack.transcript("sales-leadership")

    assert leadership.splitlines()[0] == "#sales-leadership"
    for line in [
        "    === Rep behind quota pace ===",
        "    Alice Smith (https://crm.example/005A) is at 42% < 60% of Q2 pace",
        "    ~ rule pace-q · n=12",
        "    [Open]",
    ]:
        assert line in leadership.splitlines()
    assert "Deal & co stalled" not in leadership
    assert "Deal & co stalled" in slack.transcript()


def test_channel_id_resolves_names_and_refuses_unknown_ones(slack: FakeSlack) -> None:
    assert slack.channel_id("#sales-alerts") == slack.channel_id("sales-alerts") == "C0SALES01"
    with pytest.raises(KeyError):
        slack.channel_id("#nowhere")


# -- metadata, history, replies, uploads -------------------------------------------------


def test_metadata_comes_back_only_when_history_asks_for_it(client: WebClient) -> None:
    meta = {"event_type": "salespulse_notification", "event_payload": {"id": "7"}}
    first = client.chat_postMessage(channel="#sales-alerts", text="one", metadata=meta)
    reply = client.chat_postMessage(channel="#sales-alerts", text="in thread", thread_ts=first["ts"], metadata=meta)
    plain = client.conversations_history(channel="C0SALES01")
    assert [m.get("metadata") for m in plain["messages"]] == [None]
    full = client.conversations_history(channel="C0SALES01", include_all_metadata=True)
    assert [m["metadata"] for m in full["messages"]] == [meta]  # thread replies are not in the history
    thread = client.conversations_replies(channel="C0SALES01", ts=first["ts"], include_all_metadata=True)
    assert [m["ts"] for m in thread["messages"]] == [first["ts"], reply["ts"]]
    assert thread["messages"][1]["metadata"] == meta


def test_history_pages_newest_first_and_honours_oldest(client: WebClient) -> None:
    posted = [client.chat_postMessage(channel="C0SALES03", text=str(i))["ts"] for i in range(5)]
    page = client.conversations_history(channel="C0SALES03", limit=2, oldest=posted[0])
    assert [m["text"] for m in page["messages"]] == ["4", "3"]
    assert page["has_more"] is True
    rest = client.conversations_history(
        channel="C0SALES03", limit=2, oldest=posted[0], cursor=page["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["2", "1"]
    assert rest["has_more"] is False


@pytest.mark.parametrize(
    ("call", "kwargs", "code"),
    [
        ("conversations_history", {"channel": "C0NOPE"}, "channel_not_found"),
        ("conversations_replies", {"channel": "C0SALES01", "ts": "1.000001"}, "thread_not_found"),
        ("chat_postMessage", {"channel": "C0SALES01", "text": "x", "metadata": {"event_payload": {}}}, None),
    ],
)
def test_history_refusals(client: WebClient, call: str, kwargs: dict, code: str | None) -> None:
    error = refusal(getattr(client, call), **kwargs)
    assert error.response["error"] == (code or "invalid_metadata_format")


def test_files_upload_v2_three_calls_share_the_file(slack: FakeSlack, client: WebClient) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 100
    client.files_upload_v2(channel="C0SALES01", content=png, filename="c.png", title="Chart", initial_comment="hi")
    [message] = slack.messages("C0SALES01")
    assert message.text == "hi"
    assert [(f.title, f.filename, f.content) for f in message.files] == [("Chart", "c.png", png)]


def test_on_post_sees_a_stored_message_before_the_answer(slack: FakeSlack, client: WebClient) -> None:
    seen = []
    slack.on_post = lambda message: seen.append((message.text, len(slack.messages())))
    try:
        client.chat_postMessage(channel="C0SALES01", text="hello")
    finally:
        slack.on_post = None
    assert seen == [("hello", 1)]
