"""The FAISS index type is chosen by size: exact below the crossover, IVF-PQ re-ranked exactly above it. Its type
and parameters travel in the file's header and stamp; another type is rebuilt, never mixed; additions and
removals never rebuild; a type that no longer suits the size is rebuilt in the background while the old index
answers; an approximate index is memory-mapped."""

from __future__ import annotations

import numpy as np
import pytest

from clipsearch.store.catalog import Catalog, Embedded, FileStat
from clipsearch.store.vectors import (
    FLAT,
    DerivedIndex,
    IndexPolicy,
    IndexType,
    VectorIndex,
    approximate_type,
    read_stamp,
)
from clipsearch.world.vectors import clustered_unit_vectors

FORCED = IndexPolicy(approximate=True)


@pytest.fixture
def rebuilds(monkeypatch) -> list[str]:
    """The index types of every full build from the catalog's vectors."""
    from clipsearch.store import vectors as vectors_module

    calls: list[str] = []
    original = vectors_module.VectorIndex.build_from_chunks.__func__

    def counting(cls, chunks, stamp):
        calls.append(IndexType.from_dict(stamp.get("index")).factory)
        return original(cls, chunks, stamp)

    monkeypatch.setattr(vectors_module.VectorIndex, "build_from_chunks", classmethod(counting))
    return calls


def new_catalog(tmp_path, vectors: np.ndarray) -> Catalog:
    catalog = Catalog.open(str(tmp_path / "catalog.sqlite"), create=True)
    add(catalog, vectors, start=0)
    return catalog


def add(catalog: Catalog, vectors: np.ndarray, start: int) -> None:
    for offset in range(0, len(vectors), 5000):
        part = vectors[offset:offset + 5000]
        catalog.store_embedded(
            Embedded(FileStat(f"/photos/{start + offset + i:06d}.jpg", 1000, 0, start + offset + i, 1), "0" * 32,
                     64, 48, v) for i, v in enumerate(part))


def ids_of(catalog: Catalog, paths: list[str]) -> list[int]:
    return [row.id for row in catalog.rows_under("/photos").values() if row.path in paths]


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1)[:, :k]


@pytest.fixture(scope="module")
def at_20k(one_faiss_thread):
    """20,000 clustered 512-d vectors (+200 queries) in an IVF-PQ index, built once for this module."""
    data = clustered_unit_vectors(20_200, seed=3)
    queries, vectors = data[:200], data[200:]
    kind = approximate_type(len(vectors), 512)
    ids = np.arange(len(vectors), dtype=np.int64) * 7 + 1  # catalog ids are not positions
    index = VectorIndex.build(ids, vectors, {"index": kind.to_dict()})
    truth = ids[exact_top(vectors, queries, 10)]
    return index, vectors, queries, truth


def recall_at_10(index: VectorIndex, queries: np.ndarray, truth: np.ndarray) -> float:
    found = [[h.id for h in index.search(q, 10)] for q in queries]
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))


