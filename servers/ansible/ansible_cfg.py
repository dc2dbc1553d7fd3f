"""What chiffon reads from an ``ansible.cfg``: inventory, role, collection and plugin paths, vault settings.

Ansible's own precedence (https://docs.ansible.com/ansible/latest/reference_appendices/config.html,
"The configuration file"): ``ANSIBLE_CONFIG`` first, then ``ansible.cfg`` in the current
directory (chiffon runs playbooks from the project's folder, so that project's ``ansible.cfg``). Paths
in it are relative to the file's directory. Keys are case-insensitive (``INVENTORY = hosts``
is seen in real repos).
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from chiffon.shared.errors import RepoError

MAX_CFG_CHARS = 200_000
# A committed example of a file the owner keeps out of git (``hosts.yml.bk``, ``ansible.cfg.example``): it says what
# their own one holds, and is never used as the real thing.
EXAMPLE_SUFFIXES = (".example", ".sample", ".bk", ".bak", ".dist", ".template", ".tmpl")
# ansible.cfg keys (and their ANSIBLE_* variables) naming folders Ansible loads code from
PLUGIN_KEYS = {"library": "ANSIBLE_LIBRARY", "module_utils": "ANSIBLE_MODULE_UTILS",
               **{f"{kind}_plugins": f"ANSIBLE_{kind.upper()}_PLUGINS" for kind in (
                   "action", "become", "cache", "callback", "cliconf", "connection", "doc_fragment", "filter",
                   "httpapi", "inventory", "lookup", "netconf", "strategy", "terminal", "test", "vars")}}


@dataclass(frozen=True)
class AnsibleCfg:
    """What chiffon reads from ``ansible.cfg``: paths are absolute, resolved against the file's folder."""

    path: Path | None = None
    inventory: tuple[Path, ...] = ()
    roles_path: tuple[Path, ...] = ()
    collections_path: tuple[Path, ...] = ()
    vault_password_file: Path | None = None
    vault_identities: tuple[tuple[str, str], ...] = ()  # vault_identity_list: (label, "prompt" or a file path)
    plugin_paths: tuple[Path, ...] = ()  # library, module_utils, *_plugins folders (:data:`PLUGIN_KEYS`)
    #: ``[defaults] host_key_checking`` as the file says it (None when it does not): see :func:`host_key_checking`
    host_key_checking: bool | None = None


def _paths(value: str, base: Path) -> tuple[Path, ...]:
    parts = [p.strip() for chunk in value.split(",") for p in chunk.split(os.pathsep)]
    return tuple((base / os.path.expanduser(p)).resolve() for p in parts if p)


def read_ansible_cfg(root: Path, environ: dict[str, str] | None = None) -> AnsibleCfg:
    """Read ``ANSIBLE_CONFIG`` or ``<root>/ansible.cfg``; an empty :class:`AnsibleCfg` when there is none.

    Raises:
        RepoError: the file exists but is not valid INI (the parser's message included).
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    path = Path(env["ANSIBLE_CONFIG"]).expanduser() if env.get("ANSIBLE_CONFIG") else root / "ansible.cfg"
    if path.is_dir():
        path = path / "ansible.cfg"
    if not path.is_file() and not env.get("ANSIBLE_CONFIG"):
        # ansible.cfg gitignored beside a committed example: the example says what the owner's one names
        path = next((root / f"ansible.cfg{s}" for s in EXAMPLE_SUFFIXES if (root / f"ansible.cfg{s}").is_file()), path)
    if not path.is_file():
        return AnsibleCfg()
    if not env.get("ANSIBLE_CONFIG") and not path.resolve().is_relative_to(root.resolve()):
        return AnsibleCfg()  # a committed symlink out of the repo (/proc/self/environ, ~/.ssh/...) is never read
    parser = configparser.ConfigParser(interpolation=None, strict=False, inline_comment_prefixes=(";", "#"))
    try:
        parser.read_string(path.read_text(errors="replace")[:MAX_CFG_CHARS], source=str(path))
    except configparser.Error as exc:  # its message quotes the file's lines: name the line, never its text
        line = getattr(exc, "lineno", None) or next((n for n, _ in getattr(exc, "errors", [])), None)
        raise RepoError(f"{path} is not a valid ansible.cfg ({type(exc).__name__}"
                        + (f" at line {line}" if line else "") + ")") from None
    base = path.parent.resolve()
    defaults = parser["defaults"] if parser.has_section("defaults") else {}

    def get(*keys: str) -> str:
        return next((str(defaults[k]) for k in keys if defaults.get(k)), "")

    vault = get("vault_password_file")
    identities = []
    for entry in get("vault_identity_list").split(","):
        label, _, source = entry.strip().partition("@")
        if label and source:
            identities.append((label, source if source == "prompt" else
                               str((base / os.path.expanduser(source)).resolve())))
    return AnsibleCfg(
        path=path.resolve(), inventory=_paths(get("inventory", "hostfile"), base),
        roles_path=_paths(get("roles_path"), base),
        collections_path=_paths(get("collections_path", "collections_paths"), base),
        vault_password_file=(base / os.path.expanduser(vault)).resolve() if vault else None,
        vault_identities=tuple(identities),
        plugin_paths=tuple(p for key in PLUGIN_KEYS for p in _paths(get(key), base)),
        host_key_checking=_boolean(get("host_key_checking")),
    )


def _boolean(value: str) -> bool | None:
    """An ansible.cfg boolean as Ansible reads one (``ansible.module_utils.parsing.convert_bool``), None if unset."""
    word = value.strip().lower()
    if word in ("1", "true", "yes", "on", "y", "t"):
        return True
    if word in ("0", "false", "no", "off", "n", "f"):
        return False
    return None


def host_key_checking(project_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """``ANSIBLE_HOST_KEY_CHECKING`` for a run from ``project_dir``, as Ansible itself would decide it: the
    variable when the user set it, else the project's ``ansible.cfg``, else Ansible's default, on ("True").

    chiffon must set it: ansible-runner sets ``ANSIBLE_HOST_KEY_CHECKING=False`` whenever the environment lacks
    it (ansible-runner 2.4, ``config/_base.py``), which would accept any host's key on first contact, silently.
    An unreadable ansible.cfg counts as no file (the plan reports that error elsewhere).
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    if env.get("ANSIBLE_HOST_KEY_CHECKING"):
        return env["ANSIBLE_HOST_KEY_CHECKING"]
    try:
        said = read_ansible_cfg(project_dir, dict(env)).host_key_checking
    except RepoError:
        said = None
    return "False" if said is False else "True"
