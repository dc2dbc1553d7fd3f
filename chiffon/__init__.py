"""chiffon: a homelab AI agency driven from the IDE.

The distribution's one top-level package. Its subpackages ``chiffon.servers``, ``chiffon.orchestrator`` and
``chiffon.shared`` and its data (``prompts``, ``deploy/config``, ``examples/homelab-infra``) are the repository's
top-level folders, where people look for them:

- **installed** (a wheel, ``uv tool install``): the wheel carries those folders inside ``chiffon/``
  (pyproject.toml's ``[tool.hatch.build.targets.wheel.sources]`` mapping);
- **in a checkout** (``uv sync``'s editable install puts the checkout on ``sys.path``): this package's search path
  (``__path__``) takes in the checkout's root as well, so ``chiffon.servers`` is the checkout's ``servers/``.
  No symlinks: a clone on Windows with ``core.symlinks=false`` has the package too.

Package data is read through :mod:`importlib.resources` (:mod:`chiffon.shared.resources`), never from a path
computed from ``__file__``.
"""

from pathlib import Path

_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "shared" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # a checkout: chiffon.<folder> is the checkout's <folder>
del _checkout
