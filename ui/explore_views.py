"""The Explore views of the web app (layout and events): the map, themes, duplicates, odd ones out.

A view switch above the search bar chooses Search or one of these; each view is a full-width panel above the
results, and whatever it lists (a map selection, a theme, a duplicate group, the odd ones out) fills the results
gallery below it, whose preview and keyboard work as after a search. ``ui.explore`` does the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ui.explore import COLOUR_BY, DEFAULT_OUTLIERS, DUPLICATE_THRESHOLD, ExploreService, ThemeCard, _url

ASSETS = Path(__file__).resolve().parent / "assets"
MAP_JS = (ASSETS / "map.js").read_text(encoding="utf-8")
VIEWS = [("Search", "search"), ("Map", "map"), ("Themes", "themes"), ("Duplicates", "duplicates"),
         ("Odd ones out", "outliers")]
# The page's hits reach the map as a window event: the gallery's ids after every listing (also kept on
# window, for a map drawn later).
HITS_JS = """
const send = () => { window.clipsearchHits = props.value || [];
                     window.dispatchEvent(new CustomEvent('clipsearch-hits', {detail: window.clipsearchHits})); };
watch('value', send);
"""
DUPLICATES_JS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('button.dup-show');
  if (button) trigger('showgroup', {group: Number(button.dataset.group)});
});
"""
SCROLL_TO_RESULTS = "() => document.querySelector('#summary')?.scrollIntoView({block: 'start'})"


@dataclass
class ExploreViews:
    switch: gr.Radio
    panels: dict  # view name -> gr.Column
    map: gr.HTML
    colour_by: gr.Radio
    hits: gr.HTML
    labels: gr.Textbox
    name_themes: gr.Button
    theme_cards: gr.Gallery
    themes: gr.State  # the ThemeCard list on screen, in card order
    threshold: gr.Slider
    duplicates_summary: gr.Markdown
    duplicates: gr.HTML
    groups: gr.State  # the DuplicateGroup list on screen
    export_csv: gr.DownloadButton
    export_json: gr.DownloadButton
    outliers_top: gr.Slider


def view_switch() -> gr.Radio:
    return gr.Radio(VIEWS, value="search", show_label=False, elem_id="view", container=False)


def explore_panels(explore: ExploreService, switch: gr.Radio) -> ExploreViews:
    """The four panels, hidden until their view is chosen (so the search page keeps its tab order)."""

    def thumbnails(ids) -> dict:
        """For the map's hover and zoom: app-made thumbnail addresses of the photos ``ids`` (at most 100)."""
        try:
            chosen = [int(i) for i in (ids if isinstance(ids, list) else [ids])][:100]
            return {str(k): _url(v) for k, v in explore.service.thumbnails(chosen).items()}
        except (TypeError, ValueError):
            return {}

    panels = {}
    with gr.Column(visible=False, elem_id="explore-map-panel") as panels["map"]:
        with gr.Row():
            colour_by = gr.Radio([(label, key) for key, label in COLOUR_BY.items()], value="theme",
                                 label="Colour by", elem_id="colour-by", scale=2)
            gr.Markdown("Every photo is a point; similar photos lie close together. **Drag** a box (or a lasso) "
                        "to list the photos inside below, **click** a point to preview it, **scroll** to zoom; "
                        "hover for a thumbnail. The photos in the gallery are ringed.", elem_id="map-help")
        map_view = gr.HTML(None, html_template="<div class='map-host'></div>", js_on_load=MAP_JS,
                           elem_id="explore-map", server_functions=[thumbnails], apply_default_css=False)
    hits = gr.HTML([], html_template="", js_on_load=HITS_JS, visible="hidden", elem_id="map-hits")
    with gr.Column(visible=False, elem_id="explore-themes-panel") as panels["themes"]:
        gr.Markdown("The library in themes, largest first, each named by the label that sets it apart. "
                    "Choose a card to list its photos below.")
        cards = gr.Gallery(label="Themes", columns=6, height="auto", allow_preview=False, object_fit="cover",
                           buttons=[], elem_id="theme-cards", show_label=False)
        with gr.Accordion("Your own labels", open=False):
            labels = gr.Textbox(label="Labels, one per line", lines=6, elem_id="theme-labels",
                                placeholder="beach\nmountains\nbirthday party\nreceipts",
                                info="Themes (and the map's colours) are named from these instead of the "
                                     "built-in list. Empty: the built-in list.")
            name_themes = gr.Button("Name the themes", elem_id="name-themes")
    with gr.Column(visible=False, elem_id="explore-duplicates-panel") as panels["duplicates"]:
        with gr.Row(equal_height=True):
            threshold = gr.Slider(0.80, 1.0, value=DUPLICATE_THRESHOLD, step=0.005, label="Similarity threshold",
                                  info="Higher: only near-identical copies. Lower: looser ones (pixels are "
                                       "checked either way).", elem_id="dup-threshold", scale=3)
            with gr.Column(scale=1, min_width=160):
                export_csv = gr.DownloadButton("Export the list (CSV)", elem_id="dup-csv", size="sm")
                export_json = gr.DownloadButton("Export the list (JSON)", elem_id="dup-json", size="sm")
        summary = gr.Markdown(elem_id="dup-summary")
        groups_html = gr.HTML("", js_on_load=DUPLICATES_JS, elem_id="dup-groups", apply_default_css=False)
    with gr.Column(visible=False, elem_id="explore-outliers-panel") as panels["outliers"]:
        top = gr.Slider(6, 200, value=DEFAULT_OUTLIERS, step=1, label="How many", elem_id="outliers-top")
        gr.Markdown("The photos least like any other in the library, most unusual first (in the gallery below): "
                    "screenshots, documents, test shots, or a stray photo among many of one kind.")
    return ExploreViews(switch, panels, map_view, colour_by, hits, labels, name_themes, cards, gr.State([]),
                        threshold, summary, groups_html, gr.State([]), export_csv, export_json, top)


