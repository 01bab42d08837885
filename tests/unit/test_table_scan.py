"""Bounded reads of table partitions (streams/table_scan.py) on real RocksDB databases, and the
paged `GET /ats` built on them: however the partitions are spread over workers and whatever the
budget, following `next_after` lists every matching SKU exactly once, in order."""

from __future__ import annotations

import tempfile

import rocksdict
from hypothesis import given, settings, strategies as st

from streams import api_views as views
from streams.partitioning import partition_for
from streams.table_scan import FAUST_OFFSET_KEY, read_owned, read_partition
from tests.unit.test_api_views import sku_value

PARTITIONS = 4


def open_partitions(directory: str, skus: dict[str, int]) -> dict[int, rocksdict.Rdict]:
    dbs = {p: rocksdict.Rdict(f"{directory}/{p}", options=rocksdict.Options(raw_mode=True)) for p in range(PARTITIONS)}
    for p, db in dbs.items():
        db.put(FAUST_OFFSET_KEY, b"17")  # Faust's own key: never read as a SKU
    for sku, on_hand in skus.items():
        key = sku.encode()
        dbs[partition_for(key, PARTITIONS)].put(key, sku_value(sku, on_hand).encode())
    return dbs


def close(dbs):
    for db in dbs.values():
        db.close()


def test_a_partition_is_read_in_slices_that_resume_where_they_stopped():
    with tempfile.TemporaryDirectory() as directory:
        db = rocksdict.Rdict(directory, options=rocksdict.Options(raw_mode=True))
        for i in range(10):
            db.put(f"K{i}".encode(), b"v")
        db.put(FAUST_OFFSET_KEY, b"3")
        first = read_partition(db, None, 4)
        assert [k for k, _ in first.items] == [b"K0", b"K1", b"K2", b"K3"] and first.resume_after == b"K3"
        rest = read_partition(db, first.resume_after, 100)
        assert [k for k, _ in rest.items] == [f"K{i}".encode() for i in range(4, 10)] and rest.resume_after is None
        assert read_partition(db, b"K35", 2).items[0][0] == b"K4"  # after a key that is not there
        db.close()


def test_a_merged_read_leaves_nothing_out_before_where_it_stopped():
    with tempfile.TemporaryDirectory() as directory:
        dbs = open_partitions(directory, {f"S{i:03d}": i for i in range(50)})
        part = read_owned(dbs, range(PARTITIONS), None, 10)
        keys = [k for k, _ in part.items]
        assert 0 < len(keys) <= 10 and part.resume_after == keys[-1]
        assert keys == [f"S{i:03d}".encode() for i in range(len(keys))]  # in order, none left out
        assert read_owned(dbs, range(PARTITIONS), None, 1000).resume_after is None
        assert read_owned(dbs, [], None, 10).items == []
        close(dbs)


def list_page(dbs, spread: list[list[int]], query: views.AtsQuery, budget: int) -> dict:
    """What `GET /ats` answers: each worker reads its partitions, the answers are merged."""
    answers = []
    after = None if query.after is None else query.after.encode()
    for owned in spread:
        read = read_owned(dbs, owned, after, budget)
        answers.append(views.local_ats_read(read.items, read.resume_after, query, owned))
    return views.merge_ats_answers(answers, query.limit)


@settings(max_examples=40, deadline=None)
@given(
    st.dictionaries(st.text("ABC-é0", min_size=1, max_size=5), st.integers(-3, 30), max_size=60),
    st.lists(st.integers(0, 2), min_size=PARTITIONS, max_size=PARTITIONS),
    st.one_of(st.integers(1, 12), st.just(1000)), st.integers(1, 15), st.sampled_from([None, 10]), st.sampled_from([None, "a", "0"]),
)
def test_pages_list_every_matching_sku_once_in_order(skus, workers_of, budget, limit, below, q):
    spread = [[p for p in range(PARTITIONS) if workers_of[p] == w] for w in range(3)]
    spread = [owned for owned in spread if owned]
    expected = sorted(s for s, on_hand in skus.items() if (below is None or on_hand < below) and (q is None or q in s.lower()))
    with tempfile.TemporaryDirectory() as directory:
        dbs = open_partitions(directory, skus)
        listed, after, pages = [], None, 0
        while True:
            page = list_page(dbs, spread, views.AtsQuery(below=below, q=q, limit=limit, after=after), budget)
            assert len(page["items"]) <= limit and page["partitions"] == list(range(PARTITIONS))
            # total: exact when every worker read to its end, counting the matches after `after`.
            assert page["total"] is None or page["total"] == len(expected) - len(listed)
            if pages == 0 and budget >= PARTITIONS * len(skus):  # every partition read whole: the count is known
                assert page["total"] == len(expected)
            listed += [item["sku"] for item in page["items"]]
            pages += 1
            assert pages <= len(skus) + 2, "paging does not advance"
            if page["next_after"] is None:
                assert not page["truncated"]
                break
            assert page["truncated"] and (after is None or page["next_after"] > after)
            after = page["next_after"]
        close(dbs)
    assert listed == expected
