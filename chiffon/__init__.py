"""chiffon: a homelab AI agency driven from the IDE.

The distribution's one top-level package. Its subpackages ``chiffon.servers``, ``chiffon.orchestrator``
and ``chiffon.shared``, and its data (``prompts``, ``deploy/config``, ``examples/homelab-infra``), are the
repository's top-level folders: in a checkout this folder links to them, and the wheel carries them here.
"""
