"""The component table: names, aliases, axes, and the errors for names it does not know."""

from __future__ import annotations

import pytest

from actpatch.errors import InputError
from actpatch.patching.components import ALIASES, COMPONENTS, get_component


def test_every_component_is_indexed_by_layer_first() -> None:
    for comp in COMPONENTS.values():
        assert comp.axes[0] == "layer"
        assert comp.by_pos == ("pos" in comp.axes)
        assert comp.per_head == ("head" in comp.axes)


@pytest.mark.parametrize(
    ("name", "hook", "axes"),
    [
        ("resid_pre", "resid_pre", ("layer", "pos")),
        ("z", "z", ("layer", "head")),
        ("z_by_pos", "z", ("layer", "pos", "head")),
        ("k_by_pos", "k", ("layer", "pos", "head")),
        ("pattern", "pattern", ("layer", "head")),
    ],
)
def test_components_name_their_hook_and_axes(name: str, hook: str, axes: tuple[str, ...]) -> None:
    comp = get_component(name)
    assert (comp.hook, comp.axes) == (hook, axes)


def test_aliases_resolve_to_components() -> None:
    for alias, target in ALIASES.items():
        assert target in COMPONENTS
        assert get_component(alias).name == target
    assert get_component("heads").name == "z"
    assert get_component("heads-by-pos").name == "z_by_pos"
    assert get_component("resid").name == "resid_pre"


def test_unknown_component_lists_the_choices() -> None:
    with pytest.raises(InputError) as err:
        get_component("attn")
    assert err.value.field == "component"
    assert all(name in err.value.message for name in COMPONENTS)


def test_a_component_that_is_not_a_name_is_a_teaching_error() -> None:
    with pytest.raises(InputError, match=r"component is a list \(\['z'\]\), not a name"):
        get_component(["z"])  # type: ignore[arg-type]
