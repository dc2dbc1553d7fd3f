"""Type-check chiffon with mypy, as the one package ``chiffon`` that the wheel installs.

mypy finds a module by its path, and in the checkout ``chiffon.servers`` is the top-level ``servers/`` folder
(``chiffon/__init__.py`` takes it in at import time, which mypy does not run). So this lays the package out as the
wheel does, in ``.typecheck/chiffon/`` (ignored by git): links to the checkout's folders where the system allows
them, copies where it does not (Windows without developer mode). Then mypy runs on it with pyproject.toml's
settings, and its report names the checkout's own files.

Usage: ``uv run python scripts/typecheck.py [mypy options]``; exits with mypy's status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
FOLDERS = ("servers", "orchestrator", "shared")  # the Python parts of the package (prompts/ and the data: none)


def lay_out(target: Path) -> Path:
    """``target/chiffon`` holding the package as the wheel holds it; returns that folder."""
    package = target / "chiffon"
    shutil.rmtree(target, ignore_errors=True)
    package.mkdir(parents=True)
    shutil.copy2(CHECKOUT / "chiffon" / "__init__.py", package / "__init__.py")
    for name in FOLDERS:
        try:
            os.symlink(CHECKOUT / name, package / name, target_is_directory=True)
        except OSError:  # no right to make links: a copy (the report then names the copy)
            shutil.copytree(CHECKOUT / name, package / name, ignore=shutil.ignore_patterns("__pycache__"))
    return package


def main(argv: list[str]) -> int:
    package = lay_out(CHECKOUT / ".typecheck")
    done = subprocess.run([sys.executable, "-m", "mypy", *argv, str(package.relative_to(CHECKOUT))], cwd=CHECKOUT,
                          capture_output=True, text=True)
    prefix = f".typecheck{os.sep}chiffon{os.sep}"
    sys.stdout.write(done.stdout.replace(prefix, ""))  # errors name servers/..., the files people edit
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
