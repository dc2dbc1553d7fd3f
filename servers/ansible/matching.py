"""Match a plain-language request to units (a playbook, or a role/task file a tag selects) by retrieval.

Scoring is the share of the request's information a playbook covers:

    score = sum(idf(t) * w(t)) / sum(idf(t))      over the request's terms t

where ``idf`` is the BM25 inverse document frequency over the catalog
(Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and
Beyond", 2009, eq. 3.3: ``ln(1 + (N - df + 0.5) / (df + 0.5))``) and ``w`` is 1
when the term (or a synonym) appears in the unit's strong text (playbook or role
name, service, description, tags), 0.5 when it appears only in play, task or
variable names, else 0 (:meth:`servers.ansible.units.Unit.words`).
A score is in [0, 1]; terms that no playbook contains lower every score alike,
so the ranking stays stable while vague requests score low.

Where the catalog is in vector memory (:mod:`orchestrator.playbook_memory`),
:func:`blend` mixes in meaning: ``(1 - w) * lexical + w * max(0, cosine)`` with
``w`` = :data:`SEMANTIC_WEIGHT`. On the labelled set in
``tests/fixtures/playbook_requests.yaml`` (16 playbooks, 32 paraphrased requests,
6 off-topic ones) with all-MiniLM-L6-v2, lexical alone ranks 20/32 right; the
blend ranks 30/32 right at w = 0.5 (27 at 0.3, 30 at 0.7, 29 at 1.0) and still
refuses all 6 off-topic requests (``benchmarks/playbook_matching.py``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from chiffon.servers.ansible.catalog import Catalog, Playbook, Unit
from chiffon.shared.errors import InvalidInput

MIN_SCORE = 0.2
SEMANTIC_WEIGHT = 0.5
MAX_REQUEST_CHARS = 2000

STOPWORDS = frozenset(
    "a an and the to of for on in into its it is are be with by at from as this that these those "
    "please can could would you me my our we i up all some any new".split()
)

# Request words that mean the same thing in a homelab; each group maps to its first word.
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("deploy", "install", "setup", "provision", "start", "launch", "run", "spin", "bring"),
    ("cleanup", "clean", "free", "prune", "purge", "delete", "remove", "tidy"),
    ("backup", "dump", "snapshot", "archive"),
    ("monitor", "monitoring", "uptime", "watch", "healthcheck", "kuma"),
    ("portal", "dashboard", "site", "service", "url"),
    ("postgres", "postgresql", "database", "db"),
    ("redis", "cache", "queue"),
    ("disk", "space", "storage"),
    ("config", "configuration", "configure", "settings"),
    ("harden", "hardening", "secure", "security", "lockdown"),
    ("teardown", "uninstall", "destroy", "decommission"),
    ("update", "upgrade", "patch", "updates", "upgrades", "maintenance"),
)
_CANON = {word: group[0] for group in SYNONYMS for word in group}


def terms(text: str) -> list[str]:
    """Lower-case word terms without stopwords, with a light plural strip (``portals`` -> ``portal``);
    hyphenated or underscored names also yield their joined form (``pi-hole`` -> ``pi``, ``hole``, ``pihole``)."""
    lowered = text.lower()
    words = re.findall(r"[a-z0-9]+", lowered)
    # "pi-hole", "uptime_kuma" also count joined ("pihole", "uptimekuma"), as people write them both ways
    words += [re.sub(r"[-_]", "", w) for w in re.findall(r"[a-z0-9]+(?:[-_][a-z0-9]+)+", lowered)]
    out = []
    for word in words:
        if word in STOPWORDS:
            continue
        if len(word) > 4 and word.endswith("s") and not word.endswith(("ss", "is", "us")):
            word = word[:-1]
        out.append(word)
    return out


def _expand(words: list[str]) -> set[str]:
    return set(words) | {_CANON[w] for w in words if w in _CANON}


@dataclass(frozen=True)
class Match:
    """One ranked candidate: the unit, its score in [0, 1] and why."""

    unit: Unit
    score: float
    reason: str

    @property
    def playbook(self) -> Playbook | None:
        """The unit's playbook; None for a role no playbook applies."""
        return self.unit.playbook

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: ``{playbook, tags, unit, kind, service, description, score, reason}``."""
        return {
            "playbook": self.unit.playbook.name if self.unit.playbook else None,
            "tags": list(self.unit.tags),
            "unit": self.unit.id,
            "kind": self.unit.kind,
            "service": self.unit.service,
            "description": self.unit.description,
            "score": round(self.score, 3),
            "reason": self.reason,
        }


def _fields(unit: Unit) -> tuple[set[str], set[str]]:
    strong_text, weak_text = unit.words()
    strong = _expand(terms(strong_text))
    weak = _expand(terms(weak_text)) - strong
    return strong, weak


def rank(catalog: Catalog, request: str) -> list[Match]:
    """Every unit with its score for ``request``, best first.

    Ties go to the more specific unit (a tagged role before the whole playbook, a playbook before a role
    no playbook applies), then by id.
    """
    query = list(dict.fromkeys(terms(request)))
    docs = {unit.id: (unit, *_fields(unit)) for unit in catalog.units}
    n = len(docs)

    def idf(term: str) -> float:
        df = sum(1 for _, strong, weak in docs.values() if term in strong or term in weak)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    weights = {t: idf(_CANON.get(t, t)) for t in query}
    total = sum(weights.values()) or 1.0
    matches = []
    for unit, strong, weak in docs.values():
        got, hits_strong, hits_weak = 0.0, [], []
        for t in query:
            keys = {t, _CANON.get(t, t)}
            if keys & strong:
                got += weights[t]
                hits_strong.append(t)
            elif keys & weak:
                got += 0.5 * weights[t]
                hits_weak.append(t)
        parts = []
        if hits_strong:
            parts.append("name/description/tags match " + ", ".join(repr(h) for h in hits_strong))
        if hits_weak:
            parts.append("task names match " + ", ".join(repr(h) for h in hits_weak))
        matches.append(Match(unit, got / total, "; ".join(parts) or "no shared terms"))
    return sorted(matches, key=_order)


_KIND_ORDER = {"tasks": 0, "role": 0, "play": 0, "tagged": 1, "playbook": 1, "unused-role": 2}


def _order(m: Match) -> tuple[float, int, str]:
    return (-round(m.score, 9), _KIND_ORDER.get(m.unit.kind, 3), m.unit.id)


def validate_request(request: str) -> str:
    """Strip and bound a plain-language request. Raises InvalidInput."""
    request = (request or "").strip()
    if not request:
        raise InvalidInput("request", "is empty; say what should happen, e.g. 'Deploy Redis on east'")
    if len(request) > MAX_REQUEST_CHARS:
        raise InvalidInput("request", f"is {len(request)} characters; the limit is {MAX_REQUEST_CHARS}")
    return request


def blend(ranked: list[Match], similarity: dict[str, float], weight: float = SEMANTIC_WEIGHT) -> list[Match]:
    """Re-rank lexical ``ranked`` with each unit's cosine ``similarity`` to the request (unit id -> [-1, 1]).

    score = (1 - weight) * lexical + weight * max(0, cosine); still in [0, 1], best first (ties by name).
    A unit missing from ``similarity`` counts as cosine 0.
    """
    out = []
    for m in ranked:
        cosine = similarity.get(m.unit.id, 0.0)
        score = (1 - weight) * m.score + weight * max(0.0, cosine)
        out.append(Match(m.unit, score, f"{m.reason}; meaning similarity {cosine:.2f}"))
    return sorted(out, key=_order)
