"""The clipsearch web app: search a library by words, by example image, or both, or browse it, in a browser or
over HTTP.

    from ui.app import build_app, launch, serve
    serve(Library.open("~/photo-index"))                        # http://127.0.0.1:7860, model warmed first
    build_app(library).launch(prevent_thread_lock=True)          # tests and embedding (use launch() to serve)

Safe by default: it listens on 127.0.0.1, never makes a share link, and serves only thumbnails it made
itself (the one folder in ``allowed_paths``); originals leave only through the checked download. Uploads are
size-limited, taken as a file path and decoded under the same guards as indexing. Listening beyond this
machine needs a password. Every request, to Gradio's routes as to ours, first passes ``ui.security``: the Host
header must name an address the app is served on (DNS rebinding), and no other origin may read or post.

Named API endpoints (``gradio_client`` or plain HTTP): ``/search``, ``/search_image``, ``/more_like``,
``/browse``, ``/map``, ``/themes``, ``/duplicates``, ``/outliers``, ``/original`` and ``/status``; see the
README's "The web app".

Beside Search, a view switch opens the Explore views (``ui/explore_views.py``): the map of the library,
themes, duplicates and the odd ones out, each listing what it finds in the same results gallery.

The page: the search box on top, then the results (first in the page, so a phone shows them before any
control, and the first thumbnail is two Tabs from the search box), the controls beside them, the library's
status below. A result opens in a lightbox (``ui/assets/keys.js`` gives the keyboard: arrows in the gallery,
Left/Right/Escape in the preview).

For Gradio's reload mode (``CLIPSEARCH_INDEX=~/photo-index gradio ui/app.py``) the module has a ``demo``
attribute, built on first access and never at import.
"""

from __future__ import annotations

import base64
import binascii
import html
import ipaddress
import logging
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from gradio.data_classes import FileData

from clipsearch import ClipsearchError, Library
from ui.explore import ExploreService
from ui.explore_views import explore_panels, view_switch, wire_explore
from ui.security import HostPolicy, check_allowed_host, check_port_free, guarded_gradio_app
from ui.service import AppSettings, Outcome, SearchService, UploadError, escape_markdown

__all__ = ["AppSettings", "build_app", "launch", "serve"]

log = logging.getLogger("clipsearch.ui")
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
ASSETS = Path(__file__).resolve().parent / "assets"
CSS = (ASSETS / "app.css").read_text(encoding="utf-8")
KEYS_JS = (ASSETS / "keys.js").read_text(encoding="utf-8")
SORTS = [("Newest first", "newest"), ("Oldest first", "oldest"), ("Folder and name", "name"),
         ("Score for the words above", "score")]
NOTHING_TO_SEARCH = ("Type some words or drop an image to search, or *Browse* the whole library (beside the "
                     "results) without a query.")


class QueryImage(gr.Image):
    """Gradio's image drop zone minus Gradio's own decoding: the upload's path goes to our guarded decoder.

    ``gr.Image`` opens uploads with Pillow under process-wide limits before the app sees them; a file that is
    corrupt or a decompression bomb must instead reach ``Library.encode_image_file`` and fail with a clear
    message.
    Gradio has already checked that the path lies in its upload folder when ``preprocess`` runs.
    """

    is_template = True  # the browser renders it with Gradio's own Image component
    max_inline_bytes = 20 * 1024 * 1024  # a pasted data: URL; set per instance from AppSettings.max_upload

    # No __init__ of its own: Gradio sends the browser the props named in the parent's signature.

    def preprocess(self, payload: FileData | None) -> str | None:
        if payload is None:
            return None
        url = getattr(payload, "url", None) or ""
        if url.startswith("data:"):
            return self._save_inline(url)
        if payload.path is None:
            return None
        return str(payload.path)

    def _save_inline(self, url: str) -> str:
        header, _, encoded = url.partition(",")
        if ";base64" not in header or len(encoded) * 3 // 4 > self.max_inline_bytes:
            raise _refusal("the pasted image is too large or not base64-encoded; upload it as a file instead")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _refusal("the pasted image is not valid base64") from None
        folder = Path(self.GRADIO_CACHE) / "clipsearch-pasted"
        folder.mkdir(parents=True, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=folder, suffix=".img")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return path


