"""The routing policy: a pure function from a request and the tiers' state to a decision.

Rules, in order (the first three only when the caller names no tier or model):

1. the complexity estimate picks a tier: simple -> quick, moderate -> local,
   hard -> local-large, complex (needs complex reasoning) -> external;
2. ``high_value`` prefers external;
3. a local tier with less than 20% of its daily token quota left prefers external;
4. external is refused when ``local_only``, when it is not configured or not
   available (no API key, circuit open), when the estimated cost exceeds the
   month's remaining budget or ``max_cost_usd``: then the largest local tier
   answers, with a note saying why;
5. the chain is the chosen tier, then its ``fallback`` tiers (default: the other
   local tiers, nearest size first), skipping unavailable ones and those whose
   context window cannot hold the prompt plus ``max_tokens``; a request no
   local context window holds goes external (when rule 4 allows).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from chiffon.servers.llm import classifier
from chiffon.servers.llm.ledger import cost_usd
from chiffon.servers.llm.types import Candidate, Hints, RouteDecision
from chiffon.shared.config import TIER_NAMES, LLMPrice
from chiffon.shared.errors import InvalidInput, MissingCredential, NoBackendAvailable

LOCAL_QUOTA_FLOOR = 0.2
LOCAL_TIERS = ("quick", "local", "local-large")
DEFAULT_FALLBACK = {
    "quick": ["local", "local-large"],
    "local": ["local-large", "quick"],
    "local-large": ["local", "quick"],
    "external": ["local-large", "local", "quick"],
}


@dataclass
class TierState:
    """What the policy needs to know about one configured tier right now."""

    name: str
    backend: str
    model: str
    context_window: int
    fallback: list[str]
    unavailable: str | None = None  # why it cannot take requests now (None: it can)
    missing_credential: str | None = None  # the environment variable, when that is why
    quota_left: float | None = None  # fraction of the daily local quota left; None: unlimited
    price: LLMPrice | None = None

    @property
    def external(self) -> bool:
        """Paid, outside the homelab."""
        return self.name == "external"


def decide(text: str, max_tokens: int, hints: Hints, tiers: dict[str, TierState], budget_left_usd: float) -> RouteDecision:
    """Choose the tier chain for a request whose whole text is ``text``.

    Raises:
        InvalidInput: unknown or unconfigured tier or model, conflicting hints, negative max_cost_usd,
            max_tokens <= 0 or beyond every configured context window.
        MissingCredential: the caller asked for the external tier and its API key is not set.
        NoBackendAvailable: no tier can take the request; says why for each.
    """
    if max_tokens <= 0:
        raise InvalidInput("max_tokens", f"must be at least 1, got {max_tokens}")
    if hints.max_cost_usd is not None and hints.max_cost_usd < 0:
        raise InvalidInput("max_cost_usd", f"must be >= 0 (0 means local only), got {hints.max_cost_usd}")
    if not tiers:
        raise NoBackendAvailable([])
    configured = ", ".join(t for t in TIER_NAMES if t in tiers)
    forced = hints.tier
    if forced is not None and forced not in TIER_NAMES:
        raise InvalidInput("tier", f"unknown tier {forced!r}; tiers are {', '.join(TIER_NAMES)}")
    if forced is not None and forced not in tiers:
        raise InvalidInput("tier", f"tier {forced!r} is not configured (llm.tiers has {configured})")
    if hints.model is not None:
        owners = [t.name for t in tiers.values() if t.model == hints.model]
        if not owners:
            models = ", ".join(f"{t.model} ({t.name})" for t in tiers.values())
            raise InvalidInput("model", f"unknown model {hints.model!r}; configured models: {models}")
        if forced is not None and forced not in owners:
            raise InvalidInput("model", f"{hints.model!r} belongs to tier {owners[0]}, not {forced}")
        forced = owners[0]
    largest = max(t.context_window for t in tiers.values())
    if max_tokens >= largest:
        raise InvalidInput("max_tokens", f"{max_tokens} leaves no room for the prompt: the largest configured "
                                         f"context window is {largest} tokens")
    if forced == "external" and hints.local_only:
        raise InvalidInput("tier", "external conflicts with local_only=true")
    if forced == "external" and tiers["external"].missing_credential:
        raise MissingCredential(tiers["external"].missing_credential, "the external tier")

    tokens_in = classifier.estimate_tokens(text)
    complexity = classifier.estimate(text)
    reasons: list[str] = []
    notes: list[str] = []
    if forced is not None:
        preferred = forced
        reasons.append(f"caller asked for {'model ' + hints.model if hints.model else 'tier ' + forced}")
    else:
        preferred = complexity.tier
        reasons.append(f"complexity {complexity.score:.2f} ({complexity.level}): {'; '.join(complexity.reasons)}")
        if complexity.level == "complex":
            reasons.append("needs complex reasoning")
        if hints.high_value and preferred != "external":
            preferred = "external"
            reasons.append("marked high-value")
        low = tiers.get(preferred)
        if low is not None and not low.external and low.quota_left is not None and low.quota_left < LOCAL_QUOTA_FLOOR:
            reasons.append(f"{preferred} has {low.quota_left:.0%} of its daily quota left (< {LOCAL_QUOTA_FLOOR:.0%})")
            preferred = "external"
        if preferred not in tiers:
            nearest = nearest_configured(preferred, tiers)
            reasons.append(f"{preferred} is not configured; nearest is {nearest}")
            preferred = nearest or preferred  # None only when no tier is configured: nothing can serve

    needed = tokens_in + max_tokens
    local_fits = [t for t in tiers.values() if not t.external and t.context_window >= needed]
    if preferred != "external" and not local_fits and "external" in tiers:
        reasons.append(f"~{needed} tokens fit no local context window")
        preferred = "external"

    external_cost = cost_usd(tiers["external"].price, tokens_in, max_tokens) if "external" in tiers else 0.0
    block = _external_block(hints, tiers, external_cost, budget_left_usd)
    if preferred == "external" and block:
        local = nearest_configured("local-large", {k: v for k, v in tiers.items() if not v.external})
        if local is None:
            raise NoBackendAvailable([f"external: {block}", "no local tier is configured"])
        notes.append(f"external preferred but {block}: answering with {local}")
        preferred = local

    order = [preferred] + (tiers[preferred].fallback or DEFAULT_FALLBACK[preferred])
    chain: list[Candidate] = []
    skipped: list[str] = []
    for name in dict.fromkeys(order):
        tier = tiers.get(name)
        if tier is None:
            continue
        if tier.external and block:
            skipped.append(f"{name}: {block}")
        elif tier.unavailable:
            skipped.append(f"{name}: {tier.unavailable}")
        elif tokens_in + max_tokens > tier.context_window:
            skipped.append(f"{name}: ~{tokens_in} prompt + {max_tokens} max_tokens exceed its "
                           f"{tier.context_window}-token context window")
        else:
            chain.append(Candidate(tier=name, backend=tier.backend, model=tier.model))
    if not chain:
        raise NoBackendAvailable(skipped)
    if chain[0].tier != preferred:
        notes.extend(f"skipped {s}" for s in skipped if s.startswith(preferred + ":"))
    head = chain[0]
    return RouteDecision(
        tier=head.tier, backend=head.backend, model=head.model, complexity=complexity.score, reasons=reasons,
        chain=chain, estimated_tokens_in=tokens_in,
        estimated_cost_usd=round(external_cost if head.tier == "external" else 0.0, 6), notes=notes,
    )


def nearest_configured(tier: str, tiers: Collection[str]) -> str | None:
    """``tier`` when configured, else the first configured tier of its fallback order, else any; None: none."""
    for name in [tier] + DEFAULT_FALLBACK[tier]:
        if name in tiers:
            return name
    return next(iter(tiers), None)


def _external_block(hints: Hints, tiers: dict[str, TierState], cost: float, budget_left: float) -> str | None:
    external = tiers.get("external")
    if external is None:
        return "no external tier is configured"
    if hints.local_only:
        return "local_only is set"
    if external.unavailable:
        return external.unavailable
    if hints.max_cost_usd is not None and cost > hints.max_cost_usd:
        return f"its estimated cost ${cost:.4f} exceeds max_cost_usd ${hints.max_cost_usd:.4f}"
    if cost > budget_left:
        return f"the monthly external budget is exhausted (${budget_left:.4f} left, ~${cost:.4f} needed)"
    return None
