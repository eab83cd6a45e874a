"""`serve`: which model it loads, the loud fallback, and failing without a stack trace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import actpatch.api.registry as registry_module
from actpatch.api import serve
from actpatch.errors import ModelUnavailableError
from actpatch.models import load_model


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """uvicorn.run replaced: record what would have been served."""
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    threads = torch.get_num_threads()
    yield seen
    torch.set_num_threads(threads)  # serve applies settings.torch_threads to the process


def _gpt2_unavailable(fallback: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_load(spec: str | None = None, **kw: Any) -> Any:
        if spec == "gpt2":
            raise ModelUnavailableError("Model 'gpt2' could not be loaded: no network.")
        return load_model(str(fallback) if spec == "demo" else spec, **kw)

    monkeypatch.setattr(registry_module, "load_model", fake_load)
    monkeypatch.delenv("ACTPATCH_MODEL", raising=False)
    monkeypatch.delenv("ACTPATCH_FALLBACK_MODEL", raising=False)


def test_default_model_unavailable_serves_demo_and_says_so(
    captured: dict[str, Any],
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _gpt2_unavailable(tiny_model_dir, monkeypatch)
    serve(port=8123)
    err = capsys.readouterr().err
    assert "WARNING" in err and "'gpt2' could not be loaded, so" in err
    assert captured["port"] == 8123 and captured["host"] == "127.0.0.1"
    registry = captured["app"].state.workbench.registry
    assert registry.notices and "instead" in registry.notices[0]


def test_explicit_model_that_fails_exits_with_its_message(
    captured: dict[str, Any],
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _gpt2_unavailable(tiny_model_dir, monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        serve(model="gpt2")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "could not be loaded" in err
    assert "Traceback" not in err
    assert "app" not in captured


def test_missing_folder_exits_with_its_message(
    captured: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        serve(model="./no/such/folder")
    assert "does not exist" in capsys.readouterr().err


def test_explicit_local_model_is_served(
    captured: dict[str, Any], tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = torch.get_num_threads()
    serve(model=str(tiny_model_dir), host="127.0.0.1", port=9001)
    assert torch.get_num_threads() == before  # default: torch's own thread count, untouched
    registry = captured["app"].state.workbench.registry
    assert registry.default == str(tiny_model_dir)
    assert registry.notices == []
    assert f"serving {tiny_model_dir}" in capsys.readouterr().err


def test_network_address_without_a_token_is_refused_before_loading(
    captured: dict[str, Any],
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("ACTPATCH_API_TOKEN", raising=False)
    monkeypatch.delenv("ACTPATCH_ALLOW_OPEN", raising=False)
    with pytest.raises(SystemExit):
        serve(model=str(tiny_model_dir), host="0.0.0.0")
    err = capsys.readouterr().err
    assert "ACTPATCH_API_TOKEN" in err and "loading" not in err
    assert "app" not in captured


def test_network_address_with_a_token_is_served(
    captured: dict[str, Any], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTPATCH_API_TOKEN", "s3cret-token-0123456789")
    serve(model=str(tiny_model_dir), host="0.0.0.0", port=9004)
    assert captured["host"] == "0.0.0.0"
    assert captured["app"].state.workbench.registry.notices == []


def test_open_network_address_says_so_loudly(
    captured: dict[str, Any],
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("ACTPATCH_API_TOKEN", raising=False)
    monkeypatch.setenv("ACTPATCH_ALLOW_OPEN", "true")
    serve(model=str(tiny_model_dir), host="0.0.0.0", port=9005)
    assert "WARNING: This server listens on 0.0.0.0 without a token" in capsys.readouterr().err
    [notice] = captured["app"].state.workbench.registry.notices  # shown on the page too
    assert "anyone who can reach its port" in notice


def test_torch_threads_setting_is_applied(
    captured: dict[str, Any], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = torch.get_num_threads()
    monkeypatch.setenv("ACTPATCH_TORCH_THREADS", "1")
    try:
        serve(model=str(tiny_model_dir), host="127.0.0.1", port=9002)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_host_and_port_come_from_the_environment_unless_given(
    captured: dict[str, Any], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTPATCH_HOST", "127.0.0.2")
    monkeypatch.setenv("ACTPATCH_PORT", "8765")
    serve(model=str(tiny_model_dir))
    assert (captured["host"], captured["port"]) == ("127.0.0.2", 8765)
    serve(model=str(tiny_model_dir), port=9003)
    assert (captured["host"], captured["port"]) == ("127.0.0.2", 9003)


def test_a_model_named_in_the_environment_is_never_swapped(
    captured: dict[str, Any],
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _gpt2_unavailable(tiny_model_dir, monkeypatch)
    monkeypatch.setenv("ACTPATCH_MODEL", "gpt2")
    with pytest.raises(SystemExit):
        serve()
    assert "could not be loaded" in capsys.readouterr().err
    assert "app" not in captured


def test_a_taken_port_is_said_at_once_before_loading_anything(monkeypatch, capsys):
    """Another server on the port: one line naming it and how to choose another, exit 1, and
    no model loaded (the failure would otherwise come after the load, as a raw errno)."""
    import socket

    loads: list[Any] = []
    monkeypatch.setattr(registry_module, "load_model", lambda *a, **k: loads.append(a))
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            serve(model="demo", host="127.0.0.1", port=port)
    assert exit_info.value.code == 1 and loads == []
    err = capsys.readouterr().err
    assert f"port {port} is already in use" in err and "--port N" in err and "PORT=N" in err


def test_a_token_clients_cannot_send_is_refused_before_loading(
    captured: dict[str, Any],
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ACTPATCH_API_TOKEN", " spaced-token-0123456789 ")
    with pytest.raises(SystemExit):
        serve(model=str(tiny_model_dir), host="0.0.0.0")
    err = capsys.readouterr().err
    assert "begins or ends with a space" in err and "loading" not in err
    assert "app" not in captured


def test_a_history_left_aside_is_said_at_start(
    captured: dict[str, Any],
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    (tmp_path / "runs.sqlite3").write_bytes(b"\x00" * 4096)  # not a database
    monkeypatch.setenv("ACTPATCH_DATA_DIR", str(tmp_path))
    serve(model=str(tiny_model_dir), port=9006)
    err = capsys.readouterr().err
    assert f"WARNING: The run history {tmp_path / 'runs.sqlite3'}" in err
    assert "left untouched" in err
