"""Tables in a terminal: blocks of columns that fit its width."""

from tests.cli.conftest import IOI, run


def test_a_wide_table_comes_in_blocks_that_fit_the_terminal(capsys, tmp_path, monkeypatch):
    """12 layers as columns (22 + 12 x 7 characters) in an 80-column terminal: two blocks of
    columns, every line within 80 characters, every layer shown once."""
    from tests.conftest import make_random_gpt2

    folder = make_random_gpt2(tmp_path / "wide", n_layer=12, n_head=2, n_embd=32)
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "sweep", "resid_pre", "--model", folder, *IOI)
    assert code == 0
    table = out.split("by layer x pos")[1].split("top")[0]
    assert max(len(line) for line in table.split("\n")) <= 80
    headers = [line for line in table.split("\n") if line.strip().startswith("pos")]
    assert len(headers) == 2
    shown = [c for h in headers for c in h.split() if c.startswith("L")]
    assert shown == [f"L{i}" for i in range(12)]
