"""Golden files: missing ones skip a local run but fail CI and an explicit SEEDVR2_GOLDEN_DIR."""

from __future__ import annotations

from pathlib import Path

import pytest

import golden


@pytest.fixture
def no_shared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A checkout without ``../shared``, neither CI nor SEEDVR2_GOLDEN_DIR set."""
    monkeypatch.setattr(golden, "REPO", tmp_path / "repo")
    monkeypatch.delenv("SEEDVR2_GOLDEN_DIR", raising=False)
    monkeypatch.delenv("CI", raising=False)
    return tmp_path


def _outcome(name: str) -> tuple[str, str]:
    """``("skip" | "fail" | "found", message)`` of ``golden_path(name)``; a skip must not
    escape, or a wrong skip would pass for a skipped test."""
    try:
        return "found", str(golden.golden_path(name))
    except pytest.skip.Exception as outcome:
        return "skip", str(outcome)
    except pytest.fail.Exception as outcome:
        return "fail", str(outcome)


def test_a_local_run_without_goldens_skips_with_the_reason(no_shared: Path) -> None:
    kind, message = _outcome("dit3b.safetensors")
    assert kind == "skip" and "SEEDVR2_GOLDEN_DIR" in message
    assert golden.matching("dit3b.safetensors", r"in\.(vid)") == ["<absent>"]


@pytest.mark.parametrize("value", ["true", "1", "True"])
def test_ci_without_goldens_fails(no_shared: Path, monkeypatch: pytest.MonkeyPatch,
                                  value: str) -> None:
    monkeypatch.setenv("CI", value)
    kind, message = _outcome("dit3b.safetensors")
    assert kind == "fail" and "goldens are required" in message


def test_an_explicit_golden_dir_without_the_file_fails(no_shared: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEEDVR2_GOLDEN_DIR", str(no_shared / "elsewhere"))
    kind, message = _outcome("timesteps.json")
    assert kind == "fail" and "SEEDVR2_GOLDEN_DIR is set" in message


def test_any_directory_of_the_format_is_read(no_shared: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder = no_shared / "mine"
    folder.mkdir()
    (folder / "timesteps.json").write_text('{"a": 1, "b": 2}')
    monkeypatch.setenv("SEEDVR2_GOLDEN_DIR", str(folder))
    monkeypatch.setenv("CI", "true")
    assert _outcome("timesteps.json") == ("found", str(folder / "timesteps.json"))
    assert golden.json_keys("timesteps.json") == ["a", "b"]
