"""The light model: a CLIP's towers exported to ONNX, run by ONNX Runtime with a torch-free tokenizer.

A search (or an index run) with this model never imports torch or open_clip: a cold ``clipsearch search`` then
costs NumPy, ONNX Runtime, the tokenizer and one small session instead of ~6 s of imports and both towers of the
checkpoint. The bundle is exported once per model (``clipsearch.model.export``, at index time) into the cache,
keyed by the model's identity, which the catalog stores with the vectors:

    <cache>/light/<key>/manifest.json   what the towers are and how they were checked against open_clip
                        text.onnx       token ids -> text features (at the query's real length when causal)
                        image.onnx      normalised pixels -> image features (optional; the indexing tower)
                        bpe_simple_vocab_16e6.txt.gz

The manifest is written last and the folder renamed into place, so a half-written bundle is never read. Any
problem (no bundle yet, a model without fixed weights, an unreadable file) is a ``LightUnavailable`` with a
reason, and the caller falls back to open_clip, saying so in the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clipsearch.imaging.decode import PixelSpec, resize_and_crop

log = logging.getLogger(__name__)

LIGHT_FORMAT = 1
MANIFEST = "manifest.json"


class LightUnavailable(Exception):
    """The light model cannot serve this model here; the message says why."""


def cache_dir() -> Path:
    """Where exported towers are kept: ``$CLIPSEARCH_CACHE``, else ``$XDG_CACHE_HOME/clipsearch``."""
    if os.environ.get("CLIPSEARCH_CACHE"):
        return Path(os.environ["CLIPSEARCH_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "clipsearch"


def cpu_threads() -> int:
    """Cores this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def gpu_present() -> bool:
    """Whether a CUDA/ROCm device node exists, without importing torch (indexing then belongs to torch)."""
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd"))


