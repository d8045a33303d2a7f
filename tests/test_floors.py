"""The package's floors: each subpackage imports only from the floors below it (read from the source)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cam_callback"

# What each floor may import from the package (besides itself).
ALLOWED = {
    "core": set(),
    "capture": {"core"},
    "render": {"core"},
    "sinks": {"core", "render"},
    "callback": {"core", "capture", "render", "sinks"},
    "demo": {"core", "capture", "render", "sinks", "callback"},
}
LIGHTNING = {"lightning", "pytorch_lightning", "lightning_fabric"}
# Outside packages a floor must not import (torch and the standard library are always allowed).
FORBIDDEN = {
    "core": LIGHTNING | {"cv2", "tensorboard", "torchvision", "numpy"},
    "capture": LIGHTNING | {"cv2", "tensorboard", "torchvision"},
    "render": LIGHTNING | {"tensorboard"},
    "sinks": LIGHTNING,
    "callback": set(),
    "demo": set(),
}
LIGHTNING_SHELLS = {"callback/pl.py", "callback/lightning.py"}


def _imports(path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved inside the package)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.append(node.module)
    return names


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if len(p.relative_to(PACKAGE).parts) == 2)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_floor_imports_only_from_below(path: Path):
    floor = path.relative_to(PACKAGE).parts[0]
    relative = str(path.relative_to(PACKAGE))
    for name in _imports(path):
        top, *rest = name.split(".")
        if top == "cam_callback":
            assert rest, f"{relative} imports the top-level package"
            assert rest[0] == floor or rest[0] in ALLOWED[floor], f"{relative} imports {name}"
        elif top in LIGHTNING and floor == "callback":
            assert relative in LIGHTNING_SHELLS, f"{relative} imports {name}: only the shells may"
        else:
            assert top not in FORBIDDEN[floor], f"{relative} imports {name}"


# Loose top-level modules: the package, its entry point, and public aliases that only re-export a floor.
ALIASES = {"lightning.py": "callback", "targets.py": "core"}


def test_every_module_sits_in_a_floor():
    loose = {p.name for p in PACKAGE.glob("*.py")}
    assert loose == {"__init__.py", "__main__.py", *ALIASES}
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ALLOWED)


def _starts_the_cli(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` holding only ``from .demo.<module> import main`` and ``main()``.

    What ``__main__.py`` does for ``python -m cam_callback``, for an alias run as ``python -m``: the demo is
    imported only when the module runs as a script, so importing the alias still loads its floor alone.
    """
    if not (isinstance(node, ast.If) and not node.orelse and isinstance(node.test, ast.Compare)):
        return False
    test = node.test
    if not (
        isinstance(test.left, ast.Name) and test.left.id == "__name__" and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq) and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value == "__main__"
    ):
        return False
    if len(node.body) != 2:
        return False
    imported, called = node.body
    return (
        isinstance(imported, ast.ImportFrom) and imported.level == 1
        and (imported.module or "").split(".")[0] == "demo"
        and [(a.name, a.asname) for a in imported.names] == [("main", None)]
        and isinstance(called, ast.Expr) and isinstance(called.value, ast.Call)
        and isinstance(called.value.func, ast.Name) and called.value.func.id == "main"
        and not called.value.args and not called.value.keywords
    )


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_public_aliases_only_re_export_their_floor(alias: str):
    """An alias re-exports its floor; it may also start the demo's command line when run as a script."""
    tree = ast.parse((PACKAGE / alias).read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    for index, node in enumerate(body):
        if isinstance(node, ast.ImportFrom):
            if node.module == "__future__":
                continue
            assert node.level == 1 and (node.module or "").split(".")[0] == ALIASES[alias], ast.dump(node)
        elif isinstance(node, ast.If):
            assert index == len(body) - 1, f"{alias}: the command-line guard must come last"
            assert _starts_the_cli(node), f"{alias} does more than start the CLI: {ast.dump(node)[:80]}"
        else:
            assert isinstance(node, ast.Assign), f"{alias} does more than re-export: {ast.dump(node)[:80]}"


def test_the_cli_guard_rule_rejects_anything_else():
    allowed = 'if __name__ == "__main__":\n    from .demo.lightning import main\n\n    main()\n'
    assert _starts_the_cli(ast.parse(allowed).body[0])
    for wrong in (
        'if __name__ != "__main__":\n    from .demo.lightning import main\n    main()\n',
        'if __name__ == "__main__":\n    from .capture import main\n    main()\n',
        'if __name__ == "__main__":\n    from .demo.lightning import main\n    main()\n    main()\n',
        'if __name__ == "__main__":\n    from .demo.lightning import main, run\n    run()\n',
        'if __name__ == "__main__":\n    from .demo.lightning import main\n    main(1)\n',
        'if __name__ == "__main__":\n    from .demo.lightning import main\n    main()\nelse:\n    pass\n',
        "if True:\n    from .demo.lightning import main\n    main()\n",
    ):
        assert not _starts_the_cli(ast.parse(wrong).body[0]), wrong


def test_importing_an_alias_loads_its_floor_and_not_the_demo():
    code = (
        "import sys; import cam_callback.lightning, cam_callback.targets; "
        "print(sorted(m for m in sys.modules if m.startswith('cam_callback.demo')))"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_importing_the_functional_core_imports_no_lightning_opencv_or_tensorboard():
    code = (
        "import sys; import cam_callback; "
        "from cam_callback import compute_cam, CAMEngine, CAMConfigurationError, ScoreTarget; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'lightning', 'pytorch_lightning', 'cv2', 'tensorboard', 'torchvision'}))"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_no_method_kind_is_compared_as_a_string():
    """Methods are typed (LayerMethod, PerturbationMethod, GuidedMethod): nothing reads a `kind` string."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        assert "kind" not in names, f"{path.relative_to(PACKAGE)} reads a `.kind` attribute"


TESTS = PACKAGE.parent / "tests"
# Modules whose tests sit in one file with their twin's, and why.
SHARED_TEST_FILES = {
    "callback/pl.py": "callback/test_namespaces.py",  # one parametrised file runs both shells
    "callback/lightning.py": "callback/test_namespaces.py",
}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_has_its_test_file(path: Path):
    """Tests mirror the package: ``<floor>/<m>.py`` is tested by ``tests/<floor>/test_<m>.py``."""
    relative = path.relative_to(PACKAGE)
    if relative.name == "__init__.py":
        return
    expected = SHARED_TEST_FILES.get(str(relative), f"{relative.parent}/test_{relative.name}")
    assert (TESTS / expected).is_file(), f"{relative} has no {expected}"


def test_the_public_names_are_few_and_importable_from_the_top_level():
    import cam_callback

    assert sorted(cam_callback.__all__) == [
        "AttentionWarning", "CAMConfigurationError", "CAMEngine", "CAMResult", "GradCAMCallback",
        "ScoreTarget", "compute_cam", "method_names",
    ]
    for name in cam_callback.__all__:
        assert getattr(cam_callback, name) is not None
