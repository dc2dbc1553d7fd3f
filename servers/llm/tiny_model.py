"""A tiny random-weight llama GGUF for tests and benchmarks (no download).

The model (300-token SentencePiece vocab with byte fallback, 2 layers, hidden
size 64, 0.7 MB) loads in llama.cpp and generates gibberish quickly: enough to
exercise a real ``llama_cpp.server`` (HTTP, streaming, context limits, slots)
without fetching weights. Needs the ``gguf`` package (a dev dependency).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

N_VOCAB = 300
N_EMBD = 64
N_FF = 128
N_LAYERS = 2
N_HEAD = 4
N_CTX_TRAIN = 2048

_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6
_PIECES = ["▁", "▁the", "▁a", "▁and", "▁to", "▁of", "▁is", "▁in", "▁it", "▁on", "e", "t", "o", "n", "s",
           "r", "i", "l", "d", "h", "c", "u", "m", "p", "y", "g", "k", "▁deploy", "▁host", "▁kuma",
           "▁ok", "▁yes", "▁no", ".", ",", "!", "?", "er", "in", "on", "at"]


def write_tiny_llama(path: Path, seed: int = 0) -> Path:
    """Write the tiny model to ``path`` (created or overwritten) and return it.

    Weights are Gaussian noise (sigma 0.02) from ``seed``, so two seeds give two
    different models with the same shape.
    """
    import gguf
    import numpy as np

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + _PIECES
    assert len(tokens) == N_VOCAB, len(tokens)
    types = [_UNKNOWN, _CONTROL, _CONTROL] + [_BYTE] * 256 + [_NORMAL] * len(_PIECES)
    scores = [0.0] * 259 + [-float(i) for i in range(len(_PIECES))]

    rng = np.random.default_rng(seed)

    def noise(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"chiffon-tiny-llama-{seed}")
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYERS)
    writer.add_feed_forward_length(N_FF)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)

    # numpy shapes are (rows, cols) = ggml's ne reversed.
    writer.add_tensor("token_embd.weight", noise(N_VOCAB, N_EMBD))
    for i in range(N_LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", noise(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", noise(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", noise(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", noise(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    writer.add_tensor("output.weight", noise(N_VOCAB, N_EMBD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def serve_tiny(model: Path, port: int, *, n_ctx: int = 512, extra: tuple[str, ...] = (),
               timeout_s: float = 90) -> subprocess.Popen[bytes]:
    """Start ``python -m llama_cpp.server`` on ``model`` (alias ``tiny``) at 127.0.0.1:``port``, one thread;
    returns once ``GET /v1/models`` answers. For benchmarks; the caller kills the process.

    Raises:
        RuntimeError: the server did not answer within ``timeout_s`` (it is killed).
    """
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "tiny", "--n_ctx",
         str(n_ctx), "--n_threads", "1", *extra, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"llama_cpp.server did not start within {timeout_s:g} s")
