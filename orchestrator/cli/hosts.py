"""``chiffon host ...``: what each homelab host can take on, and the operator's busy flag."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from chiffon.orchestrator.cli.common import ConfigOpt, JsonOpt, err, out, run_or_exit, settings_or_exit
from chiffon.shared.errors import InvalidInput
from chiffon.shared.logs import setup_logging

if TYPE_CHECKING:
    from chiffon.shared.config import Settings

app = typer.Typer()

host_app = typer.Typer(help="Homelab hosts: state, busy/free, GPU recordings.", no_args_is_help=True)
app.add_typer(host_app, name="host")


def _known(settings: Settings, name: str) -> str:
    if name not in settings.hosts:
        raise InvalidInput("host", f"{name!r} is not a configured host; hosts: {', '.join(sorted(settings.hosts))}")
    return name


async def _with_bus(settings: Settings, action: Any) -> Any:
    from chiffon.shared.bus import Bus

    bus = await Bus.open(settings.redis_url.get_secret_value() if settings.redis_url else None, settings.home)
    try:
        return await action(bus)
    finally:
        await bus.close()


@host_app.command("list")
def list_cmd(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Every configured host: available, busy, offline or unknown (never sent a heartbeat), with its last
    heartbeat's figures."""
    setup_logging()
    from chiffon.shared.hosts import host_states

    settings = settings_or_exit(config)
    names = sorted(settings.hosts)
    states = run_or_exit(_with_bus(settings, lambda bus: host_states(bus, names, settings.hostd.assume_available)))
    if as_json:
        out.print_json(json.dumps(states))
        return
    table = Table("host", "state", "why", "cpu", "ram free", "disk used", "gpus")
    colours = {"available": "green", "busy": "yellow", "offline": "red", "unknown": "dim"}
    for name, state in states.items():
        beat = state["heartbeat"] or {}
        gpus = ", ".join(f"{g['name']} {g['vram_used_mb']}/{g['vram_total_mb']} MB" for g in beat.get("gpus", []))
        table.add_row(name, f"[{colours[state['status']]}]{state['status']}[/]", state["reason"],
                      f"{beat['cpu_percent']:.0f}% of {beat['cpu_cores']}" if beat else "",
                      f"{beat['ram_available_mb']} MB" if beat else "",
                      f"{beat['disk_used_percent']:.0f}%" if beat else "", gpus or ("none" if beat else ""))
    out.print(table)


@host_app.command("busy")
def busy_cmd(name: str, reason: Annotated[str, typer.Option(help="Shown to whoever waits on the host.")] = "",
             config: ConfigOpt = None) -> None:
    """Mark a host busy: work for it pauses, and the LLM router skips its backends, until `chiffon host free`."""
    setup_logging()
    from chiffon.shared.hosts import set_operator_busy

    settings = settings_or_exit(config)
    run_or_exit(_with_bus(settings, lambda bus: set_operator_busy(bus, _known(settings, name), True, reason,
                                                           getpass.getuser())))
    err.print(f"{name} is busy until `chiffon host free {name}`")


@host_app.command("free")
def free_cmd(name: str, config: ConfigOpt = None) -> None:
    """Clear the operator's busy flag; the host's own heartbeat decides again (paused work resumes)."""
    setup_logging()
    from chiffon.shared.hosts import set_operator_busy

    settings = settings_or_exit(config)
    run_or_exit(_with_bus(settings, lambda bus: set_operator_busy(bus, _known(settings, name), False)))
    err.print(f"{name}: operator flag cleared")


@host_app.command("record")
def record_cmd(
    out_file: Annotated[Path, typer.Option("--out", help="Where to write the recording (JSON).")],
    samples: Annotated[int, typer.Option(min=1, max=10_000, help="Readings to take.")] = 12,
    interval: Annotated[float, typer.Option(min=0.1, max=3600, help="Seconds between readings.")] = 5.0,
    config: ConfigOpt = None,
) -> None:
    """Record this host's GPU readings (NVML or amdgpu sysfs) for `hostd.gpu_replay` and the tests."""
    setup_logging()
    from chiffon.servers.hostd.resources import open_gpu_reader, record
    from chiffon.shared.config import HostConfig
    from chiffon.shared.errors import ChiffonError

    settings = settings_or_exit(config)
    try:
        reader = open_gpu_reader(settings.hosts.get(settings.host, HostConfig()).gpu,
                                 settings.hostd.model_copy(update={"gpu_replay": None}))
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if reader.kind == "none":
        err.print("[bold red]error:[/] no NVIDIA (NVML) or amdgpu card found on this host")
        raise typer.Exit(2)
    err.print(f"recording {samples} reading(s) from {reader.kind}, {interval} s apart...")
    out_file.write_text(json.dumps(record(reader, samples, interval, settings.host), indent=1) + "\n")
    err.print(f"wrote {out_file}")
