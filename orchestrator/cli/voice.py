"""``chiffon say``, ``chiffon transcribe``, ``chiffon hostd`` and ``chiffon models``: speech from the terminal.

``say`` and ``transcribe`` go through the same client as the voice MCP server:
chiffon-hostd at ``hostd.url``, or the engines in this process when unset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from chiffon.orchestrator.cli.common import (
    EXIT_ERROR,
    ConfigOpt,
    JsonOpt,
    err,
    out,
    progress_bar,
    run_or_exit,
    settings_or_exit,
)
from chiffon.shared.logs import setup_logging

if TYPE_CHECKING:  # the settings model loads when a command runs: `chiffon --help` stays fast
    from chiffon.shared.config import Settings

app = typer.Typer()

models_app = typer.Typer(help="Speech models: what this host has, and fetching them.", no_args_is_help=True)
app.add_typer(models_app, name="models")


def _voice(config: Path | None) -> Any:
    from chiffon.servers.voice.client import HostdClient
    from chiffon.servers.voice.service import VoiceService

    settings = settings_or_exit(config)
    return VoiceService(settings, HostdClient(settings))


@app.command()
def say(
    text: Annotated[str, typer.Argument(help="What to say.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="wav file to write.")] = Path("speech.wav"),
    voice: Annotated[str | None, typer.Option(help="Voice (chiffon models list / the voices tool).")] = None,
    speed: Annotated[float, typer.Option(help="0.25 to 4.0.")] = 1.0,
    engine: Annotated[str | None, typer.Option(help="kokoro or piper (default voice.tts_engine).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Speak TEXT into a wav file (Kokoro by default)."""
    setup_logging()

    async def go() -> Any:
        svc = _voice(config)
        try:
            with progress_bar() as bar:
                bar.add_task("speaking", total=None)
                speech = await svc.speak(text, voice, speed, engine)
        finally:
            await svc.hostd.aclose()
        output.write_bytes(Path(speech.path).read_bytes())
        Path(speech.path).unlink(missing_ok=True)
        return speech

    speech = run_or_exit(go())
    out.print(f"wrote {output}: {speech.duration_s:.1f} s, voice {speech.voice}, {speech.sample_rate} Hz")


@app.command()
def transcribe(
    file: Annotated[Path, typer.Argument(help="Audio file: wav, flac, mp3, ogg, webm, m4a.")],
    language: Annotated[str | None, typer.Option(help="ISO 639-1 code; default: detect (en for *.en).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Transcribe FILE with faster-whisper; prints the text (or JSON with segments and real-time factor)."""
    setup_logging()
    if not file.is_file():
        err.print(f"[bold red]error:[/] {escape(str(file))}: no such file")
        raise typer.Exit(EXIT_ERROR)

    async def go() -> Any:
        svc = _voice(config)
        try:
            with progress_bar() as bar:
                bar.add_task(f"transcribing {file.name}", total=None)
                return await svc.transcribe(str(file), language)
        finally:
            await svc.hostd.aclose()

    result = run_or_exit(go())
    if as_json:
        out.print_json(result.model_dump_json())
    else:
        out.print(result.text or "[dim](no speech)[/]")
        err.print(f"{result.duration_s:.1f} s of {result.language} audio, real-time factor {result.rtf:.2f} "
                  f"({result.model})", highlight=False)


@app.command("hostd")
def hostd_cmd(
    host: Annotated[str | None, typer.Option(help="This host's name (selects deploy/config/hosts/<name>.yaml).")] = None,
    bind: Annotated[str | None, typer.Option(help="Listen address (default hostd.bind: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default hostd.port: 8770).")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Run chiffon-hostd: the speech endpoints of this host (OpenAI-compatible), until interrupted."""
    from chiffon.servers.hostd.__main__ import serve_hostd
    from chiffon.shared.config import load_settings

    setup_logging(verbose, part="hostd")
    try:
        run_or_exit(serve_hostd(load_settings(None, host=host), bind, port))
    except KeyboardInterrupt:
        pass


def _llm_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row per LLM tier: its model, and for an in-process one the GGUF file (a packaged one before its first
    load may not be joined yet: present means its package is installed)."""
    from chiffon.servers.llm.packaged import effective_llm, installed

    rows, llm = [], effective_llm(settings)
    for tier, cfg in llm.tiers.items():
        backend = llm.backends[cfg.backend]
        path = Path(backend.model_path).expanduser() if backend.model_path else None
        on_disk = path is not None and path.is_file()
        present = on_disk or (backend.packaged is not None and installed(backend.packaged))
        source = "package" if backend.packaged else "file" if path else backend.url or "API"
        rows.append({"engine": f"llm:{tier}", "name": cfg.model, "present": present if path else None,
                     "source": source, "size_mb": round(path.stat().st_size / 2**20, 1) if on_disk and path else None,
                     "path": str(path) if path else None, "backend": cfg.backend, "kind": backend.kind})
    return rows


@models_app.command("list")
def models_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The models this host is configured for, speech and LLM tiers: present or not, where from, size."""
    from chiffon.servers.hostd.models import inventory

    settings = settings_or_exit(config)
    rows = [*inventory(settings), *_llm_rows(settings)]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("engine", "model", "present", "source", "MiB", "path")
    for r in rows:
        present = "-" if r["present"] is None else "yes" if r["present"] else "[red]no[/]"  # None: served remotely
        table.add_row(str(r["engine"]), str(r["name"]), present, str(r["source"] or "-"),
                      str(r["size_mb"] or "-"), str(r["path"] or "-"))
    out.print(table)


@models_app.command("pull")
def models_pull(
    engine: Annotated[list[str], typer.Option(help="whisper, kokoro, piper (repeatable; default all).")] = [],  # noqa: B006
    config: ConfigOpt = None,
) -> None:
    """Fetch the configured speech models into CHIFFON_HOME/models (needs a network)."""
    import asyncio

    from chiffon.servers.hostd.models import pull

    settings = settings_or_exit(config)
    with progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def progress(name: str, done: int, total: int | None) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"downloading {name}", total=total)
            bar.update(tasks[name], completed=done, total=total)

        got = run_or_exit(asyncio.to_thread(pull, settings, engine or ["whisper", "kokoro", "piper"], progress))
    for m in got:
        out.print(f"[green]ready[/] {m.engine} {m.name} ({m.source}): {m.paths[0]}")
