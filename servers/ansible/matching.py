"""Match a plain-language request to playbooks by retrieval over the catalog.

Scoring is the share of the request's information a playbook covers:

    score = sum(idf(t) * w(t)) / sum(idf(t))      over the request's terms t

where ``idf`` is the BM25 inverse document frequency over the catalog
(Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and
Beyond", 2009, eq. 3.3: ``ln(1 + (N - df + 0.5) / (df + 0.5))``) and ``w`` is 1
when the term (or a synonym) appears in the playbook's name, service,
description or tags, 0.5 when it appears only in play or task names, else 0.
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

from servers.ansible.catalog import Catalog, Playbook
from shared.errors import InvalidInput

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
)
_CANON = {word: group[0] for group in SYNONYMS for word in group}


def terms(text: str) -> list[str]:
    """Lower-case word terms without stopwords, with a light plural strip (``portals`` -> ``portal``)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
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
    """One ranked candidate: the playbook, its score in [0, 1] and why."""

    playbook: Playbook
    score: float
    reason: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: ``{playbook, description, score, reason}``."""
        return {
            "playbook": self.playbook.name,
            "description": self.playbook.description,
            "score": round(self.score, 3),
            "reason": self.reason,
        }


def _fields(pb: Playbook) -> tuple[set[str], set[str]]:
    strong = _expand(terms(" ".join([pb.name.replace("/", " "), pb.service, pb.description, *pb.tags])))
    weak = _expand(terms(" ".join([*pb.play_names, *(t.name for t in pb.tasks)]))) - strong
    return strong, weak


def rank(catalog: Catalog, request: str) -> list[Match]:
    """Every playbook with its score for ``request``, best first (ties by name)."""
    query = list(dict.fromkeys(terms(request)))
    docs = {name: _fields(pb) for name, pb in catalog.playbooks.items()}
    n = len(docs)

    def idf(term: str) -> float:
        df = sum(1 for strong, weak in docs.values() if term in strong or term in weak)
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    weights = {t: idf(_CANON.get(t, t)) for t in query}
    total = sum(weights.values()) or 1.0
    matches = []
    for name, (strong, weak) in docs.items():
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
        matches.append(Match(catalog.playbooks[name], got / total, "; ".join(parts) or "no shared terms"))
    return sorted(matches, key=lambda m: (-m.score, m.playbook.name))


def validate_request(request: str) -> str:
    """Strip and bound a plain-language request. Raises InvalidInput."""
    request = (request or "").strip()
    if not request:
        raise InvalidInput("request", "is empty; say what should happen, e.g. 'Deploy Redis on east'")
    if len(request) > MAX_REQUEST_CHARS:
        raise InvalidInput("request", f"is {len(request)} characters; the limit is {MAX_REQUEST_CHARS}")
    return request


def blend(ranked: list[Match], similarity: dict[str, float], weight: float = SEMANTIC_WEIGHT) -> list[Match]:
    """Re-rank lexical ``ranked`` with each playbook's cosine ``similarity`` to the request (name -> [-1, 1]).

    score = (1 - weight) * lexical + weight * max(0, cosine); still in [0, 1], best first (ties by name).
    A playbook missing from ``similarity`` counts as cosine 0.
    """
    out = []
    for m in ranked:
        cosine = similarity.get(m.playbook.name, 0.0)
        score = (1 - weight) * m.score + weight * max(0.0, cosine)
        out.append(Match(m.playbook, score, f"{m.reason}; meaning similarity {cosine:.2f}"))
    return sorted(out, key=lambda m: (-m.score, m.playbook.name))