def bundle_key(identity: dict | None) -> str | None:
    """The cache key of a model's bundle, or ``None`` when the identity does not pin the weights (a random
    initialisation, an unpinned hub id): then the weights of two loads may differ and nothing is cached."""
    if not identity or not (identity.get("weights_sha256") or identity.get("pretrained")):
        return None
    text = json.dumps({"format": LIGHT_FORMAT, "identity": identity}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def bundle_dir(identity: dict | None) -> Path | None:
    key = bundle_key(identity)
    return None if key is None else cache_dir() / "light" / key


def light_refusal(options, images: bool) -> str | None:
    """Why these embedding options want the torch path (``None``: the light model may serve them)."""
    if options is None:
        return None
    if options.reference:
        return "--reference asks for plain open_clip"
    if options.device and options.device != "cpu":
        return f"device {options.device} runs in torch"
    if options.text_backend != "auto":
        return f"--text-backend {options.text_backend} runs in torch"
    if images and options.image_backend != "auto":
        return f"--image-backend {options.image_backend} was asked for"
    return None


def make_session(path: Path | bytes, threads: int | None = None, one_shot: bool = False):
    """An ONNX Runtime CPU session (from a file or a serialised model) that does not spin idle threads (they
    would steal the decoders' cores).

    ``one_shot``: for a process that runs the tower once and exits (a CLI search): skip the graph rewrites and
    the weight pre-packing that pay off over many runs; the session then loads in about half the time.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if one_shot:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.add_session_config_entry("session.disable_prepacking", "1")
    options.intra_op_num_threads = threads or cpu_threads()
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initialisers are noise on a user's terminal
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class TextInputs:
    """Token ids → what an exported causal text tower takes: token + position embeddings at the batch's real
    length ``(n, length, width)`` and each row's end-token position ``(n,)``.

    The token table (25M numbers for ViT-B-32) is memory-mapped: a query reads the few rows it uses.
    """

    def __init__(self, token_embedding: Path, positional_embedding: Path):
        self.table = np.load(token_embedding, mmap_mode="r")
        self.positions = np.load(positional_embedding)

    def __call__(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        eot = tokens.argmax(axis=1)  # the end token has the highest id
        # Under a causal mask nothing before the end token sees the padding after it: run at the real length.
        tokens = tokens[:, : int(eot.max()) + 1]
        embeddings = np.asarray(self.table[tokens], dtype=np.float32) + self.positions[: tokens.shape[1]]
        return np.ascontiguousarray(embeddings, dtype=np.float32), eot.astype(np.int64)


class LightModel:
    """Encodes texts (and images, when the bundle has an image tower) like the model's open_clip ``Embedder``.

    Sessions are made on first use: a text search never loads the image tower. Thread-safe.
    """

    def __init__(self, folder: Path, manifest: dict, one_shot: bool = False):
        from clipsearch.model.tokenizer import ClipTokenizer

        self.folder = folder
        self.manifest = manifest
        self.one_shot = one_shot
        text = manifest["text"]
        self.dim = int(manifest["dim"])
        self.tokenizer = ClipTokenizer(str(folder / text["vocab"]), int(text["context_length"]), text["clean"])
        inputs = text.get("embeddings")
        self._inputs = TextInputs(folder / inputs["embeddings"], folder / inputs["positions"]) if inputs else None
        image = manifest.get("image")
        self.pixel_spec = PixelSpec(int(image["size"]), image["interpolation"]) if image else None
        if image:
            self._mean = np.asarray(image["mean"], dtype=np.float32).reshape(1, 1, 1, 3)
            self._std = np.asarray(image["std"], dtype=np.float32).reshape(1, 1, 1, 3)
        self._sessions: dict[str, object] = {}
        self._lock = threading.Lock()
        self.text_backend = f"onnx-{text['variant']}"
        self.image_backend = f"onnx-{image['variant']}" if image else None

    @classmethod
    def open(cls, identity: dict | None, images: bool = False, one_shot: bool = False) -> LightModel:
        """The exported bundle of the model ``identity`` names; ``LightUnavailable`` says why not.

        ``images``: the image tower is needed too (an index run), not only the text tower (a text search).
        ``one_shot``: load the towers for one query rather than many (see ``make_session``).
        """
        folder = bundle_dir(identity)
        if folder is None:
            raise LightUnavailable("the model's identity does not pin its weights, so no export is kept for it")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise LightUnavailable("onnxruntime is not installed") from None
        try:
            with open(folder / MANIFEST, encoding="utf-8") as handle:
                manifest = json.load(handle)
        except FileNotFoundError:
            raise LightUnavailable(
                f"no exported towers for this model in {folder.parent} yet (an index run exports them)"
            ) from None
        except (OSError, ValueError) as exc:
            raise LightUnavailable(f"unreadable export manifest {folder / MANIFEST}: {exc}") from None
        if manifest.get("format") != LIGHT_FORMAT or manifest.get("identity") != identity:
            raise LightUnavailable(f"the export in {folder} is of another format or model")
        if images and not manifest.get("image"):
            raise LightUnavailable("the export has no image tower for this model")
        try:
            model = cls(folder, manifest, one_shot)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LightUnavailable(f"the export in {folder} is unusable: {exc}") from None
        model._session("text")  # a broken file must show here, where the caller can still fall back
        if images:
            model._session("image")
        return model

    @property
    def label(self) -> str:
        parts = [f"text {self.text_backend}"] + ([f"image {self.image_backend}"] if self.image_backend else [])
        return "ONNX Runtime (" + ", ".join(parts) + f") from {self.folder}"

    def _session(self, tower: str):
        with self._lock:
            session = self._sessions.get(tower)
            if session is None:
                path = self.folder / self.manifest[tower]["file"]
                try:
                    session = make_session(path, one_shot=self.one_shot)
                except Exception as exc:  # noqa: BLE001 - ORT raises its own types for a corrupt or missing file
                    raise LightUnavailable(f"cannot load {path}: {exc}") from None
                self._sessions[tower] = session
            return session

    # -- text -----------------------------------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → unit vectors ``(n, dim)``, each text run alone at its own length: an int8 tower quantises
        activations per call, so a text's vector must not depend on the others in the batch."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        session = self._session("text")
        rows = []
        for tokens in self.tokenizer(list(texts)):
            if self._inputs is None:  # a tower exported at full length
                rows.append(session.run(None, {"tokens": tokens[None]})[0])
            else:
                embeddings, eot = self._inputs(tokens[None])
                rows.append(session.run(None, {"embeddings": embeddings, "eot": eot})[0])
        return _normalise(np.concatenate(rows))

    # -- images ---------------------------------------------------------------------------------------------
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """A uint8 batch ``(n, size, size, 3)`` prepared with ``pixel_spec`` → unit vectors ``(n, dim)``."""
        if self.pixel_spec is None:
            raise LightUnavailable("the export has no image tower for this model")
        batch = (np.asarray(pixels, dtype=np.float32) / np.float32(255.0) - self._mean) / self._std
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        return _normalise(self._session("image").run(None, {"pixels": batch})[0])

    def encode_images(self, images) -> np.ndarray:
        """RGB PIL images → unit vectors (resized and cropped as open_clip's ``preprocess`` does)."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.pixel_spec is None:
            raise LightUnavailable("the export has no image tower for this model")
        return self.encode_pixels(np.stack([resize_and_crop(im, self.pixel_spec) for im in images]))


def _normalise(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), np.float32(1e-12))
