"""``chiffon-llm`` as a subprocess over stdio, configured by a YAML file, as an IDE starts it."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from tests.conftest import CHECKOUT
from tests.llm.fakes import FakeState

BIN = Path(sys.executable).parent


async def test_chiffon_llm_serves_over_stdio(cli_env: dict[str, str], tmp_path: Path,
                                             ollama_fake: tuple[FakeState, str],
                                             anthropic_fake: tuple[FakeState, str]) -> None:
    config = tmp_path / "chiffon.yaml"
    config.write_text(yaml.safe_dump({"llm": {
        "backends": {"ai-ollama": {"kind": "ollama", "url": ollama_fake[1], "host": "ai"},
                     "anthropic": {"kind": "anthropic", "url": anthropic_fake[1]}},
        "tiers": {"local": {"backend": "ai-ollama", "model": "qwen2.5:3b", "context_window": 8192},
                  "external": {"backend": "anthropic", "model": "claude-sonnet-4-6", "context_window": 200000}},
        "monthly_budget_usd": 5,
    }}))
    env = {**cli_env, "ANTHROPIC_API_KEY": ""}
    env.pop("ANTHROPIC_API_KEY")
    transport = StdioTransport(command=str(BIN / "chiffon-llm"), args=["--config", str(config)], env=env,
                               cwd=str(CHECKOUT))
    async with Client(transport) as client:
        models = (await client.call_tool("models", {})).structured_content
        answer = (await client.call_tool("chat", {"prompt": "is kuma up?", "high_value": True})).structured_content
    tiers = {t["tier"]: t for t in models["tiers"]}
    assert tiers["local"]["available"] and tiers["local"]["health"].endswith("up")
    assert not tiers["external"]["available"] and "ANTHROPIC_API_KEY" in tiers["external"]["why_unavailable"]
    assert answer["answered_by"]["tier"] == "local" and answer["text"].startswith("fine, is kuma up?")
    assert any("ANTHROPIC_API_KEY" in n for n in answer["notes"])
