"""Health items name their node: asked once per URL of `/nodes/local/ranges/`."""

from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr

from watchdog.client import ClusterClient
from watchdog.config import ClusterConfig
from watchdog.simulator import SimConfig, SimulatedCluster


@pytest.fixture
def cluster() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(SimConfig(nodes=3)) as sim:
        yield sim


@pytest.fixture
async def client(cluster: SimulatedCluster) -> AsyncIterator[ClusterClient]:
    client = ClusterClient(ClusterConfig(name="sim", urls=cluster.urls,
                                         password=SecretStr("secret")))
    yield client
    await client.aclose()


async def test_health_items_carry_the_node_id_of_their_url(client: ClusterClient) -> None:
    assert [item.node_id for item in await client.identify(await client.health())] == [1, 2, 3]


async def test_node_ids_are_asked_once_per_url(
        cluster: SimulatedCluster, client: ClusterClient) -> None:
    for _ in range(3):
        await client.identify(await client.health())
    assert cluster.counters()["requests"]["nodes/local/ranges/"] == 3


async def test_a_down_url_keeps_the_node_id_learned_while_it_answered(
        cluster: SimulatedCluster, client: ClusterClient) -> None:
    await client.identify(await client.health())
    cluster.kill(2)
    down = (await client.identify(await client.health()))[1]
    assert (down.ok, down.node_id) == (False, 2)


async def test_a_url_down_from_the_start_is_asked_again_once_it_answers(
        cluster: SimulatedCluster, client: ClusterClient) -> None:
    cluster.cut_off(3)
    assert (await client.identify(await client.health()))[2].node_id is None
    cluster.cut_off(3, on=False)
    assert (await client.identify(await client.health()))[2].node_id == 3
