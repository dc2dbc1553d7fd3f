"""What a plan expects to be true after its run, and the read-only checks that verify it.

A check names one fact about the hosts: a container running, a systemd unit active, a file present (and
written by this run), a URL answering, a TCP port open. Checks come from two places:

* **Stated by the repo**, in ``chiffon.yml`` beside ``ansible.cfg`` (the Ansible project's folder, else the repo
  root)::

      checks:
        deploy-uptime-kuma.yml:                  # the playbook, as chiffon names it
          - name: Uptime Kuma is running          # what is true when the check passes
            failing: Uptime Kuma is not running  # what a run reports first when it does not
            container: uptime-kuma
          - name: Uptime Kuma answers
            failing: Uptime Kuma is not running
            http: "http://{{ ansible_host | default(inventory_hostname) }}:3001"
        backup-postgres.yml:
          - name: a dump was written
            failing: no dump was written
            file: "{{ homelab_root }}/backups/postgres/*.sql.gz"
            fresh: true                           # written after the run started

  Each check has exactly one of ``container``, ``service``, ``file``, ``http`` or ``tcp`` (``host:port``), and
  may name ``hosts`` (an inventory pattern; default: the unit's hosts) and ``tags`` (the check applies when the
  plan selects one of them). ``file``, ``http`` and ``tcp`` may use inventory variables as ``{{ name }}`` or
  ``{{ name | default(other) }}``, nothing else: no filters, lookups or statements reach Ansible from here.
* **Derived from the unit** when the repo states none for its playbook: each container a compose template of the
  unit names with ``container_name:`` or a ``docker_container`` task creates, and each systemd unit a
  ``service``/``systemd`` task starts.

The checks run inside the same ``ansible-playbook`` call as the plan's check and its run, as one more play
(:func:`verify_playbook`) whose tasks only read (``docker container inspect``, ``systemctl is-active``,
``find``; HTTP and TCP are probed from the controller by chiffon itself, Ansible only templating the address),
every task ``check_mode: false``, ``changed_when: false``, ``failed_when: false``, ``ignore_unreachable``: a check
never changes a host, never fails a run, and costs one task per check rather than a second Ansible start.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import yaml

from chiffon.shared.errors import ConfigError

if TYPE_CHECKING:
    from chiffon.servers.ansible.catalog import Catalog
    from chiffon.servers.ansible.units import Unit

Kind = Literal["container", "service", "file", "http", "tcp"]
KINDS: tuple[Kind, ...] = ("container", "service", "file", "http", "tcp")
CHECKS_FILE = "chiffon.yml"
PROBE_TIMEOUT_S = 5.0  # an HTTP or TCP check waits this long for an answer
# literal names only: a container or systemd unit name reaches argv, never a shell, and is never templated
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")
_HOSTS = re.compile(r"^[A-Za-z0-9_.-]+([,:][A-Za-z0-9_.-]+)*$")  # hosts and groups, joined by , or :
# the only Jinja a check may hold: {{ var }} or {{ var | default(var2) }}
_VAR = r"[A-Za-z_][A-Za-z0-9_]*"
_EXPR = re.compile(r"\{\{\s*" + _VAR + r"(\s*\|\s*default\(\s*" + _VAR + r"\s*\))?\s*\}\}")
_TEXT = re.compile(r"^[^{}%#\n]*$")  # what is left once the allowed expressions are taken out
_SENTENCE = re.compile(r"^[^\n{}]{1,160}$")


@dataclass(frozen=True)
class Check:
    """One fact to verify after a run. ``target``: the container or unit name, the file path (a glob in its
    last part), the URL, or ``host:port``; ``hosts``: the inventory pattern it runs on."""

    name: str
    failing: str
    kind: Kind
    target: str
    hosts: str
    fresh: bool = False
    source: str = CHECKS_FILE

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{name, failing, kind, target, hosts, fresh, source}`` (what a plan stores)."""
        return {"name": self.name, "failing": self.failing, "kind": self.kind, "target": self.target,
                "hosts": self.hosts, "fresh": self.fresh, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Check:
        """The inverse of :meth:`as_dict`."""
        return cls(**{k: data[k] for k in ("name", "failing", "kind", "target", "hosts", "fresh", "source")})

    def describe(self) -> str:
        """One line for a plan: ``container uptime-kuma running on monitoring``."""
        what = {"container": f"container {self.target} running", "service": f"systemd unit {self.target} active",
                "file": f"{self.target} present" + (" and written by the run" if self.fresh else ""),
                "http": f"{self.target} answers", "tcp": f"{self.target} accepts TCP connections"}[self.kind]
        return f"{self.name}: {what} (on {self.hosts}; {self.source})"


def _templated(field: str, value: Any) -> str:
    """``value`` when it is text whose only Jinja is ``{{ var }}`` / ``{{ var | default(var2) }}``.

    Raises:
        ConfigError: anything else (a lookup, a filter, a statement, a newline).
    """
    if not isinstance(value, str) or not value.strip() or len(value) > 500:
        raise ConfigError(f"{CHECKS_FILE}: {field} must be a non-empty string of at most 500 characters")
    if not _TEXT.match(_EXPR.sub("", value)):
        raise ConfigError(f"{CHECKS_FILE}: {field} {value!r} may hold inventory variables only as {{{{ name }}}} or "
                          "{{ name | default(other) }}: no filters, lookups or statements")
    return value


def parse(data: Any, playbook: str, tags: list[str], default_hosts: str) -> list[Check]:
    """The checks ``data`` (a loaded ``chiffon.yml``) states for ``playbook`` run with ``tags``.

    Raises:
        ConfigError: a malformed file or check, with what is wrong and where.
    """
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("checks", {}), dict):
        raise ConfigError(f"{CHECKS_FILE} must be a mapping with a `checks:` mapping of playbook → list of checks")
    entries = data.get("checks", {}).get(playbook) or []
    if not isinstance(entries, list):
        raise ConfigError(f"{CHECKS_FILE}: checks of {playbook} must be a list")
    found = []
    for n, entry in enumerate(entries, 1):
        where = f"check {n} of {playbook}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{CHECKS_FILE}: {where} must be a mapping")
        unknown = set(entry) - {"name", "failing", "hosts", "tags", "fresh", *KINDS}
        kinds = [k for k in KINDS if k in entry]
        if unknown or len(kinds) != 1:
            raise ConfigError(f"{CHECKS_FILE}: {where} needs exactly one of {', '.join(KINDS)}"
                              + (f"; unknown keys: {', '.join(sorted(unknown))}" if unknown else ""))
        kind = kinds[0]
        for field in ("name", "failing"):
            text = entry.get(field)
            if text is not None and not (isinstance(text, str) and _SENTENCE.match(text)):
                raise ConfigError(f"{CHECKS_FILE}: {where}: {field} must be one line of plain text (no braces)")
        name, failing = entry.get("name", f"{kind} {entry[kind]}"), entry.get("failing")
        check_tags = entry.get("tags") or []
        if not isinstance(check_tags, list) or not all(isinstance(t, str) for t in check_tags):
            raise ConfigError(f"{CHECKS_FILE}: {where}: tags must be a list of tag names")
        if check_tags and tags and not set(check_tags) & set(tags):
            continue
        hosts = entry.get("hosts", default_hosts)
        if not isinstance(hosts, str) or len(hosts) > 200 or not _HOSTS.match(hosts):
            raise ConfigError(f"{CHECKS_FILE}: {where}: hosts must name inventory hosts or groups, joined by , or :")
        target = entry[kind]
        if kind in ("container", "service"):
            if not isinstance(target, str) or not _NAME.match(target):
                raise ConfigError(f"{CHECKS_FILE}: {where}: {kind} must be a literal name (letters, digits, "
                                  "_ . @ : -)")
        else:
            target = _templated(f"{where}: {kind}", target)
        if kind == "http" and not re.match(r"^https?://", target):
            raise ConfigError(f"{CHECKS_FILE}: {where}: http must be an http:// or https:// URL")
        if kind == "tcp" and not re.match(r"^.+:(\d{1,5}|\{\{[^}]*\}\})$", target):
            raise ConfigError(f"{CHECKS_FILE}: {where}: tcp must be host:port")
        found.append(Check(name=name, failing=failing or f"not verified: {name}", kind=kind, target=target,
                           hosts=hosts, fresh=bool(entry.get("fresh", False))))
    return found


