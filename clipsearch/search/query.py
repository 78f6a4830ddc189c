"""Mixed queries: text and images, added and subtracted with weights, in CLIP's shared space.

Syntax (the CLI passes its arguments as tokens; the web app passes one string):

    beach + sunset - people          words, combined
    ./photo.jpg + "at night"         an example image adjusted by words
    2:"red car" ./ref.jpg            a weight before a colon; terms without an operator are added
    0.5:./ref.jpg - 2:people
    #123 - day + night           an indexed photo by its id (as `clipsearch search` prints it), moved by words
    #12 - #34 + #56              an analogy between indexed photos

A term ``#`` + digits names an indexed photo (its stored vector); one that names an existing image file is an
image; everything else (a quoted "#12" too) is text. The combined vector is
``sum(sign * weight * unit(term))``, normalised.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clipsearch.errors import QueryError
from clipsearch.imaging.decode import IMAGE_EXTENSIONS

_WEIGHT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*:(?!//)(.*)$", re.S)
_OPERATOR_SPLIT = re.compile(r"(?:^|\s)([+-])(?=\s)")
_FILE_ID = re.compile(r"^#[0-9]+$")


@dataclass(frozen=True)
class Term:
    """One part of a query. ``kind`` is ``text``, ``image`` (a file path) or ``file`` (a catalog id)."""

    kind: str
    value: str
    weight: float = 1.0


def looks_like_image_path(text: str) -> bool:
    return os.path.splitext(text.strip())[1].lower() in IMAGE_EXTENSIONS and (
        os.sep in text or text.startswith(("~", ".")) or os.path.exists(os.path.expanduser(text))
    )


def parse_query(tokens: Sequence[str] | str, allow_paths: bool = True) -> list[Term]:
    """Parse CLI tokens (or one query string) into weighted terms; raise ``QueryError`` when malformed.

    ``allow_paths=False`` reads every term as text: a server must never open files named in a request.
    """
    if isinstance(tokens, str):
        tokens = [tokens]
    pieces: list[str] = []
    for token in tokens:
        if token.strip() in ("+", "-"):
            pieces.append(token.strip())
        elif allow_paths and looks_like_image_path(token):
            pieces.append(token)  # a file name may itself contain " - "
        else:
            pieces.extend(p for p in _OPERATOR_SPLIT.split(" " + token + " ") if p.strip())
    terms: list[Term] = []
    operator: str | None = None
    joinable = False  # plain words typed without quotes or operators read as one phrase: `search red car`
    for piece in pieces:
        stripped = piece.strip()
        if stripped in ("+", "-"):
            if operator is not None:
                raise QueryError(f"two operators in a row near {stripped!r}")
            operator = stripped
            continue
        term = _term(stripped, -1.0 if operator == "-" else 1.0, allow_paths)
        plain = term.kind == "text" and abs(term.weight) == 1.0 and not _WEIGHT.match(stripped)
        if operator is None and joinable and plain and stripped == _unquote(stripped):
            previous = terms.pop()
            term = Term("text", f"{previous.value} {term.value}", previous.weight)
        terms.append(term)
        joinable = plain and stripped == _unquote(stripped)
        operator = None
    if operator is not None:
        raise QueryError("the query ends with an operator; add a term after it")
    if not terms:
        raise QueryError("the query is empty: give some words, an image path, or both")
    if all(t.weight <= 0 for t in terms):
        raise QueryError("a query needs at least one positive term (something to look for)")
    return terms


def _term(text: str, sign: float, allow_paths: bool = True) -> Term:
    weight = 1.0
    match = _WEIGHT.match(text)
    if match and not match.group(2).strip():
        raise QueryError(f"the weight {match.group(1)} has no term after it; write it as {match.group(1)}:word")
    if match:
        weight, text = float(match.group(1)), match.group(2).strip()
    if _FILE_ID.match(text):  # a catalog id: an indexed photo's stored vector
        if len(text) > 19:
            raise QueryError(f"no indexed photo {text}")
        return Term("file", text[1:], sign * weight)
    text = _unquote(text)
    if not text:
        raise QueryError("a query term is empty")
    if allow_paths and looks_like_image_path(text):
        path = os.path.abspath(os.path.expanduser(text))
        if not os.path.isfile(path):
            raise QueryError(f"image not found: {text}")
        return Term("image", path, sign * weight)
    return Term("text", text, sign * weight)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def combine(vectors: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``unit(sum(w * unit(v)))``: the direction a weighted query points in."""
    total = np.zeros_like(np.asarray(vectors[0], dtype=np.float32))
    for vector, weight in zip(vectors, weights):
        v = np.asarray(vector, dtype=np.float32)
        total += weight * v / max(float(np.linalg.norm(v)), 1e-12)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError("the query's terms cancel out; change a weight or a term")
    return total / norm
