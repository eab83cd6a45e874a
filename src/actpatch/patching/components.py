"""What can be patched: each component names a hook point and the axes a sweep runs over.

Vocabulary (as in TransformerLens):
- `layer`: a transformer block, 0-based. `pos`: a token position, 0 is the BOS token.
  `head`: an attention head within a layer.
- `resid_pre` / `resid_mid` / `resid_post`: the residual stream before a block, between its
  attention and MLP, and after it. `attn_out` / `mlp_out`: what the attention layer and the MLP
  add to the residual stream.
- `z`: an attention head's output before the output projection (a head's "output"); `q`, `k`,
  `v`: its queries, keys and values; `pattern`: its attention pattern.

A component patched "over all positions" is indexed by (layer, head); "by position" adds `pos`.
"""

from __future__ import annotations

from dataclasses import dataclass

from actpatch.errors import InputError


@dataclass(frozen=True)
class Component:
    """A patchable activation: its name, its hook point, and the axes of its sweep."""

    name: str
    hook: str
    axes: tuple[str, ...]
    description: str

    @property
    def by_pos(self) -> bool:
        return "pos" in self.axes

    @property
    def per_head(self) -> bool:
        return "head" in self.axes


def _c(name: str, hook: str, axes: tuple[str, ...], description: str) -> Component:
    return Component(name, hook, axes, description)


COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        _c("resid_pre", "resid_pre", ("layer", "pos"), "residual stream before each block"),
        _c("resid_mid", "resid_mid", ("layer", "pos"), "residual stream between attention and MLP"),
        _c("resid_post", "resid_post", ("layer", "pos"), "residual stream after each block"),
        _c("attn_out", "attn_out", ("layer", "pos"), "attention layer output"),
        _c("mlp_out", "mlp_out", ("layer", "pos"), "MLP output"),
        _c("z", "z", ("layer", "head"), "attention head output, all positions"),
        _c("z_by_pos", "z", ("layer", "pos", "head"), "attention head output, by position"),
        _c("q", "q", ("layer", "head"), "head queries, all positions"),
        _c("k", "k", ("layer", "head"), "head keys, all positions"),
        _c("v", "v", ("layer", "head"), "head values, all positions"),
        _c("q_by_pos", "q", ("layer", "pos", "head"), "head queries, by position"),
        _c("k_by_pos", "k", ("layer", "pos", "head"), "head keys, by position"),
        _c("v_by_pos", "v", ("layer", "pos", "head"), "head values, by position"),
        _c("pattern", "pattern", ("layer", "head"), "head attention pattern, all positions"),
    )
}

ALIASES = {
    "heads": "z",
    "head_out": "z",
    "attn_head_out": "z",
    "heads_by_pos": "z_by_pos",
    "heads-by-pos": "z_by_pos",
    "head_out_by_pos": "z_by_pos",
    "resid": "resid_pre",
}


def get_component(name: str) -> Component:
    """The component called `name` (or one of its aliases); a teaching error otherwise."""
    if not isinstance(name, str):
        raise InputError(
            f"The component is a {type(name).__name__} ({name!r}), not a name: give one of "
            f"{', '.join(COMPONENTS)}, e.g. 'z'. For several, run one sweep per component "
            "(attribute_components takes a list).",
            field="component",
        )
    key = ALIASES.get(name, name)
    if key not in COMPONENTS:
        raise InputError(
            f"Unknown component {name!r}. Choose one of: {', '.join(COMPONENTS)} "
            f"(aliases: {', '.join(f'{a}={t}' for a, t in ALIASES.items())}).",
            field="component",
        )
    return COMPONENTS[key]