def stated_file(catalog: Catalog) -> Path:
    """Where the repo states its checks: ``chiffon.yml`` in the Ansible project's folder."""
    return catalog.root / catalog.project / CHECKS_FILE if catalog.project else catalog.root / CHECKS_FILE


def expectations(catalog: Catalog, unit: Unit | None, playbook: str, tags: list[str]) -> list[Check]:
    """The checks a plan of ``playbook`` with ``tags`` runs after it: the repo's stated ones, else those derived
    from ``unit``.

    Raises:
        ConfigError: the repo's ``chiffon.yml`` is malformed (the plan still stores its answer; see callers).
    """
    hosts = ":".join(unit.hosts) if unit is not None and unit.hosts else "all"
    path = stated_file(catalog)
    if path.is_file():
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path} cannot be read as YAML: {exc}") from exc
        stated = parse(data, playbook, tags, hosts)
        _within(catalog, stated, hosts)
        if stated:
            return stated
    return derived(catalog, unit, hosts) if unit is not None else []


def _within(catalog: Catalog, stated: list[Check], unit_hosts: str) -> None:
    """Refuse a stated check whose ``hosts`` reach beyond the unit's own (a check reads; it reads only where the
    plan runs). Without an inventory here nothing can be compared, and the run's ``--limit`` still applies.

    Raises:
        ConfigError: a check names hosts the unit does not target.
    """
    if catalog.inventory_choice is None or unit_hosts == "all":
        return
    if all(check.hosts == unit_hosts for check in stated):  # the unit's own pattern: within whatever it matches
        # the inventory is still read, beside the check run (ansible-inventory is a second Ansible process): an
        # inventory Ansible cannot parse still fails the plan (Catalog.wait_inventory, in plans.create_plan)
        catalog.prefetch_inventory()
        return
    targets = set(catalog.hosts_matching(unit_hosts))
    for check in stated:
        outside = set(catalog.hosts_matching(check.hosts)) - targets
        if outside:
            raise ConfigError(f"{CHECKS_FILE}: the check {check.name!r} names hosts the playbook does not target "
                              f"({', '.join(sorted(outside))}); a check reads only where its plan runs")


