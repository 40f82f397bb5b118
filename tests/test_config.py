"""The FASTCONV_* environment table (cpp/config.cpp): one parser for C++ and Python, a bad value a
ValueError naming the variable in both, the table listed by fastconv.info() and in the README."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import fastconv
import pytest
from fastconv import _C

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60


def _run(code, env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("FASTCONV_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def test_every_variable_the_code_reads_is_in_the_table():
    names = {row["name"] for row in fastconv.env_settings()}
    used = set()
    for folder in ("cpp", "cuda", "python", "tests", "bench", ".ci"):
        for path in (ROOT / folder).rglob("*"):
            if path.name == Path(__file__).name or not path.is_file():
                continue
            if path.suffix in {".cpp", ".h", ".cu", ".cuh", ".inl", ".py", ""}:
                used |= set(re.findall(r"\bFASTCONV_[A-Z0-9_]+", path.read_text(errors="ignore")))
    # compile-time macros of the C++ code, not environment variables
    used -= {
        "FASTCONV_HD",
        "FASTCONV_HAVE_AVX2",
        "FASTCONV_HAVE_AVX512",
        "FASTCONV_WITH_CUDA",
        "FASTCONV_CUDA_EMU",  # the CPU emulator's build (cuda/emu)
    }
    used = {u for u in used if not u.startswith("FASTCONV_CUDA_CMAKE")}
    assert used <= names, f"not in cpp/config.cpp's table: {sorted(used - names)}"


def test_readme_lists_the_table():
    readme = (ROOT / "README.md").read_text()
    for row in fastconv.env_settings():
        assert f"| `{row['name']}` |" in readme, row["name"]


def test_info_lists_the_environment(monkeypatch):
    monkeypatch.setenv("FASTCONV_SPIN_US", "50")
    env = fastconv.info()["environment"]
    assert set(env) == {row["name"] for row in fastconv.env_settings()}
    assert env["FASTCONV_SPIN_US"] == "50"


def test_env_value_is_the_parsed_value(monkeypatch):
    monkeypatch.setenv("FASTCONV_SPIN_US", " 50 ")
    assert fastconv.env_value("FASTCONV_SPIN_US") == 50
    monkeypatch.delenv("FASTCONV_SPIN_US")
    assert fastconv.env_value("FASTCONV_SPIN_US") is None
    with pytest.raises(TypeError, match="name must be a str"):
        fastconv.env_value(3)


@pytest.mark.parametrize(
    ("name", "value", "want"),
    [
        ("FASTCONV_NUM_THREADS", " 3 ", 3),
        ("FASTCONV_SPIN_US", "0", 0),
        ("FASTCONV_CPU_ISA", "portable", "portable"),
        ("FASTCONV_CUDA_SYNC", "1", True),
        ("FASTCONV_CUDA_SYNC", "", False),
        ("FASTCONV_OUTPUT_CACHE_MB", "", None),
        ("FASTCONV_DATA", "/some/where", "/some/where"),
    ],
)
def test_values_parse(monkeypatch, name, value, want):
    monkeypatch.setenv(name, value)
    assert _C.env_value(name) == want


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FASTCONV_NUM_THREADS", "0"),
        ("FASTCONV_NUM_THREADS", "two"),
        ("FASTCONV_NUM_THREADS", "-1"),
        ("FASTCONV_SPIN_US", "100001"),
        ("FASTCONV_OUTPUT_CACHE_MB", "1.5"),
        ("FASTCONV_CPU_ISA", "sse9"),
        ("FASTCONV_CUDA_SYNC", "yes"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=rf"{name} must be .*got '{re.escape(value)}'"):
        _C.env_value(name)


def test_unknown_name_is_an_error():
    with pytest.raises(ValueError, match="FASTCONV_NOPE"):
        _C.env_value("FASTCONV_NOPE")


@pytest.mark.parametrize(
    ("name", "value"), [("FASTCONV_SPIN_US", "fast"), ("FASTCONV_CUDA_SYNC", "yes")]
)
def test_bad_value_fails_the_import(name, value):
    proc = _run("import fastconv", {name: value})
    assert proc.returncode != 0
    assert f"{name} must be" in proc.stderr


def test_cpp_reader_raises_like_python():
    """The native module alone (no Python-side check first): the C++ reader of FASTCONV_CPU_ISA
    raises the same ValueError instead of falling back silently."""
    # fastconv's import validates first; load the extension without the package to reach C++.
    code = (
        "import importlib.util\n"
        "import importlib.machinery as m\n"
        f"path = {_C.__file__!r}\n"
        "loader = m.ExtensionFileLoader('fastconv._C', path)\n"
        "spec = importlib.util.spec_from_file_location('fastconv._C', path, loader=loader)\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "loader.exec_module(mod)\n"
        "try:\n"
        "    mod.get_isa()\n"
        "except ValueError as e:\n"
        "    print('ValueError:', e)\n"
    )
    proc = _run(code, {"FASTCONV_CPU_ISA": "sse9"})
    assert proc.returncode == 0, proc.stderr
    assert "ValueError: FASTCONV_CPU_ISA must be one of portable|avx2|avx512" in proc.stdout
