"""The recommender: typed facts in, ranked recipe recommendations out (see ``engine.recommend``)."""

from __future__ import annotations

from tunekit.advise.rules.engine import Facts, Recommendation, Result, recommend
from tunekit.advise.rules.loader import Rule, load_rules

__all__ = ["Facts", "Recommendation", "Result", "Rule", "load_rules", "recommend"]
