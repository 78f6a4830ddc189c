"""The torch-free tokenizer gives exactly open_clip's token ids (the light query path depends on it)."""

from __future__ import annotations

import random
import string

import numpy as np
import pytest

from clipsearch.model.tokenizer import ClipTokenizer, fix_text

EDGE_CASES = [
    "", " ", "a", "A", "\n", "\t\t", "   leading and trailing   ", "a dog on a beach at sunset",
    "don't stop, we'll see; they're here — I'm sure you've heard it'd work",
    "DON'T SHOUT", "it's", "'s 't 're", "o'clock", "rock'n'roll",
    "&amp;", "&amp;amp;", "&amp;amp;amp;amp;", "fish &amp; chips", "&lt;b&gt;bold&lt;/b&gt;", "a < b & c > d",
    "&#39;quoted&#39;", "&eacute;t&eacute;", "&nbsp;spaced&nbsp;", "&unknown; entity", "AT&T", "Q&A",
    "café", "cafe\u0301", "naïve façade", "Ærøskøbing", "straße", "İstanbul", "ﬁsh ﬂow", "ＬＯＵＤ　ＮＯＩＳＥＳ",
    "東京の夜景", "北京烤鸭", "서울의 밤", "Москва зимой", "Αθήνα", "שלום עולם", "مرحبا بالعالم", "नमस्ते दुनिया",
    "ภาษาไทย", "Tiếng Việt có dấu", "ça va? oui!", "¿Qué tal?", "¡Hola!", "«guillemets»", "„Anführung“",
    "🐶", "🐶🐱🐭", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "❤️", "✔ done", "☃ snowman", "1️⃣", "🏳️‍🌈 flag",
    "mojibake: âœ” No problems", "Ã©tÃ©", "sÃ³", "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
    "12345", "3.14159", "1,000,000", "2026-12-01", "10:30pm", "$100", "50%", "#hashtag", "@mention",
    "https://example.com/path?q=1&r=2", "user@example.com", "C:\\Users\\me\\Pictures", "/home/me/photo.jpg",
    "snake_case_words", "camelCaseWords", "kebab-case-words", "ALLCAPS", "MiXeD cAsE",
    "!!!", "???", "...", "---", "***", "()[]{}", "<start_of_text>", "<end_of_text>", "<start_of_text>hi",
    "tab\tseparated\tvalues", "line\nbreaks\r\nand\rreturns", "non\u00a0breaking", "zero\u200bwidth",
    "soft\u00adhyphen", "bell\x07char", "esc\x1b[31mred\x1b[0m", "null\x00byte", "del\x7f", "vt\x0bff\x0c",
    "\u2028line separator", "e\u0308\u0301 stacked marks", "\ufeffbom", "private \ue000 use", "\U0001d538 math",
    "supercalifragilisticexpialidocious", "antidisestablishmentarianism",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 300, "ab" * 200, "word " * 100, "🐶" * 80, "東" * 120, "a, " * 60, " ".join(["lorem ipsum dolor"] * 40),
]

ASCII_WORDS = (
    "a the of photo picture dog cat beach sunset mountain red blue green large small circle square star triangle "
    "left right top bottom striped dotted background over under near far two children playing football park "
    "night rain snow bridge car house old new boat lake forest people walking close-up flower pasta birthday"
).split()
UNICODE_WORDS = ["café", "naïve", "Zürich", "São Paulo", "Kraków", "東京", "北京", "서울", "Москва", "Αθήνα", "שלום",
                 "مرحبا", "नमस्ते", "ภาษา", "Việt", "ﬁ", "Ｗｉｄｅ", "ǅ", "ß", "ı", "İ", "ǰ", "ﬀ"]
EMOJI = ["🐶", "🐱", "🌅", "🏖️", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "✨", "🎂", "🚗", "☔", "🌧", "🏔", "🙂", "🤖"]
ODD = ["&amp;", "&lt;", "&#x2019;", "\u00a0", "\u200b", "\t", "\n", "—", "–", "…", "“", "”", "‘", "’", "·", "•",
       "©", "®", "™", "°", "±", "×", "÷", "€", "£", "¥", "½", "²", "\x1b[1m", "\x00", "Ã©", "â€™"]


