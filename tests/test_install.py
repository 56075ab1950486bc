"""loadgen as a new user gets it: the wheel built from this tree, installed into a fresh environment,
run from an empty folder. What an editable install or a checkout would find beside the source
(recipes, plans, assets) must be inside the package to be found here.

The fresh environment borrows this one's dependencies (a .pth line to its site-packages, which
comes after the fresh environment's own, added once the wheel is in), so nothing is downloaded;
loadgen itself is only the wheel's, whether this environment's loadgen is a regular install (as in
CI) or an editable one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
import yaml

from loadgen.servers.recipe import shipped_recipes
from loadgen.studies.matrix import shipped_plans

ROOT = Path(__file__).resolve().parents[1]
#: what a build of the tree does not need (and must not pick up)
_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "results", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".hypothesis")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A fresh environment holding the wheel: its bin folder and an empty folder to run from."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    wheels = base / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(source)], check=True, timeout=300, capture_output=True)
    (wheel,) = wheels.glob("loadgen-*.whl")
    env = base / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, timeout=300, capture_output=True)
    # Only now: had pip seen this environment's loadgen (a regular install) through the borrowed
    # path, it would have found loadgen "already satisfied" and installed nothing.
    fresh = sysconfig.get_paths(vars={"base": str(env), "platbase": str(env)})["purelib"]
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(fresh, "borrowed-dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    empty = base / "empty"
    empty.mkdir()
    return {"bin": env / "bin", "cwd": empty, "site": Path(fresh)}


def _loadgen(installed: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["bin"] / "loadgen"), *args], capture_output=True, text=True, timeout=120,
                          cwd=installed["cwd"], env={"PATH": f"{installed['bin']}:/usr/bin:/bin", "HOME": "/tmp"})


def test_the_wheel_is_what_runs(installed):
    out = subprocess.run([str(installed["bin"] / "python"), "-c", "import loadgen; print(loadgen.__file__)"],
                         capture_output=True, text=True, timeout=60, cwd=installed["cwd"], check=True)
    assert Path(out.stdout.strip()).is_relative_to(installed["site"])


def test_every_shipped_recipe_and_plan_is_in_the_wheel(installed):
    listed = _loadgen(installed, "serve", "--list")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == shipped_recipes()
    assert len(shipped_recipes()) == len(list((ROOT / "loadgen" / "servers" / "recipes").glob("*/*.yaml")))
    plans = _loadgen(installed, "matrix", "--list")
    assert plans.returncode == 0, plans.stderr
    assert [line.split()[0] for line in plans.stdout.splitlines()] == shipped_plans() != []


def test_serve_dry_run_finds_a_recipe_by_name(installed):
    out = _loadgen(installed, "serve", "vllm/llama3.1-8b-eagle3", "--dry-run", "--port", "8123")
    assert out.returncode == 0, out.stderr
    command = out.stdout.strip().splitlines()[-1]
    assert "vllm serve meta-llama/Llama-3.1-8B-Instruct" in command and "--port 8123" in command
    assert "eagle3" in command


def test_a_missing_recipe_is_one_line_naming_where_it_looked(installed):
    out = _loadgen(installed, "serve", "vllm/no-such-recipe", "--dry-run")
    assert out.returncode == 2
    assert out.stderr.startswith("error: no recipe named vllm/no-such-recipe") and len(out.stderr.splitlines()) == 1
    assert str(installed["site"] / "loadgen" / "servers" / "recipes") in out.stderr


@pytest.mark.parametrize("plan", shipped_plans())
def test_every_shipped_plan_is_valid_by_name(installed, plan):
    out = _loadgen(installed, "matrix", plan, "--dry-run", "--output-dir", "m")
    assert out.returncode == 0, out.stderr
    recipes = yaml.safe_load((ROOT / "loadgen" / "servers" / "plans" / f"{plan}.yaml").read_text())["recipes"]
    for entry in recipes:
        name = entry if isinstance(entry, str) else entry["recipe"]
        assert f"({name})" in out.stdout
    assert not (installed["cwd"] / "m").exists()  # a dry run writes nothing
