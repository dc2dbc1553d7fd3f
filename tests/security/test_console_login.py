"""Attack 8: the console login had no rate limit (40 wrong passwords in 11.5 s, then the right one worked)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from chiffon.orchestrator.console.auth import hash_password
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.audit import AuditLog
from chiffon.shared.config import Operator
from chiffon.shared.runtime import Runtime

RIGHT = "correct horse battery staple"
ATTACKER, OTHER_ADDRESS = "10.9.8.7", "10.1.1.1"


@pytest.fixture(scope="module")
def operators() -> list[Operator]:
    return [Operator(name="alice", password_hash=hash_password(RIGHT)),
            Operator(name="bob", password_hash=hash_password(RIGHT + " bob"))]


class Clock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def logins(rt: Runtime, operators: list[Operator], audit_dir: Path) -> tuple[object, AuditLog]:
    from chiffon.orchestrator.console.auth import ConsoleLogin, LoginGuard

    audit = AuditLog(audit_dir)
    guard = LoginGuard(max_failures=5, window_s=900, base_delay_s=30, max_delay_s=3600, clock=Clock())
    return ConsoleLogin(operators, guard, audit), audit


def console_app(rt: Runtime, operators: list[Operator]) -> object:
    from chiffon.orchestrator.console.app import create_app

    settings = rt.settings.model_copy(update={"console": rt.settings.console.model_copy(
        update={"operators": operators})})
    return create_app(AnsibleService.for_runtime(dataclasses.replace(rt, settings=settings)))


async def post_login(app: object, address: str, name: str, password: str) -> int:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return (await client.post("/login", data={"username": name, "password": password})).status_code


async def test_forty_wrong_passwords_then_the_right_one_is_refused_over_http(rt: Runtime,
                                                                             operators: list[Operator]) -> None:
    app = console_app(rt, operators)
    for _ in range(40):
        assert await post_login(app, ATTACKER, "alice", "wrong password!") == 400
    assert await post_login(app, ATTACKER, "alice", RIGHT) == 400
    assert await post_login(app, OTHER_ADDRESS, "bob", RIGHT + " bob") == 200  # another name and address: unaffected


async def test_a_backed_off_login_is_refused_without_checking_the_password_until_the_delay_passes(
        rt: Runtime, operators: list[Operator], tmp_path: Path) -> None:
    gate, _ = logins(rt, operators, tmp_path / "audit")
    for _ in range(40):
        assert not await gate.login("alice", "wrong password!", ATTACKER)  # type: ignore[attr-defined]
    assert not await gate.login("alice", RIGHT, ATTACKER)  # type: ignore[attr-defined]
    assert not await gate.login("alice", RIGHT, OTHER_ADDRESS)  # type: ignore[attr-defined] # the name is backed off
    assert await gate.login("bob", RIGHT + " bob", OTHER_ADDRESS)  # type: ignore[attr-defined]
    guard = gate.guard  # type: ignore[attr-defined]
    guard.clock.now += guard.wait_s("alice", ATTACKER) + 1
    assert await gate.login("alice", RIGHT, ATTACKER)  # type: ignore[attr-defined]


async def test_the_delay_grows_with_each_failure_after_a_lockout_and_a_success_resets_it(
        rt: Runtime, operators: list[Operator], tmp_path: Path) -> None:
    gate, _ = logins(rt, operators, tmp_path / "audit")
    guard = gate.guard  # type: ignore[attr-defined]
    for _ in range(5):
        await gate.login("alice", "wrong password!", ATTACKER)  # type: ignore[attr-defined]
    first = guard.wait_s("alice", ATTACKER)
    guard.clock.now += first + 1
    await gate.login("alice", "wrong password!", ATTACKER)  # type: ignore[attr-defined]
    second = guard.wait_s("alice", ATTACKER)
    assert first == 30 and second == 60
    guard.clock.now += second + 1
    assert await gate.login("alice", RIGHT, ATTACKER)  # type: ignore[attr-defined]
    assert guard.wait_s("alice", ATTACKER) == 0
    await gate.login("alice", "wrong password!", ATTACKER)  # type: ignore[attr-defined]
    assert guard.wait_s("alice", ATTACKER) == 0  # one failure after a success: no back-off yet


async def test_each_failure_and_each_lockout_is_audited_and_no_password_is(
        rt: Runtime, operators: list[Operator], tmp_path: Path) -> None:
    gate, audit = logins(rt, operators, tmp_path / "audit")
    for _ in range(8):
        await gate.login("alice", "wrong password!", ATTACKER)  # type: ignore[attr-defined]
    records = audit.query(limit=100)
    kinds = [r.body.get("kind") for r in records]
    assert kinds.count("console_login_failed") == 5 and kinds.count("console_login_locked") == 1
    text = "\n".join(path.read_text() for path in (tmp_path / "audit" / "records").rglob("*.yaml"))
    assert ATTACKER in text and "alice" in text and "wrong password!" not in text