def wire_explore(explore: ExploreService, views: ExploreViews, results, guard: Callable, show: Callable,
                 preview: Callable) -> None:
    """The Explore events. ``results`` is the page's ResultsPanel; ``guard`` turns library errors into messages,
    ``show`` an Outcome into the results' outputs, ``preview(file_id)`` opens the preview."""
    private = {"api_visibility": "private"}
    panel_list = [views.panels[k] for k in ("map", "themes", "duplicates", "outliers")]

    def on_switch(view):
        return [gr.Column(visible=view == k) for k in ("map", "themes", "duplicates", "outliers")]

    def load_map(colour_by, labels):
        return guard(explore.map_data, colour_by, labels)

    def load_themes(labels):
        cards = [c for c in guard(explore.theme_cards, labels) if c.thumbnail]  # a card needs its picture
        return [(c.thumbnail, c.caption) for c in cards], cards

    def load_duplicates(threshold):
        groups = guard(explore.duplicates, threshold)
        csv_file, json_file = guard(explore.export_duplicates, groups)
        return (explore.duplicates_summary(groups, threshold), explore.duplicates_html(groups), groups,
                gr.DownloadButton(value=csv_file), gr.DownloadButton(value=json_file))

    def load_outliers(top):
        return show(guard(explore.outliers, top))

    def on_view(view, colour_by, labels, threshold, top):
        skip_map, skip_themes, skip_dups = gr.skip(), (gr.skip(),) * 2, (gr.skip(),) * 5
        skip_results = (gr.skip(),) * len(results.shown)
        return (
            load_map(colour_by, labels) if view == "map" else skip_map,
            *(load_themes(labels) if view == "themes" else skip_themes),
            *(load_duplicates(threshold) if view == "duplicates" else skip_dups),
            *(load_outliers(top) if view == "outliers" else skip_results),
        )

    duplicate_outputs = [views.duplicates_summary, views.duplicates, views.groups, views.export_csv,
                         views.export_json]
    views.switch.change(on_switch, views.switch, panel_list, queue=False, **private).then(
        on_view, [views.switch, views.colour_by, views.labels, views.threshold, views.outliers_top],
        [views.map, views.theme_cards, views.themes, *duplicate_outputs, *results.shown], **private)

    views.colour_by.change(load_map, [views.colour_by, views.labels], views.map, **private)

    def on_selection(evt: gr.EventData):
        return show(guard(explore.selection, (evt._data or {}).get("ids", [])))

    def on_pick(evt: gr.EventData):
        return preview((evt._data or {}).get("id"))

    views.map.selection(on_selection, None, results.shown, **private).then(None, None, None, js=SCROLL_TO_RESULTS)
    views.map.pick(on_pick, None, results.opened, **private)

    def on_labels(labels, view, colour_by):
        cards, state = load_themes(labels)
        return cards, state, load_map(colour_by, labels) if view == "map" else gr.skip()

    views.name_themes.click(on_labels, [views.labels, views.switch, views.colour_by],
                            [views.theme_cards, views.themes, views.map], **private)

    def on_card(cards: list[ThemeCard], evt: gr.SelectData):
        if evt.index is None or not 0 <= int(evt.index) < len(cards or []):
            raise gr.Error("That theme is no longer on screen; choose the view again.", print_exception=False)
        return show(guard(explore.theme_photos, cards[int(evt.index)]))

    views.theme_cards.select(on_card, views.themes, results.shown, **private).then(
        None, None, None, js=SCROLL_TO_RESULTS)
    # A slider's change comes while it is dragged and from its number box: the last one is answered.
    views.threshold.change(load_duplicates, views.threshold, duplicate_outputs, trigger_mode="always_last",
                           **private)

    def on_group(groups, evt: gr.EventData):
        return show(guard(explore.group_photos, groups, (evt._data or {}).get("group")))

    views.duplicates.showgroup(on_group, views.groups, results.shown, **private).then(
        None, None, None, js=SCROLL_TO_RESULTS)
    views.outliers_top.change(load_outliers, views.outliers_top, results.shown, trigger_mode="always_last",
                              **private)
    # The gallery's photos are ringed on the map: its ids after every listing.
    results.hits.change(lambda ids: list(ids or []), results.hits, views.hits, queue=False, **private)
