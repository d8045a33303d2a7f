"""Helper of scripts/check_compat.sh: what an environment holds, and the markdown report of a run.

``python compat_report.py versions OUT [--pins FILE]`` runs inside an environment: the versions that matter
(and whether each ``name==version`` line of FILE is what is installed), ``pip check``, pip's machine-wide
constraints, as JSON in OUT. ``python compat_report.py report OUT RESULTS ENV...`` writes the markdown
report of the environments ENV from their folders under RESULTS (``versions.json``, ``outcomes.json`` from
the pytest plugin ``compat_outcomes``, ``run.txt`` from the script).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# Distributions reported for every environment; the first ones are the table's columns.
DISTRIBUTIONS = [
    "torch", "torchvision", "pytorch-lightning", "lightning", "opencv-python-headless", "numpy",
    "jsonargparse", "tensorboard", "typing-extensions", "google-crc32c", "wandb", "mlflow-skinny", "timm",
    "protobuf", "pytest",
]
CATEGORIES = ["passed", "failed", "error", "skipped", "xfailed", "xpassed"]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(path: Path) -> dict[str, str]:
    """The ``name==version`` lines of a constraints file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
        if match:
            pins[_normalize(match.group(1))] = match.group(2)
    return pins


def _pip_constraints() -> list[str]:
    """pip's constraint files from its configuration and ``PIP_CONSTRAINT``, with their requirement lines."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    paths: list[str] = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith("constraint"):
            paths += value.strip().strip("'\"").split()
    paths += os.environ.get("PIP_CONSTRAINT", "").split()
    described = []
    for path in dict.fromkeys(paths):
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError:
            described.append(f"{path} (unreadable)")
            continue
        wanted = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        described.append(f"{path}: {', '.join(wanted) or 'empty'}")
    return described


def versions(out: Path, pins_file: Path | None) -> None:
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "distributions": found,
    }
    try:
        import torch

        info["torch_build"] = torch.__version__
        info["cuda_available"] = bool(torch.cuda.is_available())
    except Exception as error:  # reported, not fatal: the test run shows what breaks
        info["torch_build"] = f"import failed: {error!r}"
    try:
        import cv2

        info["cv2"] = cv2.__version__
    except Exception as error:
        info["cv2"] = f"import failed: {error!r}"
    if pins_file is not None:
        installed = {_normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
        info["pins_file"] = str(pins_file)
        info["pin_mismatches"] = {
            name: {"pinned": version, "installed": installed.get(name)}
            for name, version in _pins(pins_file).items()
            if installed.get(name) != version
        }
        info["pins_count"] = len(_pins(pins_file))
    pip_check = [sys.executable, "-m", "pip", "check"]
    check = subprocess.run(pip_check, capture_output=True, text=True, check=False)
    info["pip_check"] = {"ok": check.returncode == 0, "output": (check.stdout + check.stderr).strip()}
    info["pip_constraints"] = _pip_constraints()
    out.write_text(json.dumps(info, indent=1), encoding="utf-8")


def _read_run(path: Path) -> dict[str, str]:
    run = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                run[key] = value
    return run


def _seconds(value: str | None) -> str:
    if not value:
        return "-"
    total = int(value)
    return f"{total} s" if total < 60 else f"{total // 60} min {total % 60:02d} s"


def _status(run: dict[str, str], info: dict[str, Any], outcomes: dict[str, Any] | None) -> tuple[bool, str]:
    if run.get("install") not in (None, "ok", "reused"):
        return False, f"install failed ({run.get('install')})"
    if info.get("pin_mismatches"):
        return False, "installed versions differ from the pins"
    if outcomes is None:
        return False, "no test outcomes (pytest did not finish)"
    if outcomes["exitstatus"] != 0:
        return False, f"pytest exit status {outcomes['exitstatus']}"
    return True, "passed"


def report(out: Path, results: Path, envs: list[str]) -> int:
    rows, sections, failed_envs = [], [], []
    for env in envs:
        folder = results / env
        run = _read_run(folder / "run.txt")
        info: dict[str, Any] = {}
        if (folder / "versions.json").exists():
            info = json.loads((folder / "versions.json").read_text(encoding="utf-8"))
        outcomes = None
        if (folder / "outcomes.json").exists():
            outcomes = json.loads((folder / "outcomes.json").read_text(encoding="utf-8"))
        records = outcomes["records"] if outcomes else []
        counts = Counter(record["category"] for record in records)
        ok, status = _status(run, info, outcomes)
        if not ok:
            failed_envs.append(env)
        dists = info.get("distributions", {})

        def version(name: str, dists: dict[str, str | None] = dists) -> str:
            return dists.get(name) or "-"

        if run.get("install") == "reused":
            build = f"reused (built in {_seconds(run.get('first_build_s'))} on {run.get('built_at', '?')})"
        else:
            build = _seconds(run.get("build_s"))
        tallies = [str(counts.get(category, 0)) for category in ("passed", "failed", "error", "skipped")]
        rows.append(
            f"| {env} | {info.get('python', '-')} | {version('torch')} | {version('torchvision')} | "
            f"{version('pytorch-lightning')} / {version('lightning')} | "
            f"{version('opencv-python-headless')} | "
            f"{version('numpy')} | {version('jsonargparse')} | {' | '.join(tallies)} | "
            f"{'passed' if ok else '**' + status + '**'} | {build} | {_seconds(run.get('test_s'))} |"
        )
        lines = [f"## {env}", ""]
        lines.append(f"- Interpreter: `{run.get('interpreter', '?')}` (Python {info.get('python', '?')}), "
                     f"environment `{run.get('env_dir', '?')}`")
        lines.append(f"- Installed with: `{run.get('install_command', '?')}`; "
                     f"built {run.get('built_at', '?')}")
        lines.append("- Versions: " + ", ".join(f"{name} {version(name)}" for name in DISTRIBUTIONS)
                     + f"; torch build {info.get('torch_build', '?')} (CUDA available: "
                     f"{info.get('cuda_available', '?')}), cv2 {info.get('cv2', '?')}")
        if "pin_mismatches" in info:
            mismatches = info["pin_mismatches"]
            if mismatches:
                listed = ", ".join(f"{name} pinned {v['pinned']}, installed {v['installed']}"
                                   for name, v in sorted(mismatches.items()))
                lines.append(f"- Pins of `{run.get('pins', '?')}`: **not all installed**: {listed}")
            else:
                lines.append(f"- Pins of `{run.get('pins', '?')}`: all {info.get('pins_count')} installed as "
                             "pinned")
        if info.get("pip_constraints"):
            lines.append("- pip's own constraints on this machine: " + "; ".join(info["pip_constraints"]))
        check = info.get("pip_check", {})
        if check:
            lines.append("- `pip check`: " + ("no broken requirements" if check.get("ok")
                                              else "**" + check.get("output", "").replace("\n", "; ") + "**"))
        tally = ", ".join(f"{counts[c]} {c}" for c in CATEGORIES if counts.get(c)) or "no test ran"
        lines.append(f"- Tests: `{run.get('pytest_command', '?')}`: {tally} ({status})")
        problems = [r for r in records if r["category"] in ("failed", "error", "xpassed")]
        if problems:
            lines += ["", "Failing:", ""]
            lines += [f"- `{r['nodeid']}` ({r['category']}, {r['when']}): {r.get('message', '')}"
                      for r in problems]
        skipped = [r for r in records if r["category"] in ("skipped", "xfailed")]
        if skipped:
            lines += ["", "Skipped:", ""]
            lines += [f"- `{r['nodeid']}`: {r.get('message', '')}" for r in skipped]
        lines += ["", f"Logs: `{run.get('install_log', '-')}`, `{run.get('pytest_log', '-')}`", ""]
        sections.append("\n".join(lines))

    meta = _read_run(results / "meta.txt")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = [
        "# cam_callback compatibility run",
        "",
        f"`{meta.get('command', 'scripts/check_compat.sh')}` on commit `{meta.get('commit', '?')}`"
        f"{' with uncommitted changes' if meta.get('dirty') == 'yes' else ''}, {when}, "
        f"{meta.get('cpus', '?')} CPU cores.",
        "",
        "| environment | Python | torch | torchvision | pytorch-lightning / lightning | OpenCV | numpy | "
        "jsonargparse | passed | failed | errors | skipped | result | build | tests |",
        "|---|---|---|---|---|---|---|---|---:|---:|---:|---:|---|---|---|",
        *rows,
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(head + sections), encoding="utf-8")
    return 1 if failed_envs else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("versions")
    cmd.add_argument("out", type=Path)
    cmd.add_argument("--pins", type=Path)
    cmd = commands.add_parser("report")
    cmd.add_argument("out", type=Path)
    cmd.add_argument("results", type=Path)
    cmd.add_argument("envs", nargs="+")
    args = parser.parse_args()
    if args.command == "versions":
        versions(args.out, args.pins)
        return 0
    return report(args.out, args.results, args.envs)


if __name__ == "__main__":
    sys.exit(main())