@dataclass
class SearchControls:
    query: gr.Textbox
    button: gr.Button
    image: QueryImage
    image_weight: gr.Slider
    filters: list  # top_k, min_score, folder, since, until: the inputs every search takes after its terms
    sort: gr.Dropdown
    browse: gr.Button

    @property
    def folder(self) -> gr.Dropdown:
        return self.filters[2]

    @property
    def where(self) -> list:
        """folder, since, until."""
        return self.filters[2:]


@dataclass
class ResultsPanel:
    summary: gr.Markdown
    gallery: gr.Gallery
    load_more: gr.Button
    hits: gr.State  # ids of the results on screen, in gallery order
    items: gr.State  # (thumbnail, caption) of the results on screen, for appending the next page
    listing: gr.State  # what the gallery lists (ui.service.Listing), for "load more"
    selected: gr.State  # id of the result in the preview
    preview_box: gr.Column
    preview: gr.Image
    details: gr.Markdown
    more: gr.Button
    but_with: gr.Textbox
    but_without: gr.Textbox
    download: gr.DownloadButton
    close: gr.Button
    previous: gr.Button
    next: gr.Button

    @property
    def opened(self) -> list:
        """What opening a preview updates."""
        return [self.preview, self.details, self.download, self.selected, self.preview_box]

    @property
    def shown(self) -> list:
        """What a finished search or a new page updates."""
        return [self.summary, self.gallery, self.hits, self.items, self.listing, self.preview_box, self.load_more]


def build_app(library: Library, settings: AppSettings = AppSettings()) -> gr.Blocks:
    """The Gradio app for ``library`` (any ``Library``: tests hand in one with the tiny model)."""
    service = SearchService(library, settings)
    with gr.Blocks(title=settings.title, analytics_enabled=False) as app:
        app.clipsearch_service = service  # launch() reads the thumbnail folder and warms the model through it
        explore = ExploreService(service)
        with gr.Row(elem_id="title-bar"):
            gr.Markdown(f"# {settings.title}\nFind photos by words, by an example image, or both; or explore.",
                        elem_id="title")
            switch = view_switch()
        query, button = _search_bar()
        views = explore_panels(explore, switch)
        with gr.Row(equal_height=False):
            with gr.Column(scale=7, min_width=340):  # first: a narrow screen shows the results before any control
                results = _results_panel(settings)
            with gr.Column(scale=3, min_width=300):
                controls = _search_controls(service, settings, query, button)
        _wire_search(service, controls, results)
        wire_explore(explore, views, results, _guard, show_outcome, lambda file_id: open_preview(service, file_id))
        _library_panel(service, controls)
        _api(service, explore, settings)
        app.load(None, None, None, js=KEYS_JS)  # the keyboard: runs once in each page, no request to the server
    app.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    return app


def _search_bar() -> tuple[gr.Textbox, gr.Button]:
    with gr.Row(elem_id="search-bar"):
        query = gr.Textbox(
            label="Search", placeholder="a beach at sunset + boat - fog", elem_id="query", lines=1, scale=8,
            autofocus=True, info="Words; `+` adds, `-` removes, `2:word` weighs.",
        )
        button = gr.Button("Search", variant="primary", elem_id="search-btn", scale=1, min_width=90)
    return query, button


def _search_controls(service: SearchService, settings: AppSettings, query: gr.Textbox,
                     button: gr.Button) -> SearchControls:
    image = QueryImage(label="Search by image (drop, paste or upload)", type="filepath",
                       sources=["upload", "clipboard"], height=180, elem_id="query-image", buttons=[])
    image.max_inline_bytes = _bytes(settings.max_upload)
    image_weight = gr.Slider(0.1, 3.0, value=1.0, step=0.1, label="Weight of the image",
                             info="Words added to an image keep weight 1: \"at night\", \"- people\".")
    with gr.Group():
        sort = gr.Dropdown(choices=SORTS, value="newest", label="Browse without a query", elem_id="sort",
                           info="Every photo in the folder and dates below, page by page.")
        browse = gr.Button("Browse", elem_id="browse-btn")
    with gr.Accordion("Filters", open=True):
        top_k = gr.Slider(1, settings.max_top_k, value=settings.top_k, step=1, label="Results per page")
        min_score = gr.Slider(-1.0, 1.0, value=settings.min_score, step=0.01, label="Minimum score",
                              elem_id="min-score")
        folder = gr.Dropdown(choices=[""] + service.folder_choices(), value="", label="Folder", elem_id="folder",
                             allow_custom_value=True, info="A folder inside the indexed folders.")
        with gr.Row():
            since = gr.DateTime(label="Taken from", include_time=False, type="string", elem_id="since")
            until = gr.DateTime(label="Taken until", include_time=False, type="string", elem_id="until")
        gr.Markdown("A photo's date is when it was taken (its EXIF date), else when its file was last changed.")
    return SearchControls(query, button, image, image_weight, [top_k, min_score, folder, since, until], sort, browse)