def test_the_approximate_index_finds_95_percent_of_the_exact_top_10_at_20k_vectors(at_20k):
    index, vectors, queries, truth = at_20k
    assert index.kind.approximate and index.kind.factory == "IVF128,PQ32np"
    index.use_stored_vectors(lambda wanted: (wanted, vectors[(wanted - 1) // 7]))
    assert recall_at_10(index, queries, truth) >= 0.95
    hits = index.search(queries[0], 10)
    true_scores = vectors[(np.array([h.id for h in hits]) - 1) // 7] @ queries[0]
    assert np.allclose([h.score for h in hits], true_scores, atol=1e-6)  # re-ranked by the true cosine
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_the_codes_alone_recall_far_less_so_the_exact_re_rank_is_what_reaches_95_percent(at_20k):
    index, vectors, queries, truth = at_20k
    index.use_stored_vectors(None)
    assert recall_at_10(index, queries, truth) < 0.9


def test_the_policy_chooses_flat_below_the_crossover_and_ivf_pq_above_it():
    assert IndexPolicy().choose(19_999, 512) == FLAT and IndexPolicy().choose(20_000, 512).approximate
    policy = IndexPolicy(crossover=50_000)
    assert policy.choose(49_999, 512) == FLAT
    big = policy.choose(1_000_000, 512)
    assert big.factory == "IVF1024,PQ32np" and big.nprobe == 16 and big.shortlist == 200
    assert policy.choose(200_000, 768).factory == "IVF512,PQ48np"
    assert IndexPolicy(approximate=True).choose(2_000, 16).factory.startswith("IVF32,PQ1x")
    assert IndexPolicy(approximate=True).choose(50, 16) == FLAT  # too few vectors to train on
    assert IndexPolicy(approximate=False).choose(10**7, 512) == FLAT


def test_the_policy_keeps_a_type_near_its_boundary_instead_of_rebuilding_back_and_forth():
    policy = IndexPolicy(crossover=1000)
    ivf = policy.choose(1000, 64)
    assert policy.keeps(FLAT, 999, 64) and not policy.keeps(FLAT, 1000, 64)
    assert policy.keeps(ivf, 600, 64) and not policy.keeps(ivf, 400, 64)  # down to half the crossover
    assert policy.keeps(ivf, 1500, 64)
    assert not policy.keeps(ivf, 40_000, 64)  # outgrown its lists
    assert not policy.keeps(IndexType(ivf.factory, ivf.nprobe + 1, ivf.shortlist), 1000, 64)  # other parameters


def test_the_file_header_records_the_type_and_its_parameters(tmp_path):
    catalog = new_catalog(tmp_path, clustered_unit_vectors(3000, dim=64, seed=1))
    derived = DerivedIndex(catalog, str(tmp_path / "vectors.faiss"), FORCED)
    index = derived.current()
    header = read_stamp(derived.path)
    assert header["index"] == index.kind.to_dict() == FORCED.choose(3000, 64).to_dict()
    assert header["index"]["factory"].startswith("IVF") and header["index"]["nprobe"] > 0
    assert header["count"] == 3000 and header["dim"] == 64
    assert "IVF" in derived.describe() and "re-ranked exactly" in derived.describe()


def test_a_file_of_another_type_is_replaced_never_mixed_while_it_answers(tmp_path, rebuilds):
    vectors = clustered_unit_vectors(3000, dim=64, seed=1)
    catalog = new_catalog(tmp_path, vectors)
    path = str(tmp_path / "vectors.faiss")
    DerivedIndex(catalog, path, FORCED).current()
    assert read_stamp(path)["index"]["factory"].startswith("IVF")
    rebuilds.clear()
    exact = DerivedIndex(catalog, path, IndexPolicy(approximate=False))
    answering = exact.current()
    assert answering.kind.approximate  # the old file answers meanwhile...
    assert exact.wait_for_rebuild(120)
    now = exact.current()
    assert rebuilds == [FLAT.factory] and now.kind == FLAT  # ...and is replaced by one of the wanted type
    assert read_stamp(path)["index"] == FLAT.to_dict()
    query = vectors[5]
    assert [h.id for h in now.search(query, 10)] == [int(i) + 1 for i in exact_top(vectors, query[None], 10)[0]]


def test_a_file_with_other_parameters_of_the_same_type_is_rebuilt(tmp_path, rebuilds):
    catalog = new_catalog(tmp_path, clustered_unit_vectors(3000, dim=64, seed=1))
    path = str(tmp_path / "vectors.faiss")
    wanted = FORCED.choose(3000, 64)
    odd = IndexType(wanted.factory, nprobe=1, shortlist=wanted.shortlist)
    derived = DerivedIndex(catalog, path, FORCED)
    with catalog.snapshot():
        VectorIndex.build_from_chunks(list(catalog.vector_chunks()),
                                      dict(derived.stamp(), index=odd.to_dict())).save(path)
    rebuilds.clear()
    derived.save()  # what an index run does at its end: nothing answers here, so the rebuild runs now
    assert rebuilds == [wanted.factory]
    assert read_stamp(path)["index"] == wanted.to_dict()


def test_additions_and_removals_update_an_approximate_index_without_a_rebuild(tmp_path, rebuilds):
    vectors = clustered_unit_vectors(4000, dim=64, seed=2)
    catalog = new_catalog(tmp_path, vectors[:3000])
    path = str(tmp_path / "vectors.faiss")
    DerivedIndex(catalog, path, FORCED).current()
    reader = DerivedIndex(catalog, path, FORCED)
    loaded = reader.current()
    assert loaded.kind.approximate and len(loaded) == 3000
    rebuilds.clear()
    add(catalog, vectors[3000:], start=3000)  # 1000 new photos
    gone = ids_of(catalog, [f"/photos/{i:06d}.jpg" for i in range(0, 3000, 3)])
    catalog.delete(gone)  # and a third of the old ones deleted
    index = reader.current()
    assert rebuilds == [] and index is loaded
    assert len(index) == 3000
    assert not set(gone) & set(index.ids().tolist())
    new_id = ids_of(catalog, ["/photos/003500.jpg"])[0]
    assert index.search(vectors[3500], 1)[0].id == new_id  # a new vector is found...
    assert all(h.id not in gone for h in index.search(vectors[3], 50))  # ...and a deleted one never is
    writer = DerivedIndex(catalog, path, FORCED)
    writer.save()
    assert rebuilds == [] and read_stamp(path)["count"] == 3000  # the caught-up index is what gets saved


def test_an_approximate_index_is_memory_mapped_until_it_changes(tmp_path):
    vectors = clustered_unit_vectors(3000, dim=64, seed=4)
    catalog = new_catalog(tmp_path, vectors)
    path = str(tmp_path / "vectors.faiss")
    DerivedIndex(catalog, path, FORCED).current()
    loaded = VectorIndex.load(path, {})
    with open("/proc/self/maps") as maps:
        assert path in maps.read()  # its inverted lists are read from the page cache, not copied into RAM
    loaded.use_stored_vectors(catalog.vectors_of)
    assert loaded.search(vectors[7], 1)[0].id == 8
    extra = clustered_unit_vectors(10, dim=64, seed=5)
    assert loaded.apply(np.arange(5000, 5010), extra, np.array([8]), stamp={})
    with open("/proc/self/maps") as maps:
        assert path not in maps.read()  # the first change copied its codes into memory
    loaded.use_stored_vectors(None)  # the new ids are not in the catalog: rank by the codes
    assert 5003 in [h.id for h in loaded.search(extra[3], 10)]
    assert 8 not in [h.id for h in loaded.search(vectors[7], 50)]


def test_a_filtered_search_over_a_few_ids_is_exact(tmp_path):
    vectors = clustered_unit_vectors(3000, dim=64, seed=6)
    catalog = new_catalog(tmp_path, vectors)
    index = DerivedIndex(catalog, str(tmp_path / "vectors.faiss"), FORCED).current()
    allowed = np.arange(1, 3001, 37)  # ids spread over many clusters
    query = vectors[100]
    expected = allowed[np.argsort(-(vectors[allowed - 1] @ query))[:5]]
    assert [h.id for h in index.search(query, 5, allowed)] == expected.tolist()


def test_growing_past_the_crossover_rebuilds_in_the_background_while_the_flat_index_answers(tmp_path, rebuilds):
    vectors = clustered_unit_vectors(1400, dim=64, seed=7)
    catalog = new_catalog(tmp_path, vectors[:800])
    policy = IndexPolicy(crossover=1000)
    reader = DerivedIndex(catalog, str(tmp_path / "vectors.faiss"), policy)
    assert reader.current().kind == FLAT
    rebuilds.clear()
    add(catalog, vectors[800:], start=800)
    answering = reader.current()
    assert answering.kind == FLAT and len(answering) == 1400  # caught up, answering at once
    assert answering.search(vectors[1300], 1)[0].id == 1301
    assert reader.wait_for_rebuild(120)
    grown = reader.current()
    assert rebuilds == [policy.choose(1400, 64).factory]
    assert grown.kind.approximate and len(grown) == 1400
    hits = grown.search(vectors[1300], 5)
    assert hits[0].id == 1301
    assert np.allclose([h.score for h in hits], vectors[[h.id - 1 for h in hits]] @ vectors[1300], atol=1e-6)
    assert read_stamp(reader.path)["index"]["factory"].startswith("IVF")
