"""Operating chiffon: ``chiffon up|down|doctor``, ``chiffon install`` (IDE clients), ``chiffon deploy systemd``,
and the metrics a served orchestrator refreshes per scrape."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from chiffon.orchestrator.cli.common import EXIT_ERROR, ConfigOpt, JsonOpt, err, out, run_or_exit, settings_or_exit
from chiffon.shared.errors import ChiffonError
from chiffon.shared.logs import setup_logging

app = typer.Typer()


@app.command("install")
def install_cmd(
    client: Annotated[str, typer.Argument(help="claude-desktop, claude-code, cursor, vscode, trae or antigravity.")],
    print_only: Annotated[bool, typer.Option("--print", help="Show the merged config; write nothing.")] = False,
    path: Annotated[Path | None, typer.Option(help="The client's config file (default: where the client reads it).")] = None,
    repo: Annotated[Path | None, typer.Option(
        help="IaC repo the IDE plans against (recorded as CHIFFON_REPO in the client's entry).")] = None,
    url: Annotated[str | None, typer.Option(
        help="An orchestrator on another machine (`chiffon serve --transport http`), e.g. https://ai:8765/mcp.")] = None,
    token: Annotated[str | None, typer.Option(
        help="With --url: the bearer token `chiffon token create NAME` printed on that machine; '-' reads it "
             "from stdin (kept out of shell history).")] = None,
    allow_http: Annotated[bool, typer.Option(
        "--allow-http", help="Accept an http:// URL to another machine (the token crosses the network in clear).")] = False,
    toolsets: Annotated[str | None, typer.Option(
        help="Local entry: the servers whose tools the IDE gets (`chiffon serve --toolsets`).")] = None,
    token_env: Annotated[str | None, typer.Option(
        help="claude-code with --url: write `Bearer ${NAME}` instead of the token (Claude Code fills it from its "
             "environment); the file then holds no secret.")] = None,
    scope: Annotated[str | None, typer.Option(
        help="claude-code: user (~/.claude.json, every project; the default with --token) or project "
             "(./.mcp.json, the default otherwise).")] = None,
    force_token_in_repo: Annotated[bool, typer.Option(
        "--force-token-in-repo", help="Write a token into a file inside a git work tree anyway.")] = False,
) -> None:
    """Add chiffon's MCP server to an IDE client's config (other servers kept, a backup first): a local stdio
    entry, or with --url a remote one that sends --token. A token never goes into a file inside a git work tree
    unless --force-token-in-repo says so."""
    setup_logging()
    import os

    from chiffon.orchestrator import clients
    from chiffon.orchestrator.clients import check_url, install, remote_entry, server_entry
    from chiffon.orchestrator.toolsets import parse_toolsets

    if url is None and (token is not None or token_env is not None):
        err.print("[bold red]error:[/] --token goes with --url, and so does --token-env (a local entry needs no "
                  "token)")
        raise typer.Exit(2)
    if scope is not None and (client != "claude-code" or scope not in ("user", "project") or path is not None):
        err.print("[bold red]error:[/] --scope: user or project, for claude-code only, and not with --path")
        raise typer.Exit(2)
    if url is not None and (repo is not None or toolsets is not None):
        err.print("[bold red]error:[/] --repo and --toolsets belong to a local entry; a remote orchestrator "
                  "uses its own (`chiffon serve --repo ... --toolsets ...` on that machine)")
        raise typer.Exit(2)
    if token == "-":
        token = sys.stdin.readline().strip()
    env = dict(os.environ)
    if repo is not None:
        if not repo.expanduser().is_dir():
            err.print(f"[bold red]error:[/] --repo: {escape(str(repo))} is not a directory", highlight=False)
            raise typer.Exit(2)
        env["CHIFFON_REPO"] = str(repo.expanduser().resolve())
    try:
        if url is not None:
            entry = remote_entry(client, check_url(url, allow_http=allow_http), token, token_env=token_env)
        else:
            entry = server_entry(client, env)
            if toolsets is not None:
                entry["args"] += ["--toolsets", ",".join(parse_toolsets(toolsets))]
        if path is None and client == "claude-code":  # a token goes to the user scope, never a project by default
            user = scope == "user" or (scope is None and clients.holds_token(entry))
            path = clients.config_path(client, user_scope=user)
        target, config, backup = install(client, path=path, dry_run=print_only, entry=entry,
                                         token_in_repo=force_token_in_repo)
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    from chiffon.orchestrator.clients import credentialed

    for key in credentialed(env) if url is None else ():
        err.print(f"note: {key} holds a password, so it was not written to {escape(str(target))}; put it in "
                  "chiffon.yaml (CHIFFON_CONFIG) or the server's environment instead", highlight=False, soft_wrap=True)
    if url is not None and not token and token_env is None:
        err.print("note: no --token; the orchestrator refuses clients without one unless it is bound to loopback",
                  highlight=False, soft_wrap=True)
    if token_env is not None:
        err.print(f"note: the entry sends `Bearer ${{{token_env}}}`; set {token_env} to the token in the environment "
                  f"Claude Code starts from (e.g. `read -rs {token_env} && export {token_env}`, or a 0600 env file "
                  "your shell sources); it is in no file chiffon wrote", highlight=False, soft_wrap=True)
    tree = clients.git_work_tree(target) if clients.holds_token(entry) else None
    if tree is not None and not print_only:
        ignored = clients.ignored_by_git(target)
        err.print(f"[bold yellow]warning:[/] {escape(str(target))} holds the token and is inside the git work tree "
                  f"{escape(str(tree))} (--force-token-in-repo); "
                  + ("git ignores it" if ignored else "git does NOT ignore it: add it to .gitignore before any "
                     "commit"), highlight=False, soft_wrap=True)
    if url is None and "CHIFFON_REPO" not in env:
        err.print("note: no IaC repo recorded; the IDE's plans will say so until you run this again with "
                  "--repo PATH (or set CHIFFON_REPO / the `repo` key)", highlight=False, soft_wrap=True)
    if print_only:
        sys.stdout.write(json.dumps(config, indent=2) + "\n")
        return
    scoped = " (Claude Code's user scope: every project)" if target.name == ".claude.json" else ""
    err.print(f"wrote {target}{scoped}" + (f" (backup: {backup})" if backup else "")
              + f"; restart {client} to load chiffon", highlight=False, soft_wrap=True)


deploy_app = typer.Typer(help="Deploy kit: systemd units for the homelab's hosts.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("systemd")
def deploy_systemd(
    host: Annotated[str, typer.Option(help="Host name from the config's hosts (ai, desktop, east...).")],
    out: Annotated[Path | None, typer.Option(help="Write the units here (e.g. /etc/systemd/system); default: print.")] = None,
    install_dir: Annotated[Path, typer.Option(help="Where chiffon is installed (its .venv inside).")] = Path("/opt/chiffon"),
    home: Annotated[Path, typer.Option(help="CHIFFON_HOME of the services.")] = Path("/var/lib/chiffon"),
    user: Annotated[str, typer.Option(help="Unprivileged user the services run as.")] = "chiffon",
    env_file: Annotated[Path | None, typer.Option(
        help="The services' env file (e.g. /etc/chiffon/chiffon.env): made 0600 with a TOTP secret and an HTTP "
             "token when it lacks them; the authenticator URI is printed once, on stderr.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Generate the systemd units of HOST's chiffon services (restart on failure, non-root, env file for secrets,
    approvals that need a one-time code)."""
    setup_logging()
    from chiffon.orchestrator.deploy import prepare_env_file, systemd_units

    try:
        units = systemd_units(settings_or_exit(config), host, install_dir=install_dir, home=home, user=user,
                              **({"env_file": env_file} if env_file is not None else {}))
        uri = prepare_env_file(env_file, f"{user}@{host}") if env_file is not None else None
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if uri is not None:
        err.print(f"approvals now need a one-time code; add this to your authenticator app (shown only now):\n{uri}",
                  highlight=False, soft_wrap=True)
    if out is None:
        for name, text in units.items():
            sys.stdout.write(f"### {name}\n{text}\n")
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (out / name).write_text(text)
    err.print(f"wrote {', '.join(units) or 'nothing (no chiffon services for this host)'} to {out}")


