"""What the web app's Explore views do, without the layout: the map, themes, duplicates and odd ones out.

Each is a thin layer over the library's own analysis (``Library.map``, ``themes``, ``duplicates``,
``outliers``): files are named by catalog id, pictures are thumbnails the app made (``SearchService``), and
nothing here deletes, moves or opens a file a request names. Lists of photos go to the results gallery as a
fixed listing (``SearchService.listed``), so "load more", the preview and its keyboard work as for a search.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import os
import tempfile
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from clipsearch import DuplicateGroup, QueryError, Theme
from ui.service import Outcome, SearchService, human_bytes, parse_number

COLOUR_BY = {"theme": "theme", "folder": "folder", "date": "date taken"}
# Twenty colours that stay apart on white (Tableau 20, reordered so the first ten are the strong ones).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5")
# Dates run from old to new along a sequential scale (viridis, eight steps): colour reads as time.
DATE_PALETTE = ("#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725")
OTHER = "#b0b0b0"
DEFAULT_OUTLIERS = 48
DUPLICATE_THRESHOLD = 0.90  # the library's default (clipsearch.explore.duplicates.DEFAULT_THRESHOLD)


def parse_labels(text: str | None) -> list[str] | None:
    """The user's own label list: one label per line (blank lines and ``#`` comments ignored); ``None`` for
    the default vocabulary."""
    labels = [line.strip() for line in (text or "").splitlines()]
    labels = [label for label in labels if label and not label.startswith("#")]
    if len(labels) > 2000:
        raise QueryError("give at most 2000 labels, one per line")
    return labels or None


@dataclass(frozen=True)
class ThemeCard:
    """A theme as a card: its name, size, representative thumbnail, and its photos' ids."""

    name: str
    ids: tuple[int, ...]
    representative_id: int
    thumbnail: str | None

    @property
    def caption(self) -> str:
        return f"{self.name} · {len(self.ids)} photo{'s' if len(self.ids) != 1 else ''}"