def _results_panel(settings: AppSettings) -> ResultsPanel:
    summary = gr.Markdown("Type a query, drop an image, or browse the library.", elem_id="summary")
    gallery = gr.Gallery(label="Results", columns=settings.columns, height=620, allow_preview=False,
                         object_fit="contain", buttons=[], elem_id="results", show_label=False)
    load_more = gr.Button("Load more", visible=False, elem_id="load-more")
    with gr.Column(visible=False, elem_id="preview") as preview_box:
        with gr.Row(elem_id="preview-bar"):
            previous = gr.Button("‹ Previous", size="sm", min_width=0, elem_id="preview-previous")
            following = gr.Button("Next ›", size="sm", min_width=0, elem_id="preview-next")
            close = gr.Button("✕ Close", size="sm", min_width=0, elem_id="preview-close")
        with gr.Row():
            preview = gr.Image(label="Preview", interactive=False, height="70vh", buttons=[], elem_id="preview-image",
                               show_label=False)
            with gr.Column(min_width=260):
                details = gr.Markdown(elem_id="details")
                more = gr.Button("More like this", variant="primary", elem_id="more-like-this")
                with gr.Row():
                    but_with = gr.Textbox(label="…but with", placeholder="at night", elem_id="but-with", lines=1,
                                          min_width=120)
                    but_without = gr.Textbox(label="…and without", placeholder="daylight", elem_id="but-without",
                                             lines=1, min_width=120)
                download = gr.DownloadButton("Download original", variant="secondary", elem_id="download")
    return ResultsPanel(summary, gallery, load_more, gr.State([]), gr.State([]), gr.State(None), gr.State(None),
                        preview_box, preview, details, more, but_with, but_without, download, close, previous,
                        following)


def _wire_search(service: SearchService, controls: SearchControls, results: ResultsPanel) -> None:
    """The page's own events (private: the API is the documented surface)."""

    show = show_outcome

    def message(text: str):
        return text, [], [], [], None, gr.Column(visible=False), gr.Button(visible=False)

    def on_search(text, upload, weight, k, cut, folder, low, high):
        """Search; an image that cannot be used is removed from the page and said why, and the words alone
        are searched (so the image never blocks a later search)."""
        if not (text or "").strip() and not upload:
            return *message(NOTHING_TO_SEARCH), gr.skip()

        def attempt():
            try:
                return service.search(text, upload, weight, k, cut, folder, low, high), None
            except UploadError as exc:
                problem = exc
            if not (text or "").strip():
                return None, problem
            return service.search(text, None, weight, k, cut, folder, low, high), problem

        outcome, problem = _guard(attempt)
        if problem is None:
            return *show(outcome), gr.skip()
        note = f"**The image could not be used, so it was taken off the page:** {_plain(problem)}."
        if outcome is None:
            return *message(f"{note}  \nDrop another image, or search by words."), None
        return *show(Outcome(outcome.results, f"{note}  \nFor the words alone: {outcome.summary}",
                             outcome.listing)), None

    def on_browse(text, order, folder, low, high):
        return show(_guard(service.browse, folder, low, high, order, text))

    def on_load_more(listing, ids, items):
        return show(_guard(service.next_page, listing, len(ids or [])), ids, items)

    def on_select(ids, evt: gr.SelectData):
        if evt.index is None or not 0 <= int(evt.index) < len(ids):
            raise _refusal("That result is no longer on screen; search again.")
        return open_preview(service, ids[int(evt.index)])

    def on_more(file_id, add, remove, k, cut, folder, low, high):
        if file_id is None:
            raise _refusal("Click a result first.")
        return show(_guard(service.more_like, file_id, k, cut, folder, low, high, add, remove))

    inputs = [controls.query, controls.image, controls.image_weight, *controls.filters]
    private = {"api_visibility": "private"}
    searched = [*results.shown, controls.image]
    gr.on([controls.query.submit, controls.button.click], on_search, inputs, searched, **private)
    controls.image.upload(on_search, inputs, searched, **private)
    controls.browse.click(on_browse, [controls.query, controls.sort, *controls.where], results.shown, **private)
    results.load_more.click(on_load_more, [results.listing, results.hits, results.items], results.shown, **private)
    # Arrows pressed faster than previews arrive: every choice is sent ("multiple"; Gradio's "always_last"
    # re-sends without the chosen index) and answered in order (one at a time), so the last one chosen shows.
    results.gallery.select(on_select, results.hits, results.opened,
                           trigger_mode="multiple", concurrency_limit=1, concurrency_id="preview", **private)
    directions = [results.selected, results.but_with, results.but_without, *controls.filters]
    gr.on([results.more.click, results.but_with.submit, results.but_without.submit], on_more, directions,
          results.shown, **private)
    results.close.click(lambda: gr.Column(visible=False), None, results.preview_box, queue=False, **private)
    results.previous.click(None, None, None, js="() => window.clipsearchStep && window.clipsearchStep(-1)")
    results.next.click(None, None, None, js="() => window.clipsearchStep && window.clipsearchStep(1)")


