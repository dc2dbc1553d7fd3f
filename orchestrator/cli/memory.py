"""``chiffon memory index``: vector memory from the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from chiffon.orchestrator.cli.common import ConfigOpt, JsonOpt, out, progress_bar, run_or_exit, settings_or_exit
from chiffon.shared.runtime import open_runtime

app = typer.Typer()

memory_app = typer.Typer(help="Vector memory: index repos and docs for recall and code search.", no_args_is_help=True)
app.add_typer(memory_app, name="memory")


@memory_app.command("index")
def memory_index(
    path: Annotated[Path, typer.Argument(help="Directory to index (inside memory.index_roots or CHIFFON_REPO).")],
    collection: Annotated[str, typer.Option(help="codebase or documentation.")] = "codebase",
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Chunk PATH by structure and embed it; a re-run embeds only changed files and drops deleted ones."""
    from chiffon.servers.memory.indexer import index_directory
    from chiffon.servers.memory.service import open_memory

    async def go() -> Any:
        async with open_runtime(settings_or_exit(config)) as rt, open_memory(rt) as memory:
            with progress_bar() as bar:
                task = bar.add_task(f"indexing {path}", total=None)

                async def progress(done: int, total: int, message: str) -> None:
                    bar.update(task, completed=done, total=total, description=message[:60])

                return await index_directory(memory.vectors, path, collection, memory.index_roots, progress)

    report = run_or_exit(go())
    if as_json:
        out.print_json(report.model_dump_json())
        return
    out.print(f"[green]indexed[/] {escape(str(report.root))} into {report.collection}: {report.files_indexed} file(s) embedded "
              f"({report.chunks_added} chunks), {report.files_unchanged} unchanged, {report.files_deleted} deleted, "
              f"{len(report.skipped)} skipped, {report.seconds:.1f} s")
    for line in report.skipped:
        out.print(escape(f"  skipped {line}"), highlight=False)