GroupOpt = Annotated[str | None, typer.Option("--group", help="store, servers or workers (default: all).")]


@app.command("up")
def up_cmd(group: GroupOpt = None, timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait.")] = 300,
           as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Start this host's part of the suite in dependency order (store and bus, servers, workers) and report the
    time to healthy. Exit 2 if a part fails or is not ready within --timeout."""
    setup_logging()
    from chiffon.orchestrator.up import up

    settings = settings_or_exit(config)
    results = run_or_exit(up(settings, group, config, timeout))
    failed = [r for r in results if r.state == "failed"]
    total = max((r.ready_after_s or 0.0 for r in results), default=0.0)
    if as_json:
        out.print_json(json.dumps({"host": settings.host, "healthy": not failed,
                                   "time_to_healthy_s": None if failed else total,
                                   "components": [r.model_dump() for r in results]}))
    else:
        table = Table("group", "part", "state", "ready after (s)", "pid", "detail")
        for r in results:
            colour = "red" if r.state == "failed" else "green"
            table.add_row(r.group, r.name, f"[{colour}]{r.state}[/]", f"{r.ready_after_s:.1f}" if r.ready_after_s
                          is not None else "", str(r.pid or ""), r.detail[-200:])
        out.print(table)
        out.print(f"[red]not healthy:[/] {', '.join(r.name for r in failed)}" if failed
                  else f"[green]healthy[/] in {total:.1f} s (host {settings.host})")
    raise typer.Exit(EXIT_ERROR if failed else 0)


@app.command("down")
def down_cmd(group: GroupOpt = None,
             all_homes: Annotated[bool, typer.Option("--all", help="Stop the embedded PostgreSQL and Redis of every "
                                                                     "CHIFFON_HOME of this user, listing them.")] = False,
             under: Annotated[Path | None, typer.Option(help="With --all: only homes inside this folder (e.g. /tmp).")]
             = None,
             as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Stop what `chiffon up` started here, workers first, and the embedded PostgreSQL and Redis.

    With --all: every embedded server this user started, whatever its home (benchmarks, scripts, temporary
    homes), found in the process table."""
    setup_logging()
    if all_homes:
        from chiffon.shared.embedded import find, stop

        if group is not None:
            err.print("[bold red]error:[/] --all stops embedded servers only; it takes no --group",
                      highlight=False)
            raise typer.Exit(EXIT_ERROR)
        found = [e for e in find() if under is None or e.home.is_relative_to(under.expanduser().resolve())]
        report = [{**entry.as_dict(), "stopped": stop(entry)} for entry in found]
        if as_json:
            out.print_json(json.dumps({"homes": report}))
            return
        for row in report:
            out.print(escape(f"{row['home']}: stopped {', '.join(row['stopped']) or 'nothing'} "  # type: ignore[arg-type]
                             f"(up {row['up_s']} s)"), soft_wrap=True)
        out.print(f"{len(report)} home(s)" if report else "no embedded server was running")
        return
    from chiffon.orchestrator.up import down

    stopped = run_or_exit(down(settings_or_exit(config), group))
    if as_json:
        out.print_json(json.dumps({"stopped": stopped}))
        return
    out.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("logs")
def logs_cmd(
    plan: Annotated[str | None, typer.Option(help="Only records of this plan (and its runs).")] = None,
    run: Annotated[str | None, typer.Option(help="Only records of this run.")] = None,
    task: Annotated[str | None, typer.Option(help="Only records of this agent task.")] = None,
    request: Annotated[str | None, typer.Option(help="Only records of this MCP tool call (req-...).")] = None,
    since: Annotated[int | None, typer.Option(min=1, help="Only the last this many minutes.")] = None,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new records (Ctrl-C stops).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Follow one plan, run, task or tool call across every part: the JSON log records of `chiffon up`'s
    services (CHIFFON_HOME/logs) and of the chiffon-* systemd units (the journal), merged in time."""
    setup_logging()
    from datetime import UTC, datetime, timedelta

    from chiffon.orchestrator.logview import follow as follow_records
    from chiffon.orchestrator.logview import records, render

    ids = {k: v for k, v in {"plan": plan, "run": run, "task": task, "request": request}.items() if v}
    log_dir = settings_or_exit(None).home / "logs"
    show = (lambda r: sys.stdout.write(json.dumps(r) + "\n")) if as_json else (lambda r: out.print(
        escape(render(r)), highlight=False, soft_wrap=True))
    cutoff = datetime.now(UTC) - timedelta(minutes=since) if since else None
    found = records(log_dir, ids, cutoff)
    for record in found:
        show(record)
    if not found and not follow:
        err.print(f"no log records{' for ' + ', '.join(f'{k} {v}' for k, v in ids.items()) if ids else ''} in "
                  f"{log_dir} or the journal (services log JSON records under `chiffon up` and systemd)",
                  highlight=False, soft_wrap=True)
    if follow:
        try:
            for record in follow_records(log_dir, ids):
                show(record)
                sys.stdout.flush()
        except KeyboardInterrupt:
            pass


@app.command("doctor")
def doctor_cmd(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Check every part: store, bus, Chroma, audit and IaC repos, Ansible, Docker, speech, LLM backends, hosts.

    Exit 0 when the suite is ok, healthy or degraded (it works, partly), 2 when it failed.
    """
    setup_logging()
    from chiffon.orchestrator.doctor import run_doctor, summarize

    results = run_or_exit(run_doctor(settings_or_exit(config)))
    overall = summarize(results)
    if as_json:
        out.print_json(json.dumps({**overall.model_dump(), "parts": [r.model_dump() for r in results]}))
    else:
        table = Table("part", "status", "detail", "ms")
        colours = {"ok": "green", "healthy": "green", "degraded": "yellow", "failed": "red"}
        for r in results:
            table.add_row(r.service, f"[{colours[r.status]}]{r.status}[/]", r.detail, str(r.latency_ms or ""))
        out.print(table)
        out.print(f"chiffon: [{colours[overall.status]}]{overall.status}[/] ({overall.detail})")
        for issue in overall.issues:
            out.print(f"  - {issue}", highlight=False)
    raise typer.Exit(EXIT_ERROR if overall.status == "failed" else 0)


totp_app = typer.Typer(help="One-time codes for approvals (TOTP).", no_args_is_help=True)
app.add_typer(totp_app, name="totp")


@totp_app.command("setup")
def totp_setup(account: Annotated[str, typer.Option(help="Name shown in the authenticator app.")] = "operator") -> None:
    """Make a TOTP secret for approvals: add it to your authenticator app, then set it in chiffon's config.

    Printed once, never stored by this command: put the secret in CHIFFON_APPROVALS__TOTP_SECRET (the
    orchestrator's environment) or approvals.totp_secret of a config file only the operator can read.
    """
    from chiffon.shared.totp import new_secret

    secret, uri = new_secret(account)
    out.print(f"secret: {secret}\nauthenticator URI (scan or paste): {uri}", highlight=False, soft_wrap=True)
    err.print("set CHIFFON_APPROVALS__TOTP_SECRET to the secret where chiffon serve, run and approve run; from then "
              "every approval asks for the current code", highlight=False, soft_wrap=True)


token_app = typer.Typer(help="Named bearer tokens for MCP clients on other machines.", no_args_is_help=True)
app.add_typer(token_app, name="token")


async def _with_store(settings: Any, action: Any) -> Any:
    from chiffon.shared.store import Store

    secret = settings.database_url.get_secret_value() if settings.database_url else None
    store = await Store.open(secret, settings.home, max_size=1)
    try:
        return await action(store)
    finally:
        await store.close()


@token_app.command("create")
def token_create(name: Annotated[str, typer.Argument(help="Client or machine, e.g. desktop-trae.")],
                 config: ConfigOpt = None) -> None:
    """Make a token for one client; shown once, stored hashed. Clients send it as `Authorization: Bearer ...`."""
    setup_logging()
    from chiffon.shared import tokens

    token = run_or_exit(_with_store(settings_or_exit(config), lambda store: tokens.create(store, name)))
    out.print(token, highlight=False, soft_wrap=True)
    err.print(f"token {escape(name)} created; it is shown only now. Revoke it with `chiffon token revoke "
              f"{escape(name)}`.", highlight=False, soft_wrap=True)


@token_app.command("list")
def token_list(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Every token: name, created, last used, revoked (never the token itself)."""
    setup_logging()
    from chiffon.shared import tokens

    rows = run_or_exit(_with_store(settings_or_exit(config), tokens.listing))
    if as_json:
        out.print_json(json.dumps({"tokens": rows}))
        return
    table = Table("name", "created", "last used", "revoked")
    for row in rows:
        table.add_row(escape(row["name"]), str(row["created_at"]), str(row["last_used_at"] or "-"),
                      str(row["revoked_at"] or "-"))
    out.print(table)


@token_app.command("revoke")
def token_revoke(name: str, config: ConfigOpt = None) -> None:
    """End a token now."""
    setup_logging()
    from chiffon.shared import tokens

    run_or_exit(_with_store(settings_or_exit(config), lambda store: tokens.revoke(store, name)))
    out.print(f"revoked {escape(name)}")


@app.command("errors")
def errors_cmd(
    since: Annotated[str | None, typer.Option(help="7d, 12h, 30m, 2w or an ISO date.")] = None,
    severity: Annotated[str | None, typer.Option(help="At least: info, warning, error or critical.")] = None,
    incident: Annotated[str | None, typer.Option(help="One incident, with its recent events.")] = None,
    events: Annotated[bool, typer.Option("--events", help="The raw error events instead of incidents.")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Incidents (errors correlated by plan, task, host, backend), newest first; or one incident; or raw events."""
    setup_logging()
    from chiffon.orchestrator import incidents as inc
    from chiffon.shared.audit import parse_since
    from chiffon.shared.runtime import open_runtime

    async def go() -> Any:
        async with open_runtime(settings_or_exit(config)) as rt:
            await inc.Correlator(rt).catch_up()  # current even where no correlator runs
            when = parse_since(since) if since else None
            if incident:
                return await inc.incident(rt, incident)
            if events:
                return await inc.recent_errors(rt, since=when, severity=severity)
            return await inc.incidents(rt, since=when, severity=severity)

    found = run_or_exit(go())
    if as_json:
        key = "incident" if incident else "events" if events else "incidents"
        out.print_json(json.dumps({key: found}, default=str))
        return
    if incident:
        out.print(escape(f"{found['id']} {found['status']} {found['severity']}: {found['title']}"), soft_wrap=True)
        out.print(escape(f"keys: {', '.join(found['keys'])}; sources: {', '.join(found['sources'])}; "
                         f"events: {found['events']}; opened {found['opened_at']}"), soft_wrap=True)
        for event in found["recent_events"]:
            out.print(escape(f"  {event['at'][:19]} {event['severity']:<8} {event['source']} {event['error_type']} "
                             f"x{event['count']}: {event['message']}"), soft_wrap=True)
        return
    from rich.table import Table

    if events:
        table = Table("time", "severity", "source", "type", "count", "message")
        for e in found:
            table.add_row(e["at"][:19], e["severity"], escape(e["source"]), escape(e["error_type"]), str(e["count"]),
                          escape(e["message"][:160]))
    else:
        table = Table("incident", "status", "severity", "events", "keys", "title", "updated")
        for i in found:
            table.add_row(i["id"], i["status"], i["severity"], str(i["events"]), escape(", ".join(i["keys"])[:60]),
                          escape(i["title"][:100]), i["updated_at"][:19])
    out.print(table)