class ExploreService:
    """The Explore views over the library of a ``SearchService`` (whose thumbnails and listings they share)."""

    def __init__(self, service: SearchService):
        self.service = service
        self.library = service.library
        self._exports: Path | None = None

    # -- the map ------------------------------------------------------------------------------------------
    def map_data(self, colour_by: str = "theme", labels: str | None = None) -> dict:
        """The map for the page's drawer: every photo's id and coordinates scaled into [0, 1] (aspect kept),
        a colour group per photo and the legend of the groups."""
        colour_by = (colour_by or "theme").strip().lower()
        if colour_by not in COLOUR_BY:
            raise QueryError(f"colour the map by one of {', '.join(COLOUR_BY)}, not {colour_by!r}")
        points = self._mapped(labels)
        if not points:
            return {"ids": [], "x": [], "y": [], "group": [], "legend": [], "by": colour_by}
        xs, ys = [p.x for p in points], [p.y for p in points]
        left, bottom = min(xs), min(ys)
        span = max(max(xs) - left, max(ys) - bottom) or 1.0
        if colour_by == "theme":
            keys = [p.theme for p in points]
            group, legend = _categories(keys)
        elif colour_by == "folder":
            keys = [os.path.dirname(p.path) for p in points]
            group, legend = _categories(keys, name=_short_folder)
        else:
            rows = self.library.files([p.id for p in points])
            taken = [_taken(rows.get(p.id)) for p in points]
            group, legend = _date_bins(taken)
        return {
            "ids": [p.id for p in points],
            "x": [round((x - left) / span, 5) for x in xs],
            "y": [round((y - bottom) / span, 5) for y in ys],
            "group": group,
            "legend": legend,
            "by": colour_by,
        }

    def map_api(self, labels: str | None = None) -> list[dict]:
        """``/map``: every photo's id, file name, coordinates and theme, in id order (``Library.map``)."""
        return [{"id": p.id, "name": os.path.basename(p.path), "x": round(p.x, 4), "y": round(p.y, 4),
                 "theme": p.theme} for p in self._mapped(labels)]

    def _mapped(self, labels: str | None) -> list:
        """``Library.map`` without rows that point outside the indexed folders (a catalog edited behind the
        app's back): a cheap check on the path's text, for every point; whatever is shown larger than a point
        is checked in full when its thumbnail is made."""
        inside = self._inside_roots()
        return [p for p in self.library.map(labels=parse_labels(labels)) if inside(p.path)]

    def _inside_roots(self):
        roots = tuple(r.rstrip(os.sep) + os.sep for r in self.library.roots())
        return lambda path: path.startswith(roots)

    def selection(self, ids, how: str = "selected on the map") -> Outcome:
        """The photos of a map selection, in the order the map gave them (ids the catalog no longer has are
        dropped; nothing is opened by what a request names but a catalog id)."""
        chosen = _ids(ids)
        return self.service.listed(chosen, f"{len(chosen)} {how}")

    # -- themes -------------------------------------------------------------------------------------------
    def themes(self, labels: str | None = None) -> list[Theme]:
        return self.library.themes(labels=parse_labels(labels))

    def theme_cards(self, labels: str | None = None, themes: list[Theme] | None = None) -> list[ThemeCard]:
        themes = self.themes(labels) if themes is None else themes
        thumbs = self.service.thumbnails([t.representative_id for t in themes])
        return [ThemeCard(t.name, t.ids, t.representative_id, thumbs.get(t.representative_id)) for t in themes]

    def theme_photos(self, card: ThemeCard | dict) -> Outcome:
        if isinstance(card, dict):
            card = ThemeCard(card["name"], tuple(card["ids"]), card["representative_id"], None)
        ids = [card.representative_id, *(i for i in card.ids if i != card.representative_id)]
        return self.service.listed(ids, f"the theme “{card.name}”, its most typical photo first")

    def themes_api(self, labels: str | None = None) -> list[dict]:
        """``/themes``: each theme's name, size, photo ids and representative (with its thumbnail, ``None`` when
        it cannot be shown), largest first (``Library.themes``)."""
        themes, inside = self.themes(labels), self._inside_roots()
        return [{"name": c.name, "size": len(c.ids), "ids": [i for i, p in zip(t.ids, t.paths) if inside(p)],
                 "representative_id": c.representative_id, "thumbnail": _url(c.thumbnail),
                 "labels": [{"label": n, "z": round(z, 4)} for n, z in t.labels]}
                for t, c in zip(themes, self.theme_cards(themes=themes))]

    # -- duplicates ---------------------------------------------------------------------------------------
    def duplicates(self, threshold=None) -> list[DuplicateGroup]:
        threshold = DUPLICATE_THRESHOLD if threshold in (None, "") else _float(threshold, "similarity threshold")
        return self.library.duplicates(threshold=threshold)

    def duplicate_members(self, groups: list[DuplicateGroup]) -> list[list[dict]]:
        """Each group's members (keeper first) with their facts and thumbnail, as the page and ``/duplicates``
        show them."""
        rows = self.library.files([i for g in groups for i in g.ids])
        thumbs = self.service.thumbnails([i for g in groups for i in g.ids])
        listed = []
        for group in groups:
            members = []
            for rank, file_id in enumerate(group.ids):
                row = rows.get(file_id)
                if row is None or file_id not in thumbs:
                    continue  # vanished, or refused (outside the indexed folders): never shown
                members.append({"id": file_id, "name": os.path.basename(row.path), "file": row.path,
                                "width": row.width, "height": row.height, "bytes": row.size, "keep": rank == 0,
                                "thumbnail": _url(thumbs.get(file_id))})
            listed.append(members)
        return listed

    def duplicates_api(self, threshold=None) -> list[dict]:
        """``/duplicates``: the groups, most similar first, each with its lowest similarity, the suggested
        keeper's id and the members (keeper first)."""
        groups = self.duplicates(threshold)
        return [{"similarity": round(g.similarity, 6), "keep_id": g.keep_id, "ids": list(g.ids), "members": m}
                for g, m in zip(groups, self.duplicate_members(groups))]

    def duplicates_html(self, groups: list[DuplicateGroup]) -> str:
        """The groups side by side: each photo with its size on disk and in pixels, the keeper marked."""
        if not groups:
            return ("<p class='dup-none'>No duplicates at this similarity. Lower the threshold to find looser "
                    "copies (resized, recompressed, cropped).</p>")
        parts = []
        for number, (group, members) in enumerate(zip(groups, self.duplicate_members(groups))):
            figures = []
            for m in members:
                size = f"{m['width']} × {m['height']} px" if m["width"] and m["height"] else "size unknown"
                badge = "<span class='dup-keep'>✓ keep</span>" if m["keep"] else ""
                image = (f"<img src='{html.escape(m['thumbnail'])}' alt='{html.escape(m['name'])}' loading='lazy'>"
                         if m["thumbnail"] else "<div class='dup-missing'>not shown</div>")
                figures.append(
                    f"<figure class='dup-member{' dup-keeper' if m['keep'] else ''}' data-id='{m['id']}'>"
                    f"{image}<figcaption>{badge}<b>{html.escape(m['name'])}</b><br>{size} · "
                    f"{human_bytes(m['bytes'])}</figcaption></figure>")
            parts.append(
                f"<div class='dup-group' data-group='{number}'><div class='dup-head'>group {number + 1} · "
                f"{len(members)} photos · similarity ≥ {group.similarity:.3f} · "
                f"<button class='dup-show' data-group='{number}'>show in the gallery</button></div>"
                f"<div class='dup-members'>{''.join(figures)}</div></div>")
        return "".join(parts)

    def duplicates_summary(self, groups: list[DuplicateGroup], threshold) -> str:
        copies = sum(len(g.ids) - 1 for g in groups)
        return (f"**{len(groups)} group{'s' if len(groups) != 1 else ''}** of the same picture, {copies} copies "
                f"beside their keepers (similarity ≥ {_float(threshold, 'similarity threshold'):.2f}, pixels "
                "checked). The keeper has the most pixels, then the largest file. Nothing is deleted or moved: "
                "export the list and decide.")

    def export_duplicates(self, groups: list[DuplicateGroup]) -> tuple[str, str]:
        """The list as CSV (one row per photo) and JSON (one object per group), written to files in Gradio's
        cache for the download buttons."""
        members = self.duplicate_members(groups)
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["group", "similarity", "keep", "id", "path", "width", "height", "bytes"])
        for number, (group, rows) in enumerate(zip(groups, members), start=1):
            for m in rows:
                writer.writerow([number, f"{group.similarity:.6f}", "yes" if m["keep"] else "no", m["id"],
                                 m["file"], m["width"] or "", m["height"] or "", m["bytes"]])
        listing = [{"group": n, "similarity": round(g.similarity, 6), "keep": rows[0]["file"] if rows else None,
                    "members": [{k: m[k] for k in ("id", "file", "width", "height", "bytes", "keep")} for m in rows]}
                   for n, (g, rows) in enumerate(zip(groups, members), start=1)]
        folder = Path(tempfile.mkdtemp(dir=self._export_folder()))
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        csv_path, json_path = folder / f"duplicates-{stamp}.csv", folder / f"duplicates-{stamp}.json"
        csv_path.write_text(text.getvalue(), encoding="utf-8")
        json_path.write_text(json.dumps(listing, indent=2, ensure_ascii=False), encoding="utf-8")
        return str(csv_path), str(json_path)

    def group_photos(self, groups: list[DuplicateGroup], number) -> Outcome:
        number = int(_float(number, "group", 0))
        if not 0 <= number < len(groups):
            raise QueryError("that duplicate group is no longer listed; find the duplicates again")
        return self.service.listed(groups[number].ids, f"duplicate group {number + 1}, the keeper first")

    def _export_folder(self) -> Path:
        # Inside Gradio's cache, like the checked originals: a file there is served as made by the app.
        if self._exports is None:
            from gradio.utils import get_upload_folder

            self._exports = Path(get_upload_folder()) / "clipsearch-exports"
        self._exports.mkdir(parents=True, exist_ok=True)
        return self._exports

    # -- odd ones out -------------------------------------------------------------------------------------
    def outliers(self, top=None) -> Outcome:
        found = self.library.outliers(top=self._top(top))
        return self.service.listed([o.id for o in found], "the odd ones out, most unusual first (score: mean "
                                   "distance to the nearest photos)", [o.score for o in found])

    def outliers_api(self, top=None) -> list[dict]:
        """``/outliers``: the most unusual photos first, with their score and thumbnail (``Library.outliers``)."""
        found = self.library.outliers(top=self._top(top))
        thumbs = self.service.thumbnails([o.id for o in found])
        return [{"id": o.id, "name": os.path.basename(o.path), "score": round(o.score, 6),
                 "thumbnail": _url(thumbs[o.id])} for o in found if o.id in thumbs]

    @staticmethod
    def _top(top) -> int:
        top = int(_float(top, "number of odd ones out", DEFAULT_OUTLIERS))
        if not 1 <= top <= 1000:
            raise QueryError("ask for between 1 and 1000 odd ones out")
        return top


