"""Benchmarks for clipsearch: ``python -m benchmarks`` runs them all (see benchmarks/README.md)."""
