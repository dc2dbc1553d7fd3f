"""The streamable HTTP transport of the MCP servers (``http:``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from chiffon.shared.config.base import Section


class HttpSettings(Section):
    """Streamable HTTP transport of the MCP servers."""

    host: str = Field("127.0.0.1", description="Bind address; anything but loopback needs a bearer token.")
    port: int = Field(8765, gt=0, lt=65536, description="TCP port.")
    bearer_token: SecretStr | None = Field(None, description="Token clients must send; set it through CHIFFON_HTTP__BEARER_TOKEN.")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Names clients use to reach this server (ai, ai.homelab.lan) besides the bind address and "
                    "localhost; any other Host or browser Origin is refused (DNS rebinding).")
    tls_cert: Path | None = Field(None, description="PEM certificate (chain): with tls_key, the server speaks HTTPS.")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("set both tls_cert and tls_key, or neither")
        for name in ("tls_cert", "tls_key"):
            path = getattr(self, name)
            if path is not None and not path.expanduser().is_file():
                raise ValueError(f"{name}: {path} is not a file")
        return self
