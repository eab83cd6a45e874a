"""Tables in a terminal: blocks of columns that fit its width; heads written as L3H4."""

import re

from tests.cli.conftest import IOI, run


def test_a_wide_table_comes_in_blocks_that_fit_the_terminal(capsys, tmp_path, monkeypatch):
    """12 layers as columns (22 + 12 x 7 characters) in an 80-column terminal: two blocks of
    columns, every line within 80 characters, every layer shown once."""
    from tests.conftest import make_random_gpt2

    folder = make_random_gpt2(tmp_path / "wide", n_layer=12, n_head=2, n_embd=32)
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "sweep", "resid_pre", "--model", folder, *IOI)
    assert code == 0
    # the table ends where the cells' list begins (a random model has no behaviour to localize)
    table = re.split(
        r"\n(?:top \d+ cells|no behaviour to localize)", out.split("by layer x pos")[1]
    )[0]
    assert max(len(line) for line in table.split("\n")) <= 80
    headers = [line for line in table.split("\n") if line.strip().startswith("pos")]
    assert len(headers) == 2
    shown = [c for h in headers for c in h.split() if c.startswith("L")]
    assert shown == [f"L{i}" for i in range(12)]


def test_a_head_is_written_one_way_and_edges_keep_their_names() -> None:
    """L3H4 wherever a head is shown to people; a3.h4<v> only where an edge is named."""
    from actpatch.cli.tables import cell_text, node_text

    assert cell_text(["layer", "head"], [3, 4]) == "L3H4"
    assert cell_text(["layer", "pos"], [3, 7]) == "L3 P7"
    assert cell_text(["layer", "pos", "head"], [2, 4, 1]) == "L2H1 P4"
    assert cell_text(["layer", "pos"], [0, 1], ["IO", "S1"]) == "L0 S1"
    assert [node_text(n) for n in ("a3.h4", "m0", "input", "a7.kv1")] == [
        "L3H4",
        "m0",
        "input",
        "a7.kv1",
    ]


def test_a_sweep_without_the_behaviour_names_no_top_cell(capsys, tmp_path) -> None:
    """A random model has no IOI behaviour (its warning says so): the list of cells is headed
    as noise, not as where the behaviour lives; the demo model, which has it, gets 'top'."""
    from tests.conftest import make_random_gpt2

    folder = make_random_gpt2(tmp_path / "random", n_layer=2, n_head=2, n_embd=32)
    code, out, err = run(capsys, "sweep", "z", "--model", folder, *IOI)
    assert code == 0 and "no_behaviour" not in out and "does not show the behaviour" in err
    assert "no behaviour to localize" in out and "\ntop 10 cells" not in out
    code, out, err = run(capsys, "sweep", "z", "--model", "demo", *IOI)
    assert "\ntop 10 cells (layer, head):\n  L3H4 " in out and "no behaviour" not in out + err
