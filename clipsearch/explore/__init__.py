"""Exploring the space: what the vectors say about the library as a whole.

Each analysis is a function over ``(ids, vectors)`` (the catalog's unit vectors, in id order) that returns small
typed results; ``Library`` feeds them from its read API and caches the costly ones in the index folder.

    neighbours.py   nearest neighbours and similar pairs: FAISS flat, or a cell join (FAISS k-means + BLAS)
    duplicates.py   the same picture twice: content digests, vector range search, a pixel check, a keeper
    outliers.py     odd ones out, from the distances to the nearest neighbours
    themes.py       k-means in the full space, k chosen by silhouette, named by zero-shot labels
    projection.py   the 2-D map (openTSNE), new photos placed without recomputing the rest
    userfiles.py    reading a labels or captions file the user named, with one clear error line
    labels.py       vocabularies and prompt-template averaging (as open_clip's zero-shot classifier does)
    evaluate.py     text-to-image recall@K and MRR from a captions file
    cache.py        results stamped with the catalog state and model, written atomically

Nothing here imports torch; FAISS, scikit-learn and openTSNE are imported when an analysis runs.
"""
