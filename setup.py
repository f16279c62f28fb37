"""The one build step pyproject.toml cannot declare.

The top-level `claims.yaml` and `templates/` stay the single source (a checkout reads them in
place); a wheel carries copies of them as `audit/_data/`, and the commit it was built from as
`runners/_build_info.json`, so that an installed `audit` finds its claims, its report templates
and its own commit without a checkout. An editable install reads the checkout itself.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("claims.yaml", "templates")  # copied into audit/_data/ (audit.project_file)
BUILD_INFO = "_build_info.json"  # read by runners.rundir.project_commit


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None  # an sdist or a copy without git: the commit is unknown
    return out.stdout.strip()


def build_info() -> dict[str, object]:
    """The commit the wheel is built from, and whether tracked files differed from it. A tree
    without git (an sdist, a copy) keeps the record it carries, written where it was made."""
    if not (ROOT / ".git").exists():
        carried = ROOT / "runners" / BUILD_INFO
        if carried.is_file():
            return json.loads(carried.read_text(encoding="utf-8"))
        return {"commit": None, "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


class BuildPyWithData(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        data = Path(self.build_lib) / "audit" / "_data"
        shutil.rmtree(data, ignore_errors=True)  # no stale template from an earlier build
        data.mkdir(parents=True)
        for name in SHIPPED:
            source = ROOT / name
            if source.is_dir():
                ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                shutil.copytree(source, data / name, ignore=ignore)
            else:
                shutil.copy2(source, data / name)
        info = Path(self.build_lib) / "runners" / BUILD_INFO
        info.write_text(json.dumps(build_info(), indent=2) + "\n", encoding="utf-8")


setup(cmdclass={"build_py": BuildPyWithData})
