"""/health tells the truth: it checks the parts behind the server and says failed (503) when one stops."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastmcp import FastMCP

from chiffon.shared.config import load_settings
from chiffon.shared.health import check_parts
from chiffon.shared.mcp import add_http_routes
from chiffon.shared.runtime import open_runtime, stop_embedded


async def test_health_turns_failed_when_redis_stops(tmp_path: Path) -> None:
    settings = load_settings(None, home=tmp_path / "home")
    try:
        async with open_runtime(settings) as rt:
            server = FastMCP("t")
            add_http_routes(server, health_check=lambda: check_parts(rt, service="t"))
            app = server.http_app()
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as client:
                before = await client.get("/health")
                assert before.status_code == 200 and before.json()["status"] == "ok"
                assert {p["service"]: p["status"] for p in before.json()["parts"]} == {"store": "ok", "bus": "ok"}
                assert await rt.bus.shutdown_embedded()
                after = await client.get("/health")
            assert after.status_code == 503 and after.json()["status"] == "failed"
            parts = {p["service"]: p for p in after.json()["parts"]}
            assert parts["bus"]["status"] == "failed" and parts["store"]["status"] == "ok"
    finally:
        await stop_embedded(settings)
