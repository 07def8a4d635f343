"""The magnitude pruner's work: masks via ``torch.nn.utils.prune``, then ``prune.remove`` (permanent)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.utils import prune

from tunekit import UsageError
from tunekit.core.arch import ALL_LINEAR, ATTENTION_MODULES, MLP_MODULES

if TYPE_CHECKING:
    from tunekit import StageContext
    from tunekit_prune.plugin import MagnitudePruner

HEALING_WARNING = ("magnitude pruning removed {pct:.0f}% of the targeted weights{nm}: quality drops until a "
                   "healing fine-tune (e.g. LoRA on this model) recovers it{extra}")


class NMStructured(prune.BasePruningMethod):
    """Keep the ``n`` largest-magnitude weights in every group of ``m`` consecutive input weights."""

    PRUNING_TYPE = "unstructured"  # the mask is elementwise, so it composes like an unstructured one

    def __init__(self, n: int, m: int) -> None:
        self.n, self.m = n, m

    def compute_mask(self, t: torch.Tensor, default_mask: torch.Tensor) -> torch.Tensor:
        groups = t.detach().abs().reshape(-1, self.m)
        keep = groups.topk(self.n, dim=1).indices
        mask = torch.zeros_like(groups)
        mask.scatter_(1, keep, 1.0)
        return mask.reshape(t.shape).to(default_mask.dtype) * default_mask

    @classmethod
    def apply(cls, module: nn.Module, name: str, n: int, m: int) -> Any:  # type: ignore[override]
        return super().apply(module, name, n=n, m=m)


def target_names(targets: str | list[str]) -> tuple[str, ...]:
    groups = {"all-linear": ALL_LINEAR, "attention": ATTENTION_MODULES, "mlp": MLP_MODULES}
    if isinstance(targets, str):
        return tuple(groups.get(targets, (targets,)))
    return tuple(targets)


def targeted_linears(model: Any, targets: str | list[str]) -> dict[str, nn.Linear]:
    names = target_names(targets)
    found = {name: module for name, module in model.named_modules()
             if name.rsplit(".", 1)[-1] in names and isinstance(module, nn.Module) and hasattr(module, "weight")}
    kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    if not found:
        raise UsageError(f"pruner: no modules named {list(names)} in this '{kind}' model")
    wrong = [n for n, mod in found.items() if type(mod) is not nn.Linear or not mod.weight.dtype.is_floating_point]
    if wrong:
        raise UsageError(f"pruner: {wrong[0]} is a {type(found[wrong[0]]).__name__}, not a float nn.Linear "
                         "(prune before quantizing, and only Linear layers)")
    return found  # type: ignore[return-value]


def prune_model(plugin: MagnitudePruner, model: Any, ctx: StageContext) -> Any:
    p: Any = plugin.params
    linears = targeted_linears(model, p.targets)
    nm = plugin.nm()
    if nm is not None:
        n, m = nm
        bad = [name for name, lin in linears.items() if lin.in_features % m]
        if bad:
            raise UsageError(f"pruner.n_m {p.n_m}: {bad[0]} has {linears[bad[0]].in_features} inputs, "
                             f"not a multiple of {m}")
        for lin in linears.values():
            NMStructured.apply(lin, "weight", n, m)
    elif p.scope == "global":
        prune.global_unstructured([(lin, "weight") for lin in linears.values()],
                                  pruning_method=prune.L1Unstructured, amount=float(p.sparsity))
    else:
        for lin in linears.values():
            prune.l1_unstructured(lin, "weight", amount=float(p.sparsity))
    for lin in linears.values():
        prune.remove(lin, "weight")  # permanent: plain weights with zeros, no weight_orig/weight_mask
    per_layer = {name: round(float((lin.weight == 0).float().mean()), 4) for name, lin in linears.items()}
    zeros = sum(int((lin.weight == 0).sum()) for lin in linears.values())
    total = sum(lin.weight.numel() for lin in linears.values())
    achieved = zeros / total
    pattern = f" in a {p.n_m} pattern" if nm else ""
    extra = "; N:M pruning by magnitude costs the most (docs/reference.md: 2:4 ppl 5.12 -> 54.59 on Llama-2-7B)" \
        if nm else ""
    warning = HEALING_WARNING.format(pct=100 * achieved, nm=pattern, extra=extra)
    ctx.metrics.setdefault("warnings", []).append(warning)
    ctx.record("prune", method=plugin.name, sparsity=round(achieved, 4), scope="n:m" if nm else p.scope,
               n_m=p.n_m, pruned_weights=zeros, targeted_weights=total, layers=per_layer)
    ctx.log(f"prune: {100 * achieved:.1f}% of {total:,} weights in {len(linears)} matrices zeroed{pattern}; "
            "WARNING: needs a healing fine-tune")
    return model