def derived(catalog: Catalog, unit: Unit, hosts: str) -> list[Check]:
    """Checks read from the unit's own files: each container its compose templates name with ``container_name:``
    or its ``docker_container`` tasks create, each host port those templates publish (a number, or a ``{{ var }}``
    the role's defaults/vars or the play's ``vars`` give a number: a TCP check from the controller), and each
    systemd unit its ``service``/``systemd`` tasks start."""
    from chiffon.servers.ansible.containers import CONTAINER_MODULES

    tasks = list(unit.playbook.tasks) if unit.playbook is not None and unit.kind in ("playbook", "play") else []
    root = catalog.root.resolve()
    composes: list[tuple[Path, str]] = []
    containers: list[tuple[str, str]] = []
    services: list[str] = []
    if unit.role is not None:  # a role's compose templates
        folder = catalog.root / unit.role.path / "templates"
        composes += [(path, str(path.relative_to(catalog.root)))
                     for path in (sorted(folder.rglob("*compose*")) if folder.is_dir() else [])
                     if path.is_file() and path.resolve().is_relative_to(root)]  # a link out of the repo: not read
    for task in tasks:
        module = task.module.rsplit(".", 1)[-1]
        if task.module in CONTAINER_MODULES and _literal(task.args.get("name")):
            containers.append((task.args["name"].strip(), f"task {task.name!r}"))
        elif module == "template" and isinstance(src := task.args.get("src"), str) and "compose" in src:
            path = ((unit.playbook.path.parent if unit.playbook is not None else catalog.root) / src).resolve()
            if path.is_file() and path.is_relative_to(root):
                composes.append((path, src))
        elif module in ("service", "systemd", "systemd_service") and \
                str(task.args.get("state", "")).lower() in ("started", "restarted", "reloaded") and \
                _literal(task.args.get("name")):
            services.append(task.args["name"].strip())
    known = _known_vars(catalog, unit)
    ports: list[tuple[int, str]] = []
    for path, shown in composes:
        text = path.read_text(errors="replace")
        containers += [(name, f"container_name in {shown}") for name in _container_names(text)]
        ports += [(port, f"ports in {shown}") for port in _published_ports(text, known)]
    address = "{{ ansible_host | default(inventory_hostname) }}"
    out = [Check(name=f"container {name} is running", failing=f"{unit.service} is not running", kind="container",
                 target=name, hosts=hosts, source=f"derived: {source}")
           for name, source in dict.fromkeys(containers) if _NAME.match(name)]
    out += [Check(name=f"{unit.service} accepts connections on port {port}", failing=f"{unit.service} is not running",
                  kind="tcp", target=f"{address}:{port}", hosts=hosts, source=f"derived: {source}")
            for port, source in dict.fromkeys(ports)]
    out += [Check(name=f"{name} is active", failing=f"{name} is not running", kind="service", target=name,
                  hosts=hosts, source="derived: a task starts it") for name in dict.fromkeys(services)
            if _NAME.match(name)]
    return out


