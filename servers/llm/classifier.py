"""A cheap complexity estimate for routing: microseconds, no model call.

The score in [0, 1] adds weighted cues found in the request text:

* length, in estimated tokens (4 characters a token, OpenAI's rule of thumb for
  English: https://help.openai.com/en/articles/4936856);
* code: fenced blocks, stack traces, common syntax;
* multi-step reasoning: planning, design, comparison, proof, step-by-step cues;
* short-answer cues lower it ("yes or no", "one word", "translate").

Levels map to tiers: simple -> quick, moderate -> local, hard -> local-large,
complex -> external (when allowed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CHARS_PER_TOKEN = 4

_CODE = re.compile(r"```|Traceback \(most recent call last\)|\bdef \w+\(|\bclass \w+[:(]|\bfunc \w+\(|#include|"
                   r"=>|\bconst \w+ =|\bSELECT\b.+\bFROM\b|^\s*[-\w]+:\s*$|;\s*$", re.MULTILINE | re.IGNORECASE)
_REASONING = re.compile(
    r"\b(step[- ]by[- ]step|architect\w*|design|trade-?offs?|compare|versus|vs\.?|prove|derive|analy[sz]e|"
    r"root cause|debug|refactor|migrat\w+|plan|strategy|why|optimi[sz]e|evaluate|pros and cons|"
    r"first\b.+\bthen\b|multi-?step|reason)\b", re.IGNORECASE | re.DOTALL)
_SHORT = re.compile(r"\b(yes or no|one word|in one sentence|translate|classify|extract|rename|spell)\b", re.IGNORECASE)
_NUMBERED = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)

LEVELS = (("simple", 0.25), ("moderate", 0.5), ("hard", 0.75), ("complex", 1.01))
LEVEL_TIER = {"simple": "quick", "moderate": "local", "hard": "local-large", "complex": "external"}


@dataclass
class Complexity:
    """The estimate: score in [0, 1], its level and the cues that produced it."""

    score: float
    level: str
    reasons: list[str] = field(default_factory=list)

    @property
    def tier(self) -> str:
        """The tier this level prefers."""
        return LEVEL_TIER[self.level]


def estimate_tokens(text: str) -> int:
    """Token count estimate: ``ceil(len(text) / 4)``."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate(text: str) -> Complexity:
    """Score ``text`` (the whole conversation's text)."""
    score, reasons = 0.0, []
    tokens = estimate_tokens(text)
    if tokens > 3000:
        score += 0.4
        reasons.append(f"long input (~{tokens} tokens)")
    elif tokens > 800:
        score += 0.25
        reasons.append(f"medium input (~{tokens} tokens)")
    elif tokens > 200:
        score += 0.1
        reasons.append(f"~{tokens} tokens")
    code = len(_CODE.findall(text))
    if code:
        score += min(0.3, 0.15 + 0.03 * code)
        reasons.append(f"code ({code} cue{'s' if code > 1 else ''})")
    cues = sorted({m.group(0).lower()[:24] for m in _REASONING.finditer(text)})
    if cues:
        score += min(0.8, 0.2 * len(cues))
        reasons.append("multi-step reasoning: " + ", ".join(cues[:4]))
    steps = len(_NUMBERED.findall(text))
    if steps >= 3:
        score += 0.1
        reasons.append(f"{steps} numbered steps")
    if _SHORT.search(text):
        score -= 0.15
        reasons.append("short-answer task")
    score = max(0.0, min(1.0, score))
    level = next(name for name, upper in LEVELS if score < upper)
    return Complexity(round(score, 3), level, reasons or ["short, plain request"])
