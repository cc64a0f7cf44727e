"""Property test: whatever a cluster answers, a poll through the service is data or an error
of that source for that round, never a crash.

Hypothesis serves bodies from a local HTTP server on every path of the Cluster API (recorded
responses with parts replaced by nulls, wrong types and odd values, any JSON, bytes that are
not JSON), and the service's own `Watchdog.poll` polls one source through the client, the
poller, the built-in rule pack and the alert states. The cap on body size is tested against
the client alone in tests/test_client.py::test_a_body_over_the_cap_fails_the_url; here one
body over the real 64 MiB cap goes through the whole service once.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer

from tests.conftest import fixture_json
from tests.test_fuzz_inputs import FAST, NODE_PATHS, PARSERS, json_values, mutate
from watchdog.config import ChannelConfig, ClusterConfig, Config, RouteConfig
from watchdog.rules import load_rules
from watchdog.service import Round, Watchdog
from watchdog.store import Store

SOURCES = st.sampled_from(["nodes", "events", "hot_ranges", "health"])
DAMAGED = st.builds(lambda name, path, value: json.dumps(mutate(fixture_json(name), path, value)),
                    st.sampled_from(sorted(PARSERS)), NODE_PATHS | st.lists(st.sampled_from(
                        ["events", "ranges", 0, "info", "next", "timestamp", "range_id"]),
                        min_size=1, max_size=3), json_values).map(str.encode)
BODIES = DAMAGED | json_values.map(lambda value: json.dumps(value).encode()) | st.binary(
    max_size=64)
OVER_THE_CAP = 64 * 2**20 + 1


class ServedWatchdog:
    """The service in this process, watching one "cluster" that answers every path alike."""

    def __init__(self, server: HTTPServer, folder: Path) -> None:
        self.server = server
        config = Config(clusters=[ClusterConfig(name="sim", urls=[server.url_for("")[:-1]])],
                        channels={"hook": ChannelConfig(urls=["json://127.0.0.1:9/hook"])},
                        routes=[RouteConfig(channels=["hook"])], state=folder / "state.db")
        self.store = Store(config.state)
        self.watchdog = Watchdog(config, load_rules(None), self.store)
        self.loop = asyncio.new_event_loop()

    def poll(self, source: str, body: bytes) -> Round:
        self.server.clear()
        self.server.expect_request(re.compile(".*")).respond_with_data(
            body, content_type="application/json")
        return self.loop.run_until_complete(self.watchdog.poll("sim", source))  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.run_until_complete(self.watchdog.close())
        self.loop.close()
        self.store.close()


def test_any_answer_is_a_round_with_data_or_a_source_error(
        httpserver: HTTPServer, tmp_path: Path) -> None:
    served = ServedWatchdog(httpserver, tmp_path)

    @FAST
    @given(source=SOURCES, body=BODIES)
    def poll(source: str, body: bytes) -> None:
        done = served.poll(source, body)
        assert done.poll.ok or done.poll.error

    try:
        poll()
        huge = served.poll("nodes", b" " * OVER_THE_CAP)
        assert huge.poll.error is not None and "larger than" in huge.poll.error
    finally:
        served.close()
