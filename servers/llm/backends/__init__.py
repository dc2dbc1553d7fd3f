"""LLM backends behind one protocol, one module each.

=====================  =========================================  ============
kind                   module                                     health probe
=====================  =========================================  ============
``llamacpp``           :mod:`.llamacpp` (OpenAI API over httpx)   GET /v1/models
``ollama``             :mod:`.ollama` (the ``ollama`` client)     GET /api/tags
``anthropic``          :mod:`.anthropic` (the ``anthropic`` SDK)  GET /v1/models
``llamacpp-inprocess`` :mod:`.inprocess` (llama-cpp-python)       model loaded
=====================  =========================================  ============

The protocol, :class:`~.base.Backend`, lives in :mod:`.base` with the helpers the modules share, so
that the modules import it and this package imports them, never the other way round.
Every backend streams (:meth:`Backend.stream` yields :class:`~servers.llm.types.Delta`
then exactly one :class:`~servers.llm.types.Done`); a stream that ends without
``Done`` is broken and the router discards what it got.
"""

from __future__ import annotations

from chiffon.servers.llm.backends.base import Backend
from chiffon.shared.config import LLMBackendConfig
from chiffon.shared.errors import ConfigError


def make_backend(name: str, cfg: LLMBackendConfig) -> Backend:
    """Build the backend ``cfg.kind`` names.

    Raises:
        ConfigError: a missing URL or model path, or llama-cpp-python not installed for llamacpp-inprocess.
    """
    if cfg.kind in ("llamacpp", "ollama") and not cfg.url:
        raise ConfigError(f"llm.backends.{name}.url is required for kind {cfg.kind}")
    if cfg.kind == "llamacpp":
        from chiffon.servers.llm.backends.llamacpp import LlamaCppServer

        return LlamaCppServer(name, cfg)
    if cfg.kind == "ollama":
        from chiffon.servers.llm.backends.ollama import OllamaBackend

        return OllamaBackend(name, cfg)
    if cfg.kind == "anthropic":
        from chiffon.servers.llm.backends.anthropic import AnthropicBackend

        return AnthropicBackend(name, cfg)
    from chiffon.servers.llm.backends.inprocess import InProcessLlama

    return InProcessLlama(name, cfg)
