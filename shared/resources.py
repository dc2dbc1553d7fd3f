"""What chiffon ships besides code: its prompts, its default config and the example IaC repo.

They are package data of ``chiffon`` (``chiffon/prompts``, ``chiffon/deploy/config``,
``chiffon/examples/homelab-infra`` in the wheel; the checkout's top-level folders of those names in an editable
install, see ``chiffon/__init__.py``), found through :mod:`importlib.resources`, so an installed chiffon and a
checkout read them the same way, wherever the package lives.

Every function returns a real filesystem path: Ansible runs in the example repo and the config loader reads
files by path. A chiffon imported from a zip archive has no such paths; it is refused with the fix.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import chiffon


def data_path(package: str, *parts: str) -> Path:
    """The path of the package data ``parts`` (file or folder) under ``package`` (``"chiffon.prompts"``).

    Raises:
        RuntimeError: chiffon is imported from a zip archive, where package data has no filesystem path.
    """
    ref = files(package).joinpath(*parts)
    if not isinstance(ref, Path):
        raise RuntimeError(f"chiffon's {package}/{'/'.join(parts)} is not a file on disk ({type(ref).__name__}): "
                           "install chiffon unpacked (uv tool install, pip install), not as a zip archive")
    return ref


def prompt_path(*parts: str) -> Path:
    """A prompt or prompt folder (``prompt_path("roles")``, ``prompt_path("planner.md")``)."""
    return data_path("chiffon.prompts", *parts)


def shipped_config_dir() -> Path:
    """The folder of the shipped default config: ``chiffon.yaml`` and ``hosts/<host>.yaml``."""
    return data_path("chiffon.deploy", "config")


def example_repo() -> Path:
    """The example IaC repo (``homelab-infra``) that the main job runs against when no repo is configured."""
    return data_path("chiffon.examples", "homelab-infra")


def checkout() -> Path | None:
    """The source checkout chiffon runs from (an editable install: ``uv sync`` in a clone), or None when it is
    installed from a wheel. Read from the package's search path, which takes in the checkout's root in that case
    (``chiffon/__init__.py``)."""
    extra = [Path(p) for p in chiffon.__path__[1:]]
    return next((p for p in extra if (p / "pyproject.toml").is_file()), None)