def corpus(count: int = 1200, seed: int = 20261201) -> list[str]:
    """Edge cases plus ``count`` seeded mixtures of words, unicode, emoji, punctuation and oddities."""
    rng = random.Random(seed)
    pools = [ASCII_WORDS, UNICODE_WORDS, EMOJI, list(string.punctuation), ODD, [str(n) for n in range(100)]]
    texts = list(EDGE_CASES)
    for _ in range(count):
        length = rng.choice([1, 2, 3, 5, 8, 13, 21, 40, 90])  # the longest run past 77 tokens: truncation
        parts = []
        for _ in range(length):
            pool = rng.choices(pools, weights=[10, 3, 2, 2, 1, 1])[0]
            word = rng.choice(pool)
            parts.append(word.upper() if rng.random() < 0.1 else word)
        texts.append(rng.choice(["", " ", "  ", "\t"]).join(parts) if rng.random() < 0.2 else " ".join(parts))
    return texts


@pytest.fixture(scope="module")
def open_clip_tokenizers():
    import open_clip

    from clipsearch.model.models import register_tiny_model

    register_tiny_model()
    return {name: open_clip.get_tokenizer(name) for name in ("ViT-B-32", "clipsearch-tiny")}


@pytest.fixture(scope="module")
def ours():
    from open_clip.tokenizer import default_bpe

    return lambda context_length: ClipTokenizer(default_bpe(), context_length)


def test_the_corpus_is_large_and_varied():
    texts = corpus()
    assert len(set(texts)) >= 1000
    assert any(len(t) > 500 for t in texts) and any(not t.isascii() for t in texts) and "" in texts


@pytest.mark.parametrize("model, context_length", [("ViT-B-32", 77), ("clipsearch-tiny", 32)])
def test_token_ids_equal_open_clips_on_more_than_a_thousand_strings(open_clip_tokenizers, ours, model, context_length):
    reference = open_clip_tokenizers[model]
    assert reference.context_length == context_length
    texts = corpus()
    expected = reference(texts).numpy()
    got = ours(context_length)(texts)
    assert got.dtype == np.int64 and got.shape == expected.shape == (len(texts), context_length)
    mismatches = [texts[i] for i in np.flatnonzero((got != expected).any(axis=1))]
    assert not mismatches, f"{len(mismatches)} strings tokenised differently, e.g. {mismatches[:3]!r}"


def test_long_texts_are_truncated_at_the_context_length_ending_on_the_end_token(ours):
    tokenizer = ours(32)
    ids = tokenizer(["word " * 100, "a dog"])
    assert ids[0, -1] == tokenizer.eot_token_id and (ids[0] != 0).all()
    assert ids[1, 0] == tokenizer.sot_token_id and ids[1, 3] == tokenizer.eot_token_id and not ids[1, 4:].any()


def test_vocabulary_tables_lay_ids_out_as_open_clip_does(open_clip_tokenizers, ours):
    reference = open_clip_tokenizers["ViT-B-32"]
    tokenizer = ours(77)
    assert tokenizer.vocab_size == len(reference.encoder) == 49408
    assert tokenizer.merge_ranks == {" ".join(pair): rank for pair, rank in reference.bpe_ranks.items()}
    assert all(reference.encoder["".join(pair)] == 512 + rank for pair, rank in reference.bpe_ranks.items())
    assert (tokenizer.sot_token_id, tokenizer.eot_token_id) == (reference.sot_token_id, reference.eot_token_id)


def test_skipping_ftfy_is_exact_for_printable_ascii_without_ampersands():
    import ftfy

    rng = random.Random(7)
    alphabet = [c for c in map(chr, range(0x20, 0x7F)) if c != "&"]
    samples = ["".join(rng.choices(alphabet, k=rng.randint(0, 120))) for _ in range(3000)]
    samples += [t for t in corpus() if t.isascii() and t.isprintable() and "&" not in t]
    assert all(ftfy.fix_text(s) == s for s in samples)
    # and the shortcut is only taken for such text: these need ftfy (or may)
    for text in ["&amp;", "Ã©", "a\x1b[1mb", "tab\there", "ﬁ"]:
        assert fix_text(text) == ftfy.fix_text(text)