def _known_vars(catalog: Catalog, unit: Unit) -> dict[str, Any]:
    """Literal variables a compose template of ``unit`` may use: the role's ``defaults``/``vars`` and the ``vars``
    of the unit playbook's plays (later ones win, as in Ansible's precedence for these three)."""
    found: dict[str, Any] = {}
    files = []
    if unit.role is not None:
        files += [catalog.root / unit.role.path / d / f for d in ("defaults", "vars") for f in ("main.yml", "main.yaml")]
    for path in files:
        data = _yaml(path)
        found.update(data if isinstance(data, dict) else {})
    plays = _yaml(unit.playbook.path) if unit.playbook is not None else None
    for play in plays if isinstance(plays, list) else []:
        if isinstance(play, dict) and isinstance(play.get("vars"), dict):
            found.update(play["vars"])
    return found


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(errors="replace")) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None


def _published_ports(text: str, known: dict[str, Any]) -> list[int]:
    """Host ports a compose file (or template) publishes: ``- "8096:8096"``, ``- 127.0.0.1:3001:3001``,
    ``- "{{ kuma_port }}:3001"`` when ``known`` gives ``kuma_port`` a number."""
    ports = []
    entry = re.compile(r"^\s*-\s*[\"']?(?:[\d.]+:)?(\d{1,5}|\{\{\s*([A-Za-z_]\w*)\s*\}\}):\d{1,5}(?:/tcp)?[\"']?\s*$")
    for line in text.splitlines():
        if found := entry.match(line):
            value = known.get(found.group(2)) if found.group(2) else found.group(1)
            if str(value).isdigit() and 0 < int(str(value)) < 65536:
                ports.append(int(str(value)))
    return ports


def _literal(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip()) and "{{" not in value


def _container_names(text: str) -> list[str]:
    """The literal ``container_name:`` values of a compose file's (or template's) ``text``."""
    return re.findall(r"^\s*container_name:\s*[\"']?([A-Za-z0-9][A-Za-z0-9_.-]*)[\"']?\s*$", text, re.M)