def show_outcome(outcome: Outcome, ids: list | None = None, items: list | None = None) -> tuple:
    """The outputs of ``ResultsPanel.shown`` for ``outcome``, appended to ``ids``/``items`` when given."""
    ids, items = list(ids or []), list(items or [])
    on_screen = set(ids)
    for r in outcome.results:
        if r.id not in on_screen:  # the catalog may have changed between two pages
            ids.append(r.id)
            items.append((r.thumbnail, r.caption))
    more = outcome.listing is not None and outcome.listing.next_offset is not None
    return (outcome.summary, items, ids, items, outcome.listing, gr.Column(visible=False),
            gr.Button(visible=more))


def open_preview(service: SearchService, file_id) -> tuple:
    """The outputs of ``ResultsPanel.opened`` for the preview of ``file_id``."""
    picture, text = _guard(service.preview, file_id)
    try:
        original = service.original(file_id)
    except ClipsearchError:
        original = None  # shown, but not downloadable (e.g. the file vanished since)
    return picture, text, gr.DownloadButton(value=original, visible=original is not None), int(file_id), \
        gr.Column(visible=True)


def _library_panel(service: SearchService, controls: SearchControls) -> None:
    """Status of the library and a re-index button with live progress."""
    with gr.Accordion("Library", open=False):
        status = gr.Markdown(service.status_markdown(), elem_id="status")
        reindex = gr.Button("Re-index all folders", elem_id="reindex")
        outcome = gr.Markdown(elem_id="reindex-result")

    def on_reindex(progress=gr.Progress()):
        def report(done: int, total: int) -> None:
            progress((done, total), desc="embedding", unit="images")

        progress(0, desc="scanning folders")
        text = _guard(service.reindex, report)
        return text, service.status_markdown(), gr.Dropdown(choices=[""] + service.folder_choices())

    reindex.click(on_reindex, None, [outcome, status, controls.folder], concurrency_limit=1,
                  concurrency_id="reindex", api_visibility="private")


