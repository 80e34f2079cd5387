"""The Makefile's install stops with one line when the disk cannot hold a new .venv (torch 2.14.1 with its CUDA
libraries takes most of its 5.7 GiB), instead of pip's OSError half-way through an install."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("target", "limit"), [(".venv/.installed", "VENV_GIB"), (".venv/.installed-dev", "VENV_DEV_GIB")]
)
def test_a_new_venv_is_refused_in_one_line_when_the_disk_is_too_small(tmp_path, target, limit):
    if shutil.which("make") is None:
        pytest.fail("make is not installed: the README's two commands need it")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    # a python that runs `-c` but refuses `-m venv`: were the check gone, make would fail here at once instead of
    # installing 6 GiB into tmp_path
    python = tmp_path / "python"
    refuse_venv = '[ "$1" = "-m" ] && { echo "no venv in this test" >&2; exit 97; }'
    python.write_text(f'#!/bin/sh\n{refuse_venv}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    free = shutil.disk_usage(tmp_path).free / 2**30
    need = round(free * 10 + 1000)  # more than this disk has, whatever it has
    result = subprocess.run(
        ["make", "--no-print-directory", target, f"{limit}={need}", f"PYTHON={python}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    refusal = [line for line in result.stderr.splitlines() if line.startswith("make: a new")]
    assert len(refusal) == 1, result.stderr
    assert re.fullmatch(
        rf"make: a new \.venv needs about {need} GiB of free disk here, \d+\.\d GiB is free", refusal[0]
    )
    assert not (tmp_path / ".venv").exists(), "nothing is created before the check passes"


def test_the_disk_check_lets_a_disk_with_room_through(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    # a dry run prints the recipe without installing; its first line, the check, is then run with a limit of
    # 0 GiB, which any disk meets
    recipe = subprocess.run(
        ["make", "-n", "--no-print-directory", ".venv/.installed", "VENV_GIB=0", f"PYTHON={sys.executable}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert recipe[0].startswith("test -x .venv/bin/python || ") and "disk_usage" in recipe[0]
    passed = subprocess.run(recipe[0], shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert passed.returncode == 0 and passed.stderr == ""
