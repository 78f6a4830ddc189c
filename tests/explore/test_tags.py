"""Zero-shot tags: scored per label, saved in the catalog (schema step m003), and usable as a search filter."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from clipsearch import ClipsearchError, SearchFilter
from clipsearch.cli import main
from clipsearch.store.catalog import SCHEMA_VERSION, Catalog
from clipsearch.world.synthetic import COLOURS


def test_colour_tags_name_colours_the_captions_mention(planted):
    tagged = planted.library.tag(list(COLOURS))
    scenes = [p for p in tagged if Path(p.path).name in planted.captions]
    assert len(scenes) >= len(planted.captions) // 3
    right = [re.search(rf"\b{label}\b", planted.captions[Path(p.path).name]) is not None
             for p in scenes for label, _ in p.tags]
    assert sum(right) / len(right) >= 0.9
    assert all(0.5 <= s <= 1 for p in tagged for _, s in p.tags)
    assert all([s for _, s in p.tags] == sorted((s for _, s in p.tags), reverse=True) for p in tagged)


def test_a_label_scores_the_same_whatever_else_is_asked(planted):
    alone = {p.id: dict(p.tags)["red"] for p in planted.library.tag(["red"], min_score=0.0)}
    along = {p.id: dict(p.tags)["red"] for p in planted.library.tag(["red", "circle", "beach"], min_score=0.0)}
    assert alone.keys() == along.keys() and all(abs(alone[i] - along[i]) < 1e-5 for i in alone)


def test_saved_tags_filter_a_search(own_copy):
    library = own_copy()
    tagged = {p.id for p in library.tag(["red", "blue"], save=True) if "red" in dict(p.tags)}
    assert library.tag_counts()["red"] == len(tagged) > 0
    hits = library.search("a circle", top_k=500, where=SearchFilter(tag="red"))
    assert hits and {h.id for h in hits} == tagged
    assert library.search("a circle", where=SearchFilter(tag="no such tag")) == []
    assert library.saved_tags([h.id for h in hits[:1]])[hits[0].id][0][0] in ("red", "blue")


def test_saving_again_replaces_the_tags_of_those_labels_only(own_copy):
    library = own_copy()
    library.tag(["red", "green"], save=True)
    greens = library.tag_counts()["green"]
    library.tag(["red"], min_score=0.99, save=True)
    counts = library.tag_counts()
    assert counts["green"] == greens
    assert counts.get("red", 0) == len(library.tag(["red"], min_score=0.99))


def test_search_cli_filters_by_tag_and_prints_ids(own_copy):
    library = own_copy()
    runner = CliRunner()
    saved = runner.invoke(main, ["tag", "--index", str(library.directory), "--labels", "red, blue", "--save"])
    assert saved.exit_code == 0, saved.output
    result = runner.invoke(main, ["search", "circle", "--tag", "red", "--index", str(library.directory), "--top", "3"])
    assert result.exit_code == 0, result.output
    for line in result.output.strip().splitlines():
        score, file_id, path = line.split(maxsplit=2)
        assert file_id.startswith("#") and "red" in dict(library.saved_tags([int(file_id[1:])])[int(file_id[1:])])


def test_a_tag_goes_when_its_file_goes_or_changes(own_copy):
    library = own_copy()
    tagged = [p.id for p in library.tag(["red"], min_score=0.0, save=True)]
    writer = Catalog.open(str(library.directory / "catalog.sqlite"))
    writer.delete(tagged[:1])
    row = library.file(tagged[1])
    from clipsearch.store.catalog import Embedded, FileStat

    writer.store_embedded([Embedded(FileStat(row.path, row.size, row.mtime_ns, row.inode, row.device), "x" * 32,
                                    row.width, row.height, library.vector_of(tagged[2]))])
    writer.close()
    left = library.saved_tags(tagged)
    assert tagged[0] not in left and tagged[1] not in left and tagged[2] in left


def test_a_catalog_from_before_tags_gains_the_tags_table_and_keeps_its_files(tmp_path, own_copy):
    library = own_copy()
    count = library.status().files
    path = library.directory / "catalog.sqlite"
    library.close()
    db = sqlite3.connect(path)
    db.executescript("DROP TRIGGER tags_follow_deletes; DROP TRIGGER tags_follow_new_vectors; DROP TABLE tags;"
                     f"UPDATE meta SET value = '{SCHEMA_VERSION - 1}' WHERE key = 'schema_version';")
    db.close()
    catalog = Catalog.open(str(path))  # the last step (m004_tags) runs again
    assert catalog.counts()["files"] == count and catalog.tag_counts() == {}
    catalog.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    db.close()


@pytest.mark.parametrize("labels", [[], ["", "  "]])
def test_tagging_without_labels_is_refused(planted, labels):
    with pytest.raises(ClipsearchError, match="no labels"):
        planted.library.tag(labels)