def _api(service: SearchService, explore: ExploreService, settings: AppSettings) -> None:
    """The named API: JSON in, JSON out; files by catalog id, thumbnails made by the app."""

    def search(query: str, top_k: int = settings.top_k, min_score: float = settings.min_score,
               folder: str = "", since: str = "", until: str = "") -> list[dict]:
        """Search by words (`+`/`-`/`2:word` syntax); results best first with id, name, path, score, thumbnail."""
        return [r.to_api() for r in _guard(service.search, query, None, 1.0, top_k, min_score, folder,
                                           since, until).results]

    def more_like(file_id: int, top_k: int = settings.top_k, min_score: float = settings.min_score,
                  folder: str = "", since: str = "", until: str = "", add: str = "", remove: str = "") -> list[dict]:
        """Files like the indexed file `file_id`, from its stored vector; `add`/`remove` words steer it
        ("more like this, but at night": add="night")."""
        return [r.to_api() for r in _guard(service.more_like, file_id, top_k, min_score, folder,
                                           since, until, add, remove).results]

    def browse(folder: str = "", since: str = "", until: str = "", order: str = "newest", query: str = "",
               offset: int = 0, limit: int = settings.browse_page) -> dict:
        """The library page by page without a query: `order` newest, oldest (date taken) or name; or ranked by
        the words of `query` with order score. Answers results, total, offset and next_offset (null at the end)."""
        return _guard(service.browse_api, folder, since, until, order, query, offset, limit)

    def library_status() -> dict:
        """Model, counts, folders, last run and skipped files with reasons."""
        return _guard(service.status_dict)

    def explore_map(labels: str = "") -> list[dict]:
        """Every photo's point on the 2-D map of the library: id, name, x, y and theme name, in id order.
        `labels` (one per line) names the themes instead of the built-in list."""
        return _guard(explore.map_api, labels)

    def themes(labels: str = "") -> list[dict]:
        """The themes, largest first: name, size, ids, representative_id, its thumbnail, and the labels that
        set it apart. `labels` (one per line) names them instead of the built-in list."""
        return _guard(explore.themes_api, labels)

    def duplicates(threshold: float = 0.90) -> list[dict]:
        """Groups of the same picture, most similar first: similarity, keep_id (the suggested keeper) and the
        members, keeper first, with dimensions, bytes and thumbnails. Nothing is deleted or moved."""
        return _guard(explore.duplicates_api, threshold)

    def outliers(top: int = 48) -> list[dict]:
        """The `top` most unusual photos, most unusual first: id, name, score (mean distance to the nearest
        photos) and thumbnail."""
        return _guard(explore.outliers_api, top)

    gr.api(search, api_name="search")
    gr.api(explore_map, api_name="map")
    gr.api(themes, api_name="themes")
    gr.api(duplicates, api_name="duplicates")
    gr.api(outliers, api_name="outliers")
    gr.api(more_like, api_name="more_like")
    gr.api(browse, api_name="browse")
    gr.api(library_status, api_name="status")

    with gr.Column(visible=False):  # endpoints that take or give files need real components
        image = QueryImage(label="image", type="filepath")
        image.max_inline_bytes = _bytes(settings.max_upload)
        query = gr.Textbox("", label="query")
        weight = gr.Number(1.0, label="image_weight")
        top_k = gr.Number(settings.top_k, label="top_k", precision=0)
        min_score = gr.Number(settings.min_score, label="min_score")
        folder, since, until = (gr.Textbox("", label=n) for n in ("folder", "since", "until"))
        results = gr.JSON(label="results")
        file_id = gr.Number(label="file_id", precision=0)
        file = gr.File(label="original")
        search_button, original_button = gr.Button("search_image"), gr.Button("original")

    def search_image(image, query, image_weight, top_k, min_score, folder, since, until):
        """Search by an example image, optionally with words (`at night`, `- people`) and its weight."""
        if not image:
            raise _refusal("send an image file")
        outcome = _guard(service.search, query, image, image_weight, top_k, min_score, folder, since, until)
        return [r.to_api() for r in outcome.results]

    def original(file_id):
        """The original file of a result (checked: an indexed image inside the indexed folders)."""
        return _guard(service.original, file_id)

    search_button.click(search_image, [image, query, weight, top_k, min_score, folder, since, until], results,
                        api_name="search_image")
    original_button.click(original, file_id, file, api_name="original")


def serve(library: Library, **options) -> gr.Blocks:
    """Serve the app until interrupted (what ``clipsearch serve`` runs): ``launch`` without Gradio's own
    console lines, one line of ours instead (no share-link hint: this app never makes one)."""
    app = launch(library, prevent_thread_lock=True, quiet=True, **options)
    print(f"clipsearch: the web app is on {app.local_url} (Ctrl-C stops it)", flush=True)
    app.block_thread()
    return app


def _refusal(message: str) -> gr.Error:
    """A message for the person at the browser, without a traceback in the server's console."""
    return gr.Error(message, print_exception=False)


def _plain(error: Exception) -> str:
    """An error as text for a Markdown line."""
    return escape_markdown(str(error).rstrip("."))