def verify_playbook(checks: list[Check], marker: str) -> str:
    """The read-only play (one per hosts pattern, each named ``marker``) that gathers what ``checks`` need.

    Task ``n`` (named ``chiffon check n``) serves ``checks[n]``: ``docker container inspect`` or ``systemctl
    is-active`` (argv, no shell), ``find`` for a file, ``debug`` templating an address for an HTTP or TCP probe
    chiffon makes itself. ``marker`` (unpredictable, per call) tells these events from the playbook's own.
    """
    from chiffon.servers.ansible.unsafe_yaml import unsafe_yaml

    plays: dict[str, list[dict[str, Any]]] = {}
    for n, check in enumerate(checks):
        if check.kind == "container":
            action: dict[str, Any] = {"ansible.builtin.command": {"argv": [
                "docker", "container", "inspect", "--format", _unsafe("{{.State.Running}}"), check.target]}}
        elif check.kind == "service":
            action = {"ansible.builtin.command": {"argv": ["systemctl", "is-active", check.target]}}
        elif check.kind == "file":
            path = PurePosixPath(check.target)
            action = {"ansible.builtin.find": {"paths": str(path.parent), "patterns": path.name,
                                                 "file_type": "file", "get_checksum": False}}
        else:  # http, tcp: Ansible templates the address; chiffon probes it from the controller
            action = {"ansible.builtin.debug": {"msg": check.target}}
        plays.setdefault(check.hosts, []).append({
            "name": f"chiffon check {n}", **action, "check_mode": False, "changed_when": False,
            "failed_when": False, "ignore_unreachable": True})
    return unsafe_yaml([{"name": marker, "hosts": hosts, "gather_facts": False, "tags": ["always"], "tasks": tasks}
                        for hosts, tasks in plays.items()])


def _unsafe(text: str) -> str:
    from chiffon.servers.ansible.unsafe_yaml import unsafe_text

    return unsafe_text(text)


def stage(folder: Path, vars_from: Path, checks: list[Check]) -> tuple[Path, str] | None:
    """Write :func:`verify_playbook` as ``folder/verify.yml`` beside links to ``vars_from``'s group_vars and
    host_vars (the playbook's own folder in the snapshot, so the same variables apply), under a fresh random play
    name; ``(path, play name)`` for :func:`servers.ansible.runner.run_playbook`'s ``verify``, None without checks."""
    import secrets

    from chiffon.servers.ansible.generated import stage as stage_playbook

    if not checks:
        return None
    marker = f"chiffon verify checks-{secrets.token_hex(5)}"
    return stage_playbook(vars_from, folder, "verify.yml", verify_playbook(checks, marker)), marker


@dataclass
class Result:
    """A check's verdict on one host: ``ok``, and the evidence (what was seen)."""

    check: Check
    host: str
    ok: bool
    evidence: str

    def as_dict(self) -> dict[str, Any]:
        """``{name, ok, evidence, host, kind, target}``: the ``checks`` entries of ``--json``."""
        return {"name": self.check.name, "ok": self.ok, "evidence": self.evidence, "host": self.host,
                "kind": self.check.kind, "target": self.check.target}


def _missing_command(res: dict[str, Any]) -> str | None:
    text = f"{res.get('msg', '')} {res.get('stderr', '')} {res.get('exception', '')}"
    found = re.search(r"No such file or directory: b?'([^']+)'", text)
    return found.group(1) if found else None


