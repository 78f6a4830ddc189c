// clipsearch web app: the keyboard. Run once per page by ui/app.py (Blocks.load with js=); nothing external.
//   In the results: arrow keys move between thumbnails (Home/End: first/last), Enter opens the preview, and
//   Tab leaves the gallery (one tab stop for all thumbnails).
//   In the preview: Left/Right show the previous/next result, Escape closes it and gives the focus back to the
//   thumbnail it came from.
() => {
  if (window.clipsearchKeys) return;
  window.clipsearchKeys = true;
  const TILE = "#results button.thumbnail-item";
  const tiles = () => [...document.querySelectorAll(TILE)];
  const lightbox = () => {
    const box = document.querySelector("#preview");
    return box && box.checkVisibility() ? box : null;
  };
  let current = -1; // the thumbnail whose preview is (or was last) open
  let open = false;

  function columns(items) {
    const top = items[0].getBoundingClientRect().top;
    const next = items.findIndex((t) => Math.abs(t.getBoundingClientRect().top - top) > 2);
    return next < 0 ? items.length : next;
  }

  function focusTile(items, index) {
    const tile = items[Math.max(0, Math.min(items.length - 1, index))];
    if (!tile) return;
    items.forEach((t) => (t.tabIndex = t === tile ? 0 : -1));
    tile.focus();
    tile.scrollIntoView({ block: "nearest" });
  }

  function step(delta) {
    const items = tiles();
    // Our own record first: the gallery marks the clicked tile "selected" only after its round trip, so a
    // second key pressed before that would step from the old tile again (three quick presses moved one).
    const index = current >= 0 && current < items.length
      ? current : items.findIndex((t) => t.classList.contains("selected"));
    const target = index + delta;
    if (index < 0 || target < 0 || target >= items.length) return;
    current = target;
    items[target].click();
    items[target].scrollIntoView({ block: "nearest" });
  }
  window.clipsearchStep = step;

  document.addEventListener("click", (event) => {
    const tile = event.target.closest && event.target.closest(TILE);
    if (tile) current = tiles().indexOf(tile);
  }, true);

  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const typing = event.target.closest && event.target.closest("input, textarea, select, [contenteditable=true]");
    if (lightbox()) {
      if (event.key === "Escape") {
        event.preventDefault();
        const close = document.querySelector("#preview-close");
        if (close) close.click();
      } else if (!typing && (event.key === "ArrowLeft" || event.key === "ArrowRight")) {
        event.preventDefault();
        step(event.key === "ArrowRight" ? 1 : -1);
      }
      return;
    }
    const tile = event.target.closest && event.target.closest(TILE);
    if (!tile) return;
    const items = tiles();
    const index = items.indexOf(tile);
    const across = columns(items);
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: across, ArrowUp: -across,
                    Home: -index, End: items.length - 1 - index };
    if (event.key in moves) {
      event.preventDefault();
      focusTile(items, index + moves[event.key]);
    }
  }, true);

  // A thumbnail that takes the focus becomes the gallery's one tab stop.
  document.addEventListener("focusin", (event) => {
    const tile = event.target.closest && event.target.closest(TILE);
    if (tile) tiles().forEach((t) => (t.tabIndex = t === tile ? 0 : -1));
  });

  // After each new listing (the summary changes) the first thumbnail is the tab stop. The preview is a dialog:
  // it takes the focus when it opens and hands it back to its thumbnail when it closes.
  let summary = null;
  new MutationObserver(() => {
    const text = (document.querySelector("#summary") || {}).textContent; // (textContent: no layout)
    if (text !== summary) {
      summary = text;
      tiles().forEach((t, i) => (t.tabIndex = i === 0 ? 0 : -1));
    }
    const box = lightbox();
    if (box && !open) {
      const close = document.querySelector("#preview-close");
      if (!close) return; // not drawn yet: the next mutation comes back here
      box.setAttribute("role", "dialog");
      box.setAttribute("aria-modal", "true");
      box.setAttribute("aria-label", "Preview");
      close.focus();
      open = true;
    } else if (!box && open) {
      open = false;
      const items = tiles();
      if (current >= 0 && current < items.length) focusTile(items, current);
    }
  }).observe(document.body, { childList: true, subtree: true, characterData: true, attributes: true,
                              attributeFilter: ["class", "style"] });
}
