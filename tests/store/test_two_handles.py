"""Two handles on one store in one process (a test beside a server, a placer beside the API):
DuckDB keeps SQL functions per database instance, so both must still answer similarity()."""

from __future__ import annotations

from store import Store
from tests.conftest import DemoStore


def test_two_handles_on_one_store_both_run_similarity(demo_store: DemoStore) -> None:
    query = "SELECT id FROM tracks ORDER BY similarity(id, 1) DESC NULLS LAST LIMIT 4"
    first = Store.open(demo_store.store)
    second = Store.open(demo_store.store)
    try:
        a = first.sql(query).rows
        b = second.sql(query).rows
        assert a == b and a[0] == (1,) and len(a) == 4
        first.close()
        assert second.sql(query).rows == a  # the first one closing does not take the function away
    finally:
        first.close()
        second.close()
    with Store.open(demo_store.store) as third:  # and a later handle registers it afresh
        assert third.sql(query).rows == a