def _host_result(check: Check, host: str, status: str, res: dict[str, Any], since: float) -> Result:
    """Judge a host-side check from its task's result (``res``: rc, stdout, stderr, msg, files)."""
    if status == "unreachable" or res.get("unreachable"):
        return Result(check, host, False, f"{host} is unreachable: {str(res.get('msg', ''))[:200]}")
    if check.kind in ("container", "service") and (command := _missing_command(res)):
        return Result(check, host, False, f"no {command} command on {host}")
    if check.kind in ("container", "service") and str(res.get("msg", "")).startswith("Error executing command"):
        program = "docker" if check.kind == "container" else "systemctl"  # what the check's argv starts with
        return Result(check, host, False, f"{program} could not be run on {host} (is it installed?)")
    rc, stdout = res.get("rc"), str(res.get("stdout", "")).strip()
    stderr = str(res.get("stderr", "") or res.get("msg", "")).strip()
    if check.kind == "container":
        if rc == 0 and stdout == "true":
            return Result(check, host, True, f"container {check.target} is running on {host}")
        seen = f"state {stdout!r}" if rc == 0 else (stderr.splitlines() or ["docker container inspect failed"])[-1]
        return Result(check, host, False, f"container {check.target} on {host}: {seen[:200]}")
    if check.kind == "service":
        ok = stdout == "active"
        return Result(check, host, ok, f"systemd unit {check.target} on {host} is {stdout or stderr[:200] or rc}")
    files = [f for f in res.get("files") or [] if isinstance(f, dict)]
    target = str(res.get("target") or check.target)
    if not files:
        why = str(res.get("msg", "")).strip()
        why = "" if why == "All paths examined" else why
        return Result(check, host, False, f"no file matching {target} on {host}" + (f" ({why[:200]})" if why else ""))
    newest = max(files, key=lambda f: float(f.get("mtime", 0)))
    when = datetime.fromtimestamp(float(newest.get("mtime", 0)), UTC)
    described = f"{newest.get('path')} ({newest.get('size', '?')} bytes, written {when:%Y-%m-%d %H:%M:%S} UTC)"
    if check.fresh and float(newest.get("mtime", 0)) < since - 1:
        return Result(check, host, False, f"no file matching {target} on {host} written by this run; the newest "
                                          f"is {described}")
    return Result(check, host, True, described)


def _probe(check: Check, host: str, address: str) -> Result:
    """HTTP or TCP from the controller (blocking; at most :data:`PROBE_TIMEOUT_S`)."""
    if check.kind == "tcp":
        name, _, port = address.rpartition(":")
        try:
            with socket.create_connection((name.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
                return Result(check, host, True, f"{address} accepts TCP connections")
        except (OSError, ValueError) as exc:
            return Result(check, host, False, f"{address}: {_why(exc)}")
    import httpx

    try:
        # answering is the fact checked: a homelab's self-signed certificate does not make a service down
        reply = httpx.get(address, timeout=PROBE_TIMEOUT_S, verify=False, follow_redirects=False)
    except httpx.HTTPError as exc:
        return Result(check, host, False, f"{address}: {_why(exc)}")
    ok = reply.status_code < 500
    return Result(check, host, ok, f"{address} answered HTTP {reply.status_code}")


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "refused" in text.lower():
        return "connection refused"
    if isinstance(exc, TimeoutError) or "timed out" in text.lower():
        return f"no answer within {PROBE_TIMEOUT_S:g} s"
    return text[:200]


async def results(checks: list[Check], probes: list[dict[str, Any]], since: float) -> list[Result]:
    """Each check's verdict per host, from the verification play's events (``probes``: ``{task, host, status,
    res}``) and, for HTTP and TCP, a probe from here (concurrent, each at most :data:`PROBE_TIMEOUT_S`).
    ``since``: the run's start (epoch seconds), for ``fresh`` files. A check no host answered (its hosts
    unmatched, or the run stopped before it) is reported as not verified."""
    by_check: dict[int, list[dict[str, Any]]] = {}
    for probe in probes:
        found = re.fullmatch(r"chiffon check (\d+)", str(probe.get("task", "")))
        if found and int(found.group(1)) < len(checks):
            by_check.setdefault(int(found.group(1)), []).append(probe)
    out: list[Result] = []
    pending = []
    for n, check in enumerate(checks):
        answered = by_check.get(n, [])
        if not answered:
            out.append(Result(check, "-", False, "not checked: no host of the run reached the check"))
        for probe in answered:
            host, status, res = str(probe.get("host", "")), str(probe.get("status", "")), probe.get("res") or {}
            if check.kind in ("http", "tcp") and status == "ok" and isinstance(res.get("msg"), str):
                pending.append(asyncio.to_thread(_probe, check, host, res["msg"]))
            else:
                out.append(_host_result(check, host, status, res, since))
    out += await asyncio.gather(*pending)
    order = {id(c): n for n, c in enumerate(checks)}
    return sorted(out, key=lambda r: (order[id(r.check)], r.host))
