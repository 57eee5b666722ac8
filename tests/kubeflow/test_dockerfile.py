"""The pipeline image: TFX's 1.21 image plus this package, and code that runs on its Python 3.10.

Docker cannot run here, so the Dockerfile is parsed and checked instruction by instruction.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import tfx.version

from tests.project import project_packages

ROOT = Path(__file__).resolve().parents[2]

# Names Python 3.11 added to the standard library; importing them breaks the 3.10 image.
PY311_ONLY = {
    "tomllib": None,
    "datetime": {"UTC"},
    "typing": {"Self", "LiteralString", "Never", "NotRequired", "Required", "assert_never", "reveal_type"},
    "enum": {"StrEnum", "verify", "EnumCheck", "ReprEnum"},
    "asyncio": {"TaskGroup", "timeout", "Runner"},
    "hashlib": {"file_digest"},
}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    text = re.sub(
        r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))
    )
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in text.splitlines()
        if line.strip()
    ]


def test_image_is_tfx_own_image_for_the_installed_tfx() -> None:
    steps = instructions(ROOT / "Dockerfile")
    assert steps[0] == ("FROM", f"gcr.io/tfx-oss-public/tfx:{tfx.version.__version__}")
    assert [kind for kind, _ in steps].count("FROM") == 1


def test_image_installs_this_package_from_setup_py_and_keeps_the_setup_file() -> None:
    steps = instructions(ROOT / "Dockerfile")
    workdir = next(args for kind, args in steps if kind == "WORKDIR")
    copies = [args.split() for kind, args in steps if kind == "COPY"]
    assert [".", workdir] in copies, "the whole build context (filtered by .dockerignore) goes to WORKDIR"
    run = " ".join(args for kind, args in steps if kind == "RUN")
    assert f"python -m pip install --no-cache-dir {workdir}" in run
    assert "-e " not in run, "an editable install would tie the image to the source folder"
    # The image proves the install worked: every package imports and the console script runs.
    imported = re.search(r'python -c "import ([^"]+)"', run).group(1)
    assert sorted(name.strip() for name in imported.split(",")) == sorted(project_packages())
    assert "tfx-canary --help" in run


def test_dockerignore_keeps_the_packages_and_drops_local_state() -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/") for pattern in patterns)

    for package in [*project_packages(), "setup.py"]:
        assert not ignored(package), f"{package} would be missing from the image"
    for local in (".venv", ".home", ".cache", ".git"):
        assert ignored(local), f"{local} would be copied into the image"


def test_project_code_parses_and_imports_on_python_3_10() -> None:
    checked = 0
    for package in project_packages():
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text()
            tree = ast.parse(source, filename=str(path), feature_version=(3, 10))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        assert PY311_ONLY.get(alias.name, ()) is not None, (
                            f"{path}: import {alias.name} (3.11+)"
                        )
                elif isinstance(node, ast.ImportFrom) and node.module in PY311_ONLY:
                    new = PY311_ONLY[node.module] or {"*"}
                    names = {alias.name for alias in node.names}
                    assert not (names & new or "*" in new), f"{path}: from {node.module} import {names & new}"
                elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    assert node.attr not in (PY311_ONLY.get(node.value.id) or set()), (
                        f"{path}:{node.lineno}: {node.value.id}.{node.attr} is Python 3.11+"
                    )
            checked += 1
    assert checked >= len(project_packages())


def test_image_installs_the_users_project_from_a_build_arg() -> None:
    from kubeflow.compile import IMAGE_USER_PROJECT_DIR

    steps = instructions(ROOT / "Dockerfile")
    assert ("ARG", 'USER_PROJECT=""') in steps
    run = " ".join(args for kind, args in steps if kind == "RUN")
    assert f'cp -r "/tfx-canary/$USER_PROJECT" {IMAGE_USER_PROJECT_DIR}' in run
    assert f"python -m pip install --no-cache-dir {IMAGE_USER_PROJECT_DIR}" in run
    # No project given: nothing of it is copied or installed.
    assert 'if [ -n "$USER_PROJECT" ]; then' in run


def test_image_steps_train_with_keras_2_as_the_local_run_does() -> None:
    """Each step's entrypoint imports TensorFlow in its own order; the ENV pins the Keras of the commands."""
    from tfx_canary.startup import KERAS_2_ENV

    steps = instructions(ROOT / "Dockerfile")
    env = " ".join(args for kind, args in steps if kind == "ENV").split()
    assert f"{KERAS_2_ENV}=1" in env
