"""Tokens that actually guard: no empty token beyond loopback, /metrics behind the token there too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from fastmcp import FastMCP

from chiffon.servers.hostd.app import create_app
from chiffon.shared.config import load_settings
from chiffon.shared.mcp import add_http_routes, bearer_verifier

BIN = Path(sys.executable).parent


def test_hostd_refuses_an_empty_token_beyond_loopback(tmp_path: Path) -> None:
    env = {"CHIFFON_HOME": str(tmp_path), "CHIFFON_HOSTD__TOKEN": "  ", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([str(BIN / "chiffon-hostd"), "--bind", "0.0.0.0", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "without a token" in proc.stderr


async def test_hostd_metrics_need_the_token_when_bound_beyond_loopback(tmp_path: Path) -> None:
    settings = load_settings(None, home=tmp_path, hostd={"token": "s3cret"})
    app = create_app(settings, open_metrics=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as c:
        denied = await c.get("/metrics")
        allowed = await c.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        health = await c.get("/health")
    assert denied.status_code == 401 and allowed.status_code == 200 and health.status_code == 200


async def test_mcp_metrics_need_the_token_when_given_one() -> None:
    server = FastMCP("t")
    add_http_routes(server, metrics_token="s3cret")
    app = server.http_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as c:
        denied = await c.get("/metrics")
        allowed = await c.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert denied.status_code == 401 and allowed.status_code == 200


async def test_the_bearer_verifier_accepts_only_the_exact_token() -> None:
    verifier = bearer_verifier("s3cret")
    assert (await verifier.verify_token("s3cret")).client_id == "chiffon-operator"
    assert await verifier.verify_token("s3cre") is None and await verifier.verify_token("s3cretX") is None


async def test_named_tokens_are_stored_hashed_verified_and_revocable(rt) -> None:  # type: ignore[no-untyped-def]
    from chiffon.shared import tokens

    token = await tokens.create(rt.store, "desktop-trae")
    stored = await rt.store.pool.fetchval("SELECT token_sha256 FROM client_tokens WHERE name='desktop-trae'")
    assert stored == tokens.digest(token) and token not in stored
    assert await tokens.verify(rt.store, token) == "desktop-trae"
    assert await tokens.verify(rt.store, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    verifier = bearer_verifier("", lambda t: tokens.verify(rt.store, t))
    assert (await verifier.verify_token(token)).client_id == "token:desktop-trae"
    await tokens.revoke(rt.store, "desktop-trae")
    assert await tokens.verify(rt.store, token) is None and await verifier.verify_token(token) is None


def test_token_cli_shows_the_token_once_and_lists_names_only(cli_env: dict[str, str]) -> None:
    import json

    from tests.e2e.test_cli import chiffon

    made = chiffon(cli_env, "token", "create", "laptop-cursor")
    token = made.stdout.strip()
    assert made.returncode == 0 and len(token) >= 40 and "shown only now" in made.stderr
    listed = chiffon(cli_env, "token", "list", "--json")
    assert token not in listed.stdout
    assert "laptop-cursor" in [t["name"] for t in json.loads(listed.stdout)["tokens"]]
    assert chiffon(cli_env, "token", "create", "laptop-cursor").returncode == 2  # one token per name
    assert chiffon(cli_env, "token", "revoke", "laptop-cursor").returncode == 0
