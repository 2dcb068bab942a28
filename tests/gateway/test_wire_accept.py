"""Content negotiation: msgpack only when Accept ranks it above JSON."""

import pytest

from gateway.wire import prefers_msgpack


@pytest.mark.parametrize(
    ("accept", "msgpack"),
    [
        ("", False),
        ("application/json", False),
        ("application/msgpack", True),
        ("application/x-msgpack", True),
        ("application/msgpack;q=0", False),
        ("application/msgpack; q=0.0, application/json", False),
        ("application/json;q=0.5, application/msgpack", True),
        ("application/json, application/msgpack", False),
        ("*/*;q=0.1, application/msgpack", True),
        ("application/msgpack;q=bad", False),
        ("text/html, application/msgpack;q=0.9", True),
    ],
)
def test_accept_ranking(accept: str, msgpack: bool) -> None:
    assert prefers_msgpack(accept) is msgpack
