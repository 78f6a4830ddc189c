"""FAISS builds in these tests run on one thread: two OpenMP threads spin against each other on a shared, busy
2-core machine (k-means measured 4x slower), and the tests assert behaviour, never speed."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="package")
def one_faiss_thread():
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)
