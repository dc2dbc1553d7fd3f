"""``chiffon services`` / ``chiffon inventories``: how chiffon reads the IaC repo, without touching a host."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from chiffon.orchestrator.cli.common import EXIT_ERROR, ConfigOpt, JsonOpt, err, out, settings_or_exit
from chiffon.shared.errors import ChiffonError
from chiffon.shared.logs import setup_logging

if TYPE_CHECKING:
    from chiffon.servers.ansible.catalog import Catalog

app = typer.Typer()

RepoOpt = Annotated[Path | None, typer.Option(help="IaC repo (default: CHIFFON_REPO or the `repo` key).")]
InventoryOpt = Annotated[str | None, typer.Option(help="Inventory name or path in the repo (default: ansible.cfg's).")]


def _catalog(repo: Path | None, inventory: str | None, config: Path | None) -> Catalog:
    from chiffon.servers.ansible.catalog import Catalog
    from chiffon.servers.ansible.service import NO_REPO

    settings = settings_or_exit(config)
    root = repo or settings.repo
    try:
        if root is None:
            raise ChiffonError(NO_REPO)
        return Catalog.load(root, inventory or settings.ansible.inventory)
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None


@app.command("services")
def services_cmd(
    host: Annotated[str | None, typer.Option(help="Only services that target this inventory host.")] = None,
    repo: RepoOpt = None, inventory: InventoryOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None,
) -> None:
    """What runs where: each service the repo deploys, its playbook, tags, hosts and condition."""
    setup_logging()
    from chiffon.servers.ansible.units import services

    catalog = _catalog(repo, inventory, config)
    resolve = catalog.hosts_matching if catalog.inventory_name else None
    try:
        rows = services(catalog.units, resolve, host)
    except ChiffonError as exc:  # the inventory cannot be parsed: list without resolved hosts, and say so
        err.print(f"[yellow]warning:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        rows = services(catalog.units, None, host)
    if as_json:
        out.print_json(json.dumps({"repo": str(catalog.root), "inventory": catalog.inventory_name,
                                   "services": rows}))
        return
    table = Table("service", "playbook", "tags", "hosts", "condition",
                  title=f"{escape(str(catalog.root))} (inventory {escape(catalog.inventory_name or 'none')})",
                  title_justify="left")
    for row in rows:
        hosts = ", ".join(row["targets"]) or ", ".join(row["hosts"]) or "-"
        table.add_row(escape(row["service"]), escape(row["playbook"] or f"none (role in {row['source']})"),
                      escape(",".join(row["tags"])) or "-", escape(hosts), escape(" and ".join(row["when"])) or "-")
    out.print(table)


@app.command("deps")
def deps_cmd(repo: RepoOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """What the repo's requirements.yml names (collections, Galaxy roles), which are installed here, and how to
    install the rest. Exit 2 when something is missing."""
    setup_logging()
    from chiffon.servers.ansible.requirements import EXTRA, dependencies

    found = dependencies(_catalog(repo, None, config))
    if as_json:
        out.print_json(json.dumps(found))
    else:
        if found["requirements"] is None:
            out.print("no requirements.yml in the repo: nothing to install beyond ansible-core"
                      + ("" if found["community_package"] else f" (the `{EXTRA}` extra adds community collections)"))
        table = Table("kind", "name", "installed", "where", title=escape(found["requirements"] or "-"),
                      title_justify="left")
        for item in found["items"]:
            table.add_row(item["kind"], escape(item["name"]), "yes" if item["installed"] else "[red]no[/]",
                          escape(item["where"] or "-"))
        if found["items"]:
            out.print(table)
        for fix in found["fix"]:
            err.print("[yellow]to install:[/] " + escape(fix), highlight=False, soft_wrap=True)
    if found["missing"]:
        raise typer.Exit(EXIT_ERROR)


@app.command("inventories")
def inventories_cmd(repo: RepoOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """The inventories chiffon found in the repo, and the one a plan uses by default."""
    setup_logging()
    catalog = _catalog(repo, None, config)
    chosen = catalog.inventory_name
    if as_json:
        out.print_json(json.dumps({"default": chosen, "inventories": [c.as_dict() for c in catalog.inventories]}))
        return
    if not catalog.inventories:
        err.print(escape(catalog.inventory_problem or "no inventory found"), highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR)
    table = Table("name", "path", "from", "default")
    for c in catalog.inventories:
        table.add_row(escape(c.name), escape(c.path), c.source, "yes" if c.name == chosen else "")
    out.print(table)
