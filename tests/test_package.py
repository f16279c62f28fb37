"""The installable package: the wheel ships the claims and templates (built from their single
source at the top level), and installed into a fresh environment it validates, runs, checks
and reports from an empty directory (scripts/package-check.sh, which CI runs through here)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from audit import PACKAGE_DATA, PROJECT_ROOT, project_file, version
from audit.cli import version_line
from runners.datafiles import DEBIAN_FASHION_MNIST

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("claims.yaml", "templates")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def test_one_version_in_pyproject_citation_and_cli():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert version() == project["version"] == str(citation["version"])
    assert citation["license"] == project["license"] == "MIT"
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert citation["references"][0]["title"] == "Network Deconvolution"  # the audited paper
    assert "scipy>=1.10" in project["dependencies"]


def test_python_dash_m_audit_prints_the_version_and_commit():
    out = subprocess.run(
        [sys.executable, "-m", "audit", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == version_line()
    head = _git("rev-parse", "HEAD")
    if head:  # a checkout names its commit
        assert f"(commit {head[:12]}" in out.stdout
    assert out.stdout.startswith(f"audit {version()}")


def test_a_checkout_reads_the_single_source_and_commits_no_copy():
    assert not PACKAGE_DATA.exists()  # only a wheel has audit/_data/
    assert project_file("claims.yaml") == PROJECT_ROOT / "claims.yaml"
    assert project_file("templates") == PROJECT_ROOT / "templates"
    tracked = _git("ls-files", "audit/_data", "runners/_build_info.json")
    assert tracked in ("", None)


# ------------------------------------------------------------------ the wheel, installed


@pytest.fixture(scope="module")
def package_check(tmp_path_factory):
    """scripts/package-check.sh run once: wheel, fresh environment, the ci audit."""
    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip("the ci profile needs Debian's dataset-fashion-mnist (scripts/setup.sh)")
    if _git("rev-parse", "HEAD") is None:
        pytest.skip("the package check copies the working tree as git lists it")
    work = tmp_path_factory.mktemp("package")
    script = ROOT / "scripts" / "package-check.sh"
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_DATA_DIR"}
    proc = subprocess.run(
        ["bash", str(script), "--python", sys.executable, "--work", str(work)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    return work, proc


@pytest.mark.slow
def test_the_installed_package_audits_from_an_empty_directory(package_check):
    work, proc = package_check
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    venv = str(work / "venv")
    audit_file, runners_file = out.split("import audit, runners")[1].splitlines()[1:3]
    assert audit_file.startswith(venv) and runners_file.startswith(venv)  # not the checkout
    head = _git("rev-parse", "HEAD")
    assert out.count(f"audit {version()} (commit {head[:12]}") == 2  # console script, -m
    assert "Gate: PASS" in out.split("$ audit check --store runs")[1]
    assert (work / "empty" / "reports" / "ci" / "index.html").is_file()
    assert (work / "empty" / "reports" / "ci" / "report.pdf").is_file()
    # Fashion-MNIST was read where Debian keeps it: no data folder in the working directory
    assert sorted(p.name for p in (work / "empty").iterdir()) == [
        "reports",
        "runs",
        "verdicts.json",
    ]


@pytest.mark.slow
def test_the_wheel_ships_the_claims_templates_licence_and_commit(package_check):
    work, proc = package_check
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (work / "dist").glob("nd_audit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in SHIPPED:
            source = ROOT / name
            files = [source] if source.is_file() else sorted(source.rglob("*.*"))
            for path in files:
                packaged = f"audit/_data/{path.relative_to(ROOT).as_posix()}"
                assert archive.read(packaged) == path.read_bytes(), packaged
        metadata = archive.read(f"nd_audit-{version()}.dist-info/METADATA").decode()
        build_info = yaml.safe_load(archive.read("runners/_build_info.json"))
    assert f"nd_audit-{version()}.dist-info/licenses/LICENSE" in names
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: scipy>=1.10" in metadata
    assert "Project-URL: Paper, https://openreview.net/forum?id=rkeu30EtvS" in metadata
    assert build_info["commit"] == _git("rev-parse", "HEAD")
