"""A dask.distributed LocalCluster whose workers spill to kvcy through zict
(the recipe of docs/guide.md, "kvcy as a Dask worker's spill store").

Needs the optional dask extra (pip install 'kvcy[dask]'); skipped, saying
so, when dask.distributed or zict is not installed.
"""
import os
from functools import partial

import pytest

distributed = pytest.importorskip(
    "distributed", reason="dask.distributed is not installed: pip install 'kvcy[dask]'")
zict = pytest.importorskip("zict", reason="zict is not installed: pip install 'kvcy[dask]'")

from dask.sizeof import sizeof                                       # noqa: E402
from distributed.protocol import deserialize_bytes, serialize_bytelist  # noqa: E402

from kvcy.mapping import KvcyMapping                                 # noqa: E402


def kvcy_spill_buffer(worker_local_directory, target=64 * 2**20):
    """Worker data: up to target bytes in memory, the rest in kvcy (as docs/guide.md)."""
    slow = KvcyMapping(os.path.join(worker_local_directory, "kvcy-spill"), key_type="literal")
    return zict.Buffer({}, zict.Func(partial(serialize_bytelist, on_error="raise"),
                                     deserialize_bytes, slow),
                       n=target, weight=lambda key, value: sizeof(value))


def make_block(i):
    return bytes([i]) * 10_000


def test_local_cluster_workers_spill_to_kvcy():
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None,
                                  data=(kvcy_spill_buffer, {"target": 50_000})) as cluster, \
            distributed.Client(cluster) as client:
        blocks = client.map(make_block, range(40))
        total = client.submit(lambda parts: sum(len(p) for p in parts), blocks)
        assert total.result(timeout=60) == 40 * 10_000
        assert client.gather(blocks[7]) == bytes([7]) * 10_000
        spilled = 0
        for worker in cluster.workers.values():
            buffer = worker.data
            assert isinstance(buffer, zict.Buffer)
            store = buffer.slow.d
            assert isinstance(store, KvcyMapping)
            spilled += len(store)
            for key in list(store)[:3]:       # spilled frames read back as the task's value
                assert deserialize_bytes(store[key]) == buffer[key]
        assert spilled >= 20                  # 400 kB of blocks, 2 x 50 kB kept in memory