def _categories(keys: list[str], name=lambda key: key) -> tuple[list[int], list[dict]]:
    """A colour group per key, the most common first; past the palette's twenty, one grey "other"."""
    counts = Counter(keys)
    ordered = [key for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    shown = ordered[:len(PALETTE)] if len(ordered) <= len(PALETTE) else ordered[:len(PALETTE) - 1]
    index = {key: n for n, key in enumerate(shown)}
    legend = [{"name": name(key) or "(none)", "colour": PALETTE[n], "count": counts[key]}
              for n, key in enumerate(shown)]
    if len(shown) < len(ordered):
        legend.append({"name": f"{len(ordered) - len(shown)} others", "colour": OTHER,
                       "count": sum(counts[k] for k in ordered[len(shown):])})
    other = len(shown)
    return [index.get(key, other) for key in keys], legend


def _date_bins(taken: list[float]) -> tuple[list[int], list[dict]]:
    """Eight bins of equal counts from the oldest date taken to the newest (a library shot in one week still
    spreads over the scale)."""
    order = sorted(range(len(taken)), key=taken.__getitem__)
    bins = min(len(DATE_PALETTE), len(taken))
    group = [0] * len(taken)
    legend = []
    for b in range(bins):
        members = order[b * len(order) // bins:(b + 1) * len(order) // bins]
        for i in members:
            group[i] = b
        if members:
            low, high = _day(taken[members[0]]), _day(taken[members[-1]])
            legend.append({"name": low if low == high else f"{low} – {high}", "colour": DATE_PALETTE[b],
                           "count": len(members)})
    return group, legend


def _taken(row) -> float:
    if row is None:
        return 0.0
    return (row.mtime_ns if row.taken_ns is None else row.taken_ns) / 1e9


def _day(epoch: float) -> str:
    try:
        return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return "unknown"


def _short_folder(path: str) -> str:
    parts = Path(path).parts
    return os.path.join(*parts[-2:]) if len(parts) >= 2 else path


def _url(thumbnail: str | None) -> str | None:
    return None if thumbnail is None else "/gradio_api/file=" + urllib.parse.quote(thumbnail)


def _ids(ids) -> list[int]:
    if isinstance(ids, str):
        ids = ids.replace(",", " ").split()
    try:
        chosen = [int(i) for i in (ids or [])]
    except (TypeError, ValueError):
        raise QueryError("a selection is a list of photo ids") from None
    if len(chosen) > 1_000_000:
        raise QueryError("a selection holds at most a million photos")
    return list(dict.fromkeys(chosen))


def _float(value, what: str, default: float = DUPLICATE_THRESHOLD) -> float:
    return parse_number(value, what, default)
