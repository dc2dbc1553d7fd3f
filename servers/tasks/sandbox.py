"""Run code an agent wrote (a repo's tests) where it cannot reach chiffon's secrets or the network.

bubblewrap (``bwrap``, Debian package ``bubblewrap``; https://github.com/containers/bubblewrap)
builds the jail: the whole filesystem read-only, the task's worktree and a scratch folder beside it
(``HOME`` and ``TMPDIR``) writable, ``CHIFFON_HOME`` (database files and sockets, secrets, snapshots,
audit) and ``~/.ssh`` hidden under empty tmpfs, no network namespace shared with the host (so no
PostgreSQL, Redis or SSH agent over TCP), its own PID namespace, and an environment cleared down to
``PATH``, ``LANG``, ``HOME`` and ``TMPDIR``: no ``CHIFFON_*``, API keys, ``SSH_AUTH_SOCK`` or database URLs.

With no working bwrap, sandboxed commands are refused unless the operator sets
``tasks.sandbox: none`` explicitly.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from chiffon.shared.errors import ConfigError

KEPT_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


@functools.cache
def bwrap_works() -> str | None:
    """None when ``bwrap`` can build a jail here; else why not (missing, or namespaces refused)."""
    binary = shutil.which("bwrap")
    if binary is None:
        return "bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    probe = subprocess.run([binary, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--die-with-parent",
                            "true"], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        return f"bwrap cannot create namespaces here: {probe.stderr.strip()[:300]}"
    return None


def jail(argv: list[str], workdir: Path, *, mode: str, hidden: list[Path]) -> tuple[list[str], dict[str, str] | None]:
    """``(argv, env)`` that run ``argv`` in ``workdir`` inside the sandbox (``mode="bwrap"``), or as is with
    the same scrubbed environment (``mode="none"``, the operator's explicit choice).

    ``hidden``: folders to cover with an empty tmpfs (``CHIFFON_HOME``, ``~/.ssh``); missing ones are skipped.

    Raises:
        ConfigError: ``mode`` is ``bwrap`` and bwrap cannot run here (how to fix it, or to opt out, is named).
    """
    env = {k: os.environ[k] for k in KEPT_ENV if k in os.environ}
    # A scratch folder beside the worktree, emptied before each run, is the jail's HOME and TMPDIR. (A tmpfs
    # over /tmp would also hide a checkout or virtualenv that lives under /tmp, as CI clones often do.)
    scratch = workdir.resolve().parent / f".{workdir.name}-tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700, parents=True)
    env["HOME"] = env["TMPDIR"] = str(scratch)
    if mode == "none":
        return argv, env
    problem = bwrap_works()
    if problem is not None:
        raise ConfigError(f"agents' test commands run in a bubblewrap sandbox, and {problem}. Install it, or set "
                          "tasks.sandbox: none to run them unsandboxed (with the worker's file access).")
    work = str(workdir.resolve())
    jailed = [shutil.which("bwrap") or "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
              "--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session", "--clearenv"]
    for folder in hidden:
        if folder.exists():
            jailed += ["--tmpfs", str(folder.resolve())]
    # after the tmpfs covers, so a worktree under CHIFFON_HOME stays visible, and writable
    jailed += ["--bind", work, work, "--bind", str(scratch), str(scratch)]
    for key, value in env.items():
        jailed += ["--setenv", key, value]
    jailed += ["--chdir", work, "--", *argv]
    return jailed, {}