def launch(
    library: Library,
    host: str = "127.0.0.1",
    port: int = 7860,
    password: str | None = None,
    settings: AppSettings = AppSettings(),
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    allowed_hosts: Sequence[str] = (),
) -> gr.Blocks:
    """Warm the model, then serve the app; blocks until interrupted unless ``prevent_thread_lock``.

    Anything but a loopback ``host`` needs a ``password`` (any user name is accepted). No share link is made.
    The app answers only requests whose Host header names a loopback name, ``host`` or one of
    ``allowed_hosts``, and only its own origin (``ui.security``). A port in use fails at once, before the model
    is loaded.
    """
    if not is_loopback(host) and not password:
        raise ClipsearchError(
            f"refusing to listen on {host} without a password: anyone on the network could search and "
            "download your photos. Pass --password (or set CLIPSEARCH_PASSWORD), or use --host 127.0.0.1."
        )
    try:
        policy = HostPolicy.for_server(host, [check_allowed_host(h) for h in allowed_hosts])
    except ValueError as exc:
        raise ClipsearchError(f"--allowed-host: {exc}") from None
    check_port_free(host, port)
    app = build_app(library, settings)
    service: SearchService = app.clipsearch_service
    service.warm_up()
    guarded = guarded_gradio_app(policy)
    try:
        app.launch(
            _app=guarded,  # every request passes ui.security.OriginGuard before any Gradio code
            server_name=host,
            server_port=port,
            share=False,
            state_session_capacity=settings.session_capacity,
            auth=_password_check(password) if password else None,
            auth_message="clipsearch: any user name, and the server's password." if password else None,
            allowed_paths=[str(service.media.folder)],
            blocked_paths=_blocked_paths(library, service.media.folder),
            max_file_size=settings.max_upload,
            show_error=False,  # gr.Error messages still reach the browser; tracebacks never do
            prevent_thread_lock=True,
            quiet=quiet,
            inbrowser=False,
            mcp_server=False,
            ssr_mode=False,  # no Node front server: it would answer before our guard
            num_workers=0,  # no static-file worker processes: they would serve files outside the guard
            strict_cors=True,
            pwa=False,
            enable_monitoring=False,
            run_history=False,
            css=CSS,
        )
    except OSError as exc:  # the port was taken between our check and Gradio's bind
        raise ClipsearchError(f"cannot listen on {host} port {port} ({exc}); choose another with --port") from None
    if app.server_app is not guarded:  # a Gradio that ignores _app would serve unguarded: refuse to run
        app.close()
        raise ClipsearchError("this Gradio version bypasses clipsearch's Host and Origin checks; "
                              "install the Gradio version clipsearch was released with")
    if not prevent_thread_lock:
        app.block_thread()
    return app


def is_loopback(host: str) -> bool:
    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _password_check(password: str):
    expected = password.encode()

    def check(_user: str, given: str) -> bool:
        return secrets.compare_digest(given.encode(), expected)

    return check


def _blocked_paths(library: Library, thumbs: Path) -> list[str]:
    """The photo folders and the index itself, except one holding the thumbnails or Gradio's cache (a photo
    folder of /tmp, say): blocking it would block what the app serves, and nothing there is served anyway."""
    from gradio.utils import get_upload_folder

    served = [str(thumbs), str(Path(get_upload_folder()).resolve())]
    candidates = [*library.roots(), str(Path(library.directory).resolve())]
    return [p for p in candidates if not any(s.startswith(p.rstrip(os.sep) + os.sep) for s in served)]


def _guard(fn, *args):
    """Run a library call; what it refuses becomes a message for the user, anything else a generic one."""
    try:
        return fn(*args)
    except gr.Error:
        raise
    except ClipsearchError as exc:
        # messages render as HTML: no tag may come through (quotes are harmless in text and stay readable)
        raise gr.Error(html.escape(str(exc), quote=False), print_exception=False) from None
    except Exception:
        log.exception("unexpected error in the web app")
        raise gr.Error("something went wrong on the server; the details are in its log",
                       print_exception=False) from None


def _bytes(size: str) -> int:
    from gradio.utils import _parse_file_size

    return int(_parse_file_size(size))


# -- Gradio's reload mode: `CLIPSEARCH_INDEX=~/photo-index gradio ui/app.py` ---------------------------------
globals().pop("demo", None)  # re-executed on reload: build afresh on next access


def __getattr__(name: str):
    if name == "demo":
        demo = build_app(Library.open())  # default_index_dir(): $CLIPSEARCH_INDEX, or index/default
        globals()["demo"] = demo
        return demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _serve_default_index() -> None:
    try:
        app = launch(Library.open(), prevent_thread_lock=True, quiet=True)
    except ClipsearchError as error:
        raise SystemExit(f"clipsearch: {error}") from None
    globals()["demo"] = app  # the reloader looks for the launched app under this name
    print(f"clipsearch: the web app is on {app.local_url} (Ctrl-C stops it)", flush=True)
    app.block_thread()


if __name__ == "__main__" and gr.NO_RELOAD:  # Gradio's reload mode re-runs this file with NO_RELOAD false
    _serve_default_index()
