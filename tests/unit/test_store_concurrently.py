"""Store.concurrently: independent reads of one page at once, results in the order
asked, an error raised as it was."""

from __future__ import annotations

import pytest

from aitrail_collector.errors import StoreError
from aitrail_collector.store.client import Store


def test_results_come_in_order_and_errors_as_raised(tmp_path):
    store = Store(f"chdb://{tmp_path}/a")
    try:
        calls = [lambda n=n: int(store.query(f"SELECT {n} + sleepEachRow(0.01)"
                                              " FROM numbers(3)").result_rows[0][0])
                 for n in range(4)]
        assert store.concurrently(calls) == [0, 1, 2, 3]
        assert store.concurrently([]) == []

        def boom() -> int:
            raise StoreError("a read failed")
        with pytest.raises(StoreError, match="a read failed"):
            store.concurrently([calls[0], boom])
    finally:
        store.close()


def test_close_closes_the_readers_clients_so_the_engine_lets_the_directory_go(tmp_path):
    store = Store(f"chdb://{tmp_path}/a")
    read = [lambda: store.query("SELECT count() FROM system.one").result_rows] * 3
    assert store.concurrently(read) == [[(1,)]] * 3
    store.close()
    other = Store(f"chdb://{tmp_path}/b")  # refused while a client of a/ is open
    try:
        assert other.concurrently([lambda: other.query("SELECT 1").result_rows,
                                   lambda: other.query("SELECT 2").result_rows]) == [[(1,)], [(2,)]]
    finally:
        other.close()
