"""What a request asks, read from its words: the action, the entities that may name a unit, the environment,
and where it should run.

- **Action** (:data:`ACTIONS`): deploy, remove, update, back up, restore, harden, shut down, bootstrap, clean up,
  from the verbs people use ("tear down", "redeploy", "back up", "from scratch"). A verb that is not plain
  deployment wins ("install the pending updates" asks for an update).
- **Entities**: the request's words and joined word pairs ("uptime kuma" -> ``uptimekuma``), normalised;
  words too common to name a unit alone (:data:`NOT_ENTITIES`) are kept apart as ``generic``.
- **Where**: the words after on/to/across ("on the Pis") are ``targets``, unless the request names them
  before ("install docker on the docker hosts" asks for docker).
- **Environment**: "on staging", "in prod" (``servers.ansible.inventories.ENVIRONMENTS``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chiffon.servers.ansible import matching
from chiffon.servers.ansible.inventories import ENVIRONMENTS, environment_of

# The request's verb -> the action it asks for. Order matters where phrases overlap ("back up" before "up").
ACTIONS: tuple[tuple[str, str], ...] = (
    ("remove", r"tear(?:ing)?[\s_-]*down|teardown|uninstall|remove|destroy|delete|decommission|get rid of|"
               r"take down|wipe"),
    ("backup", r"back[\s_-]*up|backups?|dump|snapshot"),
    ("restore", r"restore|recover"),
    ("stop", r"shut[\s_-]*down|power[\s_-]*off|turn off|halt|stop"),
    ("bootstrap", r"from scratch|(?:a |the )?(?:fresh|new|brand[- ]new) (?:server|host|machine|box|node|vm|pi)|"
                  r"bootstrap|initial(?:ise|ize)?(?: setup)?|first[- ]time setup|baseline"),
    ("cleanup", r"clean[\s_-]*up|cleanup|prune|free (?:up )?(?:disk|space)|tidy"),
    ("update", r"updates?|upgrades?|patch(?:es)?|bump"),
    ("harden", r"harden(?:ing)?|secure|security|lock[\s_-]*down"),
    ("deploy", r"re-?deploy|deploy|re-?install|install|set[\s_-]*up|provision|launch|spin up|bring up|start|"
               r"restart|re-?create|create|add|configure|run|enable|host|put"),
)

# Words that never name what to run.
NOT_ENTITIES = frozenset(
    "container containers service services server servers host hosts machine machines node nodes stack stacks app "
    "apps application instance box everything everywhere thing things again latest version again my the our all "
    "every each new old fresh please now also them it its there here one two three playbook playbooks role roles "
    "ansible run play config configuration settings system systems homelab lab site main".split())

@dataclass(frozen=True)
class Intent:
    """What a request asks, read from its words: ``action``, the ``entities`` it names (normalised words and
    joined word pairs), the ``environment`` it names (``prod``, ``staging``...) or None."""

    text: str
    action: str
    entities: tuple[str, ...]
    environment: str | None
    generic: tuple[str, ...] = ()  # words too common to name a unit alone, which may still be a tag ("services")
    also: frozenset[str] = frozenset()  # other actions the request names ("install the pending updates")
    targets: tuple[str, ...] = ()  # where it should run: the words after on/to/across ("on the Proxmox nodes")
    words: tuple[str, ...] = ()  # the request's own words that may name what to run, as written (no pairs)

    @property
    def what(self) -> tuple[str, ...]:
        """The entities that say what to run: those that are not where (all of them when that leaves none)."""
        return tuple(e for e in self.entities if e not in self.targets) or self.entities

def norm(text: str) -> str:
    """Lower-case letters and digits only: ``Uptime-Kuma`` -> ``uptimekuma``."""
    return re.sub(r"[^a-z0-9]", "", text.lower())

def read_intent(request: str) -> Intent:
    """The action, entities and environment of ``request`` (see the module docstring)."""
    lowered = request.lower()
    spans: list[tuple[int, int]] = []
    named: dict[str, int] = {}
    for name, pattern in ACTIONS:
        for found in re.finditer(rf"\b(?:{pattern})\b", lowered):
            spans.append(found.span())
            named[name] = min(named.get(name, found.start()), found.start())
    # "install the pending updates": the verb that is not plain deployment says what is asked
    specific = sorted((at, name) for name, at in named.items() if name != "deploy")
    action = specific[0][1] if specific else "deploy"
    kept = lowered
    for start, end in sorted(spans, reverse=True):
        kept = kept[:start] + " " + kept[end:]
    words = [w for w in re.findall(r"[a-z0-9][a-z0-9._-]*", kept)]
    words = [w.strip("._-") for w in words if w.strip("._-")]
    env = environment_of(set(words))
    env_words = set(ENVIRONMENTS.get(env, ())) if env else set()
    plain = [w for w in words if w not in matching.STOPWORDS and w not in NOT_ENTITIES and w not in env_words]
    generic = tuple(dict.fromkeys(norm(w) for w in words if w in NOT_ENTITIES and w not in matching.STOPWORDS))
    entities: list[str] = []
    for i, word in enumerate(plain):
        entities.append(norm(word))
        if len(word) > 4 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            entities.append(norm(word[:-1]))
        if i + 1 < len(plain):
            entities.append(norm(word + plain[i + 1]))
    # where it runs: the words after on/to, unless the request also names them before ("install docker on the
    # docker hosts" asks for docker)
    head = re.split(r"\b(?:on|to|across|onto)\b", lowered, maxsplit=1)[0]
    said = {norm(w) for w in re.findall(r"[a-z0-9][a-z0-9._-]*", head)}
    targets = tuple(t for t in dict.fromkeys(target_words(request)) if t not in said)
    return Intent(request, action, tuple(e for e in dict.fromkeys(entities) if len(e) > 1), env, generic,
                  frozenset(named) - {action}, targets, tuple(w for w in plain if norm(w) not in targets))

_TARGET = re.compile(r"\b(?:on|to|across|onto)\s+(?:the\s+|my\s+|our\s+|all\s+(?:the\s+|of\s+the\s+)?|every\s+|each\s+)?"
                     r"([a-z0-9][\w.-]*)(?:\s+([a-z0-9][\w.-]*))?", re.I)

def target_words(request: str) -> list[str]:
    """Normalised words that follow "on", "to", "across": where the request wants it run ("on the Pis" ->
    ``pis``, ``pi``; "on raspi1" -> ``raspi1``), with the joined pair ("on the proxmox nodes")."""
    out: list[str] = []
    for first, second in _TARGET.findall(request):
        for word in filter(None, (first, second, first + (second or ""))):
            n = norm(word)
            out += [n, n[:-1]] if n.endswith("s") and len(n) > 3 else [n]
    return out
