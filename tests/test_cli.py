"""The `audit` front end: verbs, help, exit codes, and no torch import where none is needed."""

import subprocess
import sys

import pytest

from audit import cli


def _run_audit(*args: str) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        "from audit.cli import main\n"
        "try:\n"
        f"    rc = main({list(args)!r})\n"
        "except SystemExit as exc:  # argparse's --help exits\n"
        "    rc = exc.code\n"
        "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH')\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_top_level_help_lists_every_verb_without_importing_torch():
    out = _run_audit("--help")
    assert out.returncode == 0
    for verb in cli.COMMANDS:
        assert verb in out.stdout
    assert out.stdout.strip().endswith("NO_TORCH")


@pytest.mark.parametrize("verb", ["check", "validate", "plan", "status", "report", "run"])
def test_verb_help_does_not_import_torch(verb):
    out = _run_audit(verb, "--help")
    # argparse exits 0 after printing help
    assert out.returncode == 0, out.stderr
    assert f"audit {verb}" in out.stdout
    assert out.stdout.strip().endswith("NO_TORCH")


def test_unknown_verb_is_a_usage_error():
    out = _run_audit("frobnicate")
    assert out.returncode == 2
    assert "unknown verb" in out.stderr
    assert "Traceback" not in out.stderr


def test_no_arguments_prints_help_and_fails():
    out = _run_audit()
    assert out.returncode == 2
    assert "verbs:" in out.stdout


def test_each_verbs_module_has_the_summary_as_its_help():
    """SUMMARY (the top-level help, shown without importing every verb) and each module's
    HELP (its own --help) say the same."""
    from importlib import import_module

    for verb in cli.COMMANDS:
        module = import_module(f"audit.commands.{verb}")
        assert cli.SUMMARY[verb] == module.HELP, verb
        assert callable(module.add_arguments) and callable(module.main)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["train", "--threads", "0", "--out", "{tmp}/run"],
            "argument --threads: 0 is outside 1..1024",
        ),
        (["train", "--out", "{tmp}/file/run"], "cannot create the run directory"),
        (["kernels", "--out", "{tmp}/file"], "cannot create the run directory"),
    ],
)
def test_train_and_kernels_bad_input_fails_before_torch_loads(tmp_path, args, message):
    (tmp_path / "file").write_text("not a folder")
    if args[0] == "train":
        args += ["--arch", "mlp", "--norm", "nd", "--dataset", "fashion-mnist", "--epochs", "1"]
    out = _run_audit(*[a.format(tmp=tmp_path) for a in args])
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert out.stdout.strip().endswith("NO_TORCH")
