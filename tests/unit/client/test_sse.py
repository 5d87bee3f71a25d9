from collections.abc import AsyncIterator

from inference_client import ServerSentEvent, parse_sse
from tests.unit.simulator.fake_api import synchronously


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def parse(*items: str) -> list[ServerSentEvent]:
    return [event async for event in parse_sse(lines(*items))]


@synchronously
async def test_events_end_at_blank_lines_and_join_their_data_lines() -> None:
    events = await parse("event: a", "data: one", "data: two", "", "data: {}", "")
    assert events == [ServerSentEvent("a", "one\ntwo"), ServerSentEvent("message", "{}")]


@synchronously
async def test_comments_and_keepalives_are_skipped() -> None:
    assert await parse(": subscribed", "", ": ping", "") == []


@synchronously
async def test_the_last_id_carries_over_and_crlf_is_tolerated() -> None:
    events = await parse("id: 7\r\n", "data: x\r\n", "\r\n", "data: y", "")
    assert [(e.data, e.id) for e in events] == [("x", "7"), ("y", "7")]


@synchronously
async def test_only_one_leading_space_is_stripped_and_unknown_fields_are_ignored() -> None:
    events = await parse("data:  two spaces", "retry: 10", "weird", "")
    assert events == [ServerSentEvent("message", " two spaces")]


@synchronously
async def test_an_unterminated_event_is_not_dispatched() -> None:
    assert await parse("data: partial") == []
