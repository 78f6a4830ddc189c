"""CLIP's byte-pair tokenizer without torch: the same token ids as open_clip's ``SimpleTokenizer``.

The algorithm is OpenAI CLIP's (MIT licence), as open_clip 3 ships it: ftfy fix + HTML unescape (twice) +
whitespace clean + lower case, then the regex split and the BPE merges from ``bpe_simple_vocab_16e6.txt.gz``.
The only changes: numpy arrays instead of torch tensors, and ftfy is imported only for text it could change (it
costs ~0.1 s to import, a tenth of a cold search). ``tests/speed/test_tokenizer.py`` checks the ids against
open_clip's on more than a thousand strings; the exporter checks them again for each model it exports.

No well-kept package does this without torch: Hugging Face ``tokenizers`` has a CLIP tokenizer, but its cleaning
(no ftfy, different whitespace and unescaping rules) gives other ids on some strings.
"""

from __future__ import annotations

import gzip
import html
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import regex

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
CLEAN_MODES = ("lower", "whitespace")
MERGES = 49152 - 256 - 2  # the merges CLIP's vocabulary uses (open_clip: lines 1..48894)
# Printable ASCII minus "&" (an HTML entity may start there): ftfy.fix_text returns such text unchanged (no
# mojibake, controls, escapes, line breaks, ligatures or wide forms are possible), so ftfy need not even load.
_ASCII_UNTOUCHED = regex.compile(r"[\x20-\x25\x27-\x7e]*")


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map from the 256 byte values to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def fix_text(text: str) -> str:
    """``ftfy.fix_text``, skipped for text it provably leaves unchanged."""
    if _ASCII_UNTOUCHED.fullmatch(text):
        return text
    import ftfy

    return ftfy.fix_text(text)


def clean(text: str, mode: str = "lower") -> str:
    """open_clip's ``_clean_lower`` (or ``_clean_whitespace``)."""
    text = html.unescape(html.unescape(fix_text(text))).strip()
    text = " ".join(text.split()).strip()
    return text.lower() if mode == "lower" else text


class ClipTokenizer:
    """Texts → ``int64[n, context_length]`` token ids, exactly as open_clip's ``SimpleTokenizer`` makes them.

    One shortcut over open_clip's code: a token's id is carried through the merges (a byte is its index in the
    byte alphabet, a merged symbol 512 + the rank of its merge) instead of looking the final strings up in a
    49,408-entry dictionary, and only the 48,894 merges CLIP uses are read from the vocabulary file. That makes
    building the tokenizer ~4x cheaper (it is part of every cold search); the ids are the same, which
    ``tests/speed/test_tokenizer.py`` checks against open_clip's own tables and output.
    """

    def __init__(self, vocab_path: str, context_length: int = 77, clean_mode: str = "lower"):
        if clean_mode not in CLEAN_MODES:
            raise ValueError(f"unsupported clean mode {clean_mode!r}")
        self.context_length = context_length
        self.clean_mode = clean_mode
        self.byte_encoder = bytes_to_unicode()
        alphabet = list(self.byte_encoder.values())
        self._char_ids = {c: i for i, c in enumerate(alphabet)}  # a symbol inside a word
        self._last_char_ids = {c: i + 256 for i, c in enumerate(alphabet)}  # the final symbol ("c</w>")
        # "first second" (a line of the file) -> rank; the merged symbol's id is 512 + rank.
        self.merge_ranks = {line: rank for rank, line in enumerate(read_merges(vocab_path))}
        self.sot_token_id = 512 + len(self.merge_ranks)
        self.eot_token_id = self.sot_token_id + 1
        self.vocab_size = self.eot_token_id + 1
        self._cache: dict[str, list[int]] = {SPECIAL_TOKENS[0]: [self.sot_token_id],
                                             SPECIAL_TOKENS[1]: [self.eot_token_id]}
        # As open_clip writes it (special tokens joined unescaped; they hold no regex syntax).
        self.pat = regex.compile(
            "|".join(SPECIAL_TOKENS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    def bpe_ids(self, token: str) -> list[int]:
        """The ids of one pre-token (already mapped to the byte alphabet), merging as CLIP's ``bpe`` does."""
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        word = [*token[:-1], token[-1] + "</w>"]
        ids = [self._char_ids[c] for c in token[:-1]] + [self._last_char_ids[token[-1]]]
        ranks = self.merge_ranks
        missing = len(ranks)  # ranks above every real one
        while len(word) > 1:
            pairs = {f"{a} {b}" for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda pair: ranks.get(pair, missing))
            rank = ranks.get(best)
            if rank is None:
                break
            first, second = best.split(" ")
            merged, merged_ids = [], []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    merged.extend(word[i:])
                    merged_ids.extend(ids[i:])
                    break
                merged.extend(word[i:j])
                merged_ids.extend(ids[i:j])
                i = j
                if i < len(word) - 1 and word[i + 1] == second:
                    merged.append(first + second)
                    merged_ids.append(512 + rank)
                    i += 2
                else:
                    merged.append(word[i])
                    merged_ids.append(ids[i])
                    i += 1
            word, ids = merged, merged_ids
        self._cache[token] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """The BPE ids of ``text`` (no start/end tokens, no truncation)."""
        ids: list[int] = []
        for token in regex.findall(self.pat, clean(text, self.clean_mode)):
            ids.extend(self.bpe_ids("".join(self.byte_encoder[b] for b in token.encode("utf-8"))))
        return ids

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> np.ndarray:
        """Start + ids + end, truncated to the context length (keeping the end token), zero-padded."""
        if isinstance(texts, str):
            texts = [texts]
        length = context_length or self.context_length
        result = np.zeros((len(texts), length), dtype=np.int64)
        for row, text in enumerate(texts):
            tokens = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(tokens) > length:
                tokens = tokens[:length]
                tokens[-1] = self.eot_token_id
            result[row, : len(tokens)] = tokens
        return result


def read_merges(vocab_path: str, count: int = MERGES) -> list[str]:
    """The first ``count`` merge lines ("first second") after the file's header line, as open_clip slices them."""
    with gzip.open(vocab_path, "rb") as handle:
        data = b""
        while data.count(b"\n") <= count:
            chunk = handle.read(1 << 18)
            if not chunk:
                break
            data += chunk
    lines = data.decode("utf-8").split("\n")[1 : count + 1]
    if len(lines) < count:
        raise ValueError(f"{vocab_path} holds {len(lines)} merges, not {count}")
    return lines
