"""The harness: what to run (claims, plan), running it (launch, store), judging it
(compare, check) and reporting it (report). Importing it never imports torch."""

from pathlib import Path

# The repository root of a checkout: claims.yaml, templates/ and reports/ live here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# An installed wheel's copies of claims.yaml and templates/ (setup.py puts them there).
PACKAGE_DATA = Path(__file__).resolve().parent / "_data"
DISTRIBUTION = "nd-audit"  # the name pyproject.toml gives the package


def project_file(name: str) -> Path:
    """A file the project ships, `claims.yaml` or `templates`: the wheel's copy where audit is
    installed, else the checkout's own (the single source the copy is built from)."""
    packaged = PACKAGE_DATA / name
    return packaged if packaged.exists() else PROJECT_ROOT / name


def version() -> str:
    """pyproject.toml's version in a checkout, else the installed distribution's."""
    pyproject = PROJECT_ROOT / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        with open(pyproject, "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # copied without its metadata
        return "unknown"
