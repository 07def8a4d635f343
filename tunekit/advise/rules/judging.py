"""Judging candidates for one ``recommend`` call: fit each (shard, page, shorten), drop what the hardware or
the rules exclude, score the rest; keep what fits. In best-only mode (the model ranking) candidates are
judged best bound first and judging stops when none left could beat the best (``scoring.optimistic``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunekit.advise.rules import candidates as gen
from tunekit.advise.rules import engines, fitting, speed
from tunekit.advise.rules.conditions import evaluate, reads
from tunekit.advise.rules.fitting import fit
from tunekit.advise.rules.scoring import FITTED_FACTS, Scored, optimistic, score
from tunekit.core.records import evolve

if TYPE_CHECKING:
    from tunekit.advise.rules.engine import Facts
    from tunekit.advise.rules.loader import Rule
    from tunekit.core.registry import Registry


@dataclass
class Run:
    """What one ``recommend`` call works with: facts as data, fired rules, their levers and settings."""

    facts: Facts
    fdict: dict[str, Any]
    fired: list[Rule]
    levers: list[str]
    settings: dict[str, dict[str, Any]]
    dropped: list[tuple[str, str]] = field(default_factory=list)
    viable: int = 0  # candidates left after the drops that need no fitting
    slow: list[tuple[str, float]] = field(default_factory=list)  # fitted, but slower than --latency-ms: ms/token



def judge(run: Run, cands: list[gen.Candidate], registry: Registry, best_only: bool = False,
          at_least: float = float("-inf"), useful_seq: int | None = None) -> list[Scored]:
    """Fit each candidate (shard, page, shorten), drop what the hardware or the rules exclude, score the rest.

    What does not depend on fitting is dropped first: a requirement the hardware lacks, a recipe no engine
    serves, a rule's drop that reads no fitted fact (optimizer, strategy, memory) and, with ``useful_seq``
    (the model ranking's shortest useful fine-tune), a training recipe that cannot fit at that length even
    at its leanest (one fitted below it is dropped after fitting). ``best_only``: only the best that ``keep``
    would keep matters (the model ranking), and only if it scores ``at_least``. Candidates are then judged in
    the order of the most they could score once fitted (``scoring.optimistic``), and judging stops when none
    left could beat the best kept so far or reach ``at_least``: the same best, fitting a few of ~50."""
    queue: list[tuple[gen.Candidate, bool]] = []
    seen: set[str] = set()
    floors: dict[str, float] = {}  # with useful_seq: a floor under each training candidate's memory there
    facts: dict[str, dict[str, Any]] = {}  # each candidate's facts as generated (what rules read)
    early = [(r, d) for r in run.fired for d in r.drop
             if not any(p == "*" or p.startswith(FITTED_FACTS) for p in reads(d.get("when")))]
    for cand in cands:
        if cand.name in seen:  # the same recipe reached through two levers: keep the first (higher) lever
            continue
        seen.add(cand.name)
        if cand.needs:
            run.dropped.append((cand.name, "; ".join(cand.needs)))
            continue
        unserved = engines.servable(cand, run.facts.engine) if cand.method == "infer" else None
        if unserved:  # a serving recipe no engine (or not the asked one) reads as it writes it
            run.dropped.append((cand.name, unserved))
            continue
        facts[cand.name] = cand.facts()
        if early:
            cf = {**run.fdict, "candidate": facts[cand.name]}
            why_drop = [f"[{r.id}] {d.get('reason', '')}" for r, d in early if evaluate(d.get("when"), cf)]
            if why_drop:
                run.dropped.append((cand.name, "; ".join(why_drop)))
                continue
        if useful_seq:
            lean = fitting.leanest(run.facts, cand, useful_seq)
            if not fitting.could_fit_at(run.facts, cand, useful_seq, lean):
                run.dropped.append((cand.name, f"does not fit at {useful_seq} training tokens with "
                                               f"{run.facts.margin:.0%} kept free, even at its leanest"))
                continue
            floors[cand.name] = min((e.total_gb for e in lean), default=0.0)
        queue.append((cand, cand.method == "infer" and not run.facts.engine and engines.only_hf(cand)))
    run.viable = len(queue)
    if best_only:
        bounds = [optimistic(run.facts, c, run.levers, run.fired, {**run.fdict, "candidate": facts[c.name]},
                             floors[c.name] if c.name in floors else fitting.least_gb(run.facts, c))
                  - (engines.HF_ONLY_POINTS if hf_only else 0.0) for c, hf_only in queue]
        order = sorted(range(len(queue)), key=lambda i: -bounds[i])
        queue = [queue[i] for i in order]
        bounds = [bounds[i] for i in order]
    scored: list[Scored] = []
    best = float("-inf")
    for index, (cand, hf_only) in enumerate(queue):
        if best_only and bounds[index] < max(best, at_least):
            break
        judged = judge_one(run, cand, hf_only, registry, useful_seq, roomy=best_only)
        if judged is not None:
            scored.append(judged)
            if judged[3] or judged[1].keep_if_unfit:
                best = max(best, judged[0])
    return scored


def judge_one(run: Run, cand: gen.Candidate, hf_only: bool, registry: Registry,
              useful_seq: int | None = None, roomy: bool = False) -> Scored | None:
    """Fit, drop or score one candidate; with ``useful_seq``, a fine-tune fitted below it is dropped, and with
    ``roomy`` (the model ranking) one that fits only inside the memory margin: the ranking offers a model by a
    recipe that fits with the margin kept free, so a tight best recipe must not hide a roomy one."""
    if hf_only:  # planned as transformers serves it: the whole prompt prefilled at once
        cand = gen.estimate_candidate(run.facts.model, evolve(cand, setup=evolve(cand.setup, engine="hf")))
    elif cand.memory is None:  # generated without an estimate (best_only judges a few)
        cand = gen.estimate_candidate(run.facts.model, cand)
    wanted_seq = cand.setup.seq_len
    cand, fitted = fit(run.facts, cand, registry)
    assert cand.memory is not None
    if useful_seq and cand.method != "infer" and cand.setup.seq_len < useful_seq:
        run.dropped.append((cand.name, f"fits only at {cand.setup.seq_len} training tokens, below {useful_seq}"))
        return None
    cf = {**run.fdict, "candidate": cand.facts()}
    why_drop = [f"[{r.id}] {d.get('reason', '')}" for r in run.fired for d in r.drop
                if any(p == "*" or p.startswith(FITTED_FACTS) for p in reads(d.get("when")))
                and evaluate(d.get("when"), cf)]  # the others were asked before fitting
    if why_drop:
        run.dropped.append((cand.name, "; ".join(why_drop)))
        return None
    tight = fitting.tight(run.facts, cand) and cand.split_layers is None
    if roomy and tight:
        run.dropped.append((cand.name, fitting.ROOMLESS))
        return None
    fits = fitting.fits(run.facts, cand) or fitting.tight(run.facts, cand) or cand.split_layers is not None
    slow = speed.too_slow(run.facts, cand) if fits else None  # one that does not fit is dropped for that
    if slow:
        run.dropped.append((cand.name, slow))
        rate = speed.decode_speed(run.facts, cand)
        run.slow.append((cand.name, 1000 / rate if rate else float("inf")))
        return None
    points, reasons = score(run.facts, cand, run.levers, run.fired, cf, wanted_seq)
    if hf_only:
        points -= engines.HF_ONLY_POINTS
        reasons.append(f"served by transformers only ({engines.problem('vllm', cand)}): no paged KV cache "
                       "or continuous batching")
    if cand.offload:
        points -= fitting.OFFLOAD_POINTS
    if tight:
        points -= 1.0
        fitted.append(fitting.TIGHT_ADVICE.format(margin=run.facts.margin))
    at = 2 + len(cand.warnings)  # after what it is and its warnings (the table shows the first reasons)
    reasons[at:at] = fitted
    return points, cand, reasons, fits


def keep(run: Run, scored: list[Scored]) -> list[Scored]:
    """What fits, best first; when nothing fits, the near misses, leanest first. Recipes that fit but decode
    slower than ``--latency-ms`` count as fitting here: a bigger recipe is no answer to a speed target. A
    fallback candidate is kept only when no other fits."""
    any_fit = any(fits or cand.keep_if_unfit for _, cand, _, fits in scored) or bool(run.slow)
    primary_fits = any(fits and not cand.fallback for _, cand, _, fits in scored)
    kept = []
    for points, cand, reasons, fits in scored:
        assert cand.memory is not None
        if cand.fallback and primary_fits:
            run.dropped.append((cand.name, "a fallback: a candidate without it fits"))
            continue
        if fits or cand.keep_if_unfit:
            kept.append((points, cand, reasons, fits))
        elif any_fit:
            run.dropped.append((cand.name, f"needs ~{cand.memory.total_gb:.1f} GB (planned "
                                           f"~{fitting.planned_gb(cand):.1f} GB + {run.facts.margin:.0%} margin); "
                                           f"{run.facts.budget_gb():.1f} GB available"))
        else:
            kept.append((points - cand.memory.total_gb, cand, reasons, False))
    kept.sort(key=lambda item: (-item[0], item[1].memory.total_gb if item[1].memory else 0, item[1].name))
    return kept
