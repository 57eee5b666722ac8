"""The layout's dependency rules: each stage imports only what sits before it in the flow.

data -> pipeline (+ components) -> push -> release (config) -> serving (model server) -> rollout
(router, controller). Every ``import`` in the product packages is read with ``ast`` (function-level
imports too), so a forbidden one fails here with its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.project import project_packages

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = tuple(project_packages())
# package -> project modules it must not import ("a.b" also forbids "a.b.c"; "a" forbids all of a).
ENTRY_POINTS = ("tfx_canary.cli", "tfx_canary.demo")
FORBIDDEN = {
    # The embedded model server stands alone: only its own modules and the shared error types.
    "serving": (
        *("release", "rollout", "pipeline", "components", "scheduler", "kubeflow", "models", "fixtures"),
        "observe",
        *(*ENTRY_POINTS, "tfx_canary.home", "tfx_canary.logs", "tfx_canary.options"),
    ),
    # The release logic needs from the server only TF Serving's own file names.
    "release": (
        *("pipeline", "components", "rollout", "scheduler", "kubeflow", "models", "fixtures", *ENTRY_POINTS),
        "observe",
        *("serving.server", "serving.manager", "serving.rest", "serving.grpc_service"),
    ),
    "rollout": (
        "pipeline",
        "components",
        "scheduler",
        "kubeflow",
        "models",
        "fixtures",
        "serving",
        "observe",
        *ENTRY_POINTS,
    ),
    "components": ("pipeline", "rollout", "scheduler", "kubeflow", "fixtures", *ENTRY_POINTS),
    "pipeline": ("rollout", "scheduler", "kubeflow", "fixtures", "serving", *ENTRY_POINTS),
    "scheduler": ("components", "rollout", "kubeflow", "fixtures", "serving", *ENTRY_POINTS),
    "kubeflow": ("rollout", "fixtures", "serving", "components", *ENTRY_POINTS),
    "models": tuple(p for p in PACKAGES if p != "models"),
    # Scaffolding writes a project for the pipeline; it knows nothing of what comes after training.
    "scaffold": (
        "components",
        "release",
        "serving",
        "rollout",
        "scheduler",
        "kubeflow",
        "fixtures",
        *ENTRY_POINTS,
    ),
    "fixtures": ("components", "rollout", "scheduler", "kubeflow", *ENTRY_POINTS),
    # Looking at a release reads what the release record holds, never the router or the controller.
    "observe": (
        "pipeline",
        "components",
        "rollout",
        "scheduler",
        "kubeflow",
        "models",
        "fixtures",
        "serving",
        *ENTRY_POINTS,
    ),
}
# The foundation every stage may use imports nothing of the project.
LEAVES = (
    "tfx_canary.beam_views",
    "tfx_canary.errors",
    "tfx_canary.home",
    "tfx_canary.logs",
    "tfx_canary.process",
    "tfx_canary.signals",
    "tfx_canary.startup",
    "serving.paths",
    "models.catalog",
    "models.contract",
)


def absolute_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in ``path``; ``from a import b`` gives ``a`` and ``a.b``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of a project package in ``path``."""
    ours = (*PACKAGES, "tests", "benchmarks")
    return [(line, name) for line, name in absolute_imports(path) if name.split(".")[0] in ours]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _matches(module: str, rule: str) -> bool:
    return module == rule or module.startswith(rule + ".")


@pytest.mark.parametrize("package", PACKAGES)
def test_each_stage_imports_only_what_it_may(package: str) -> None:
    violations = []
    for path in sorted((ROOT / package).rglob("*.py")):
        name = module_name(path)
        for line, module in project_imports(path):
            if module.split(".")[0] in ("tests", "benchmarks"):
                violations.append(f"{path.relative_to(ROOT)}:{line}: product code imports {module}")
            for rule in FORBIDDEN.get(package, ()):
                if _matches(module, rule):
                    violations.append(f"{path.relative_to(ROOT)}:{line}: {package} must not import {module}")
            if name in LEAVES and module.split(".")[0] in PACKAGES and not _matches(module, name):
                violations.append(f"{path.relative_to(ROOT)}:{line}: {name} is a leaf but imports {module}")
    assert not violations, "\n".join(violations)


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    planted = tmp_path / "router.py"
    planted.write_text("def f():\n    from pipeline.config import PipelineConfig\n")
    [(line, module)] = [(n, m) for n, m in project_imports(planted) if m == "pipeline.config"]
    assert line == 2 and any(_matches(module, rule) for rule in FORBIDDEN["rollout"])


def test_every_package_says_which_stage_it_is() -> None:
    for package in PACKAGES:
        for init in (ROOT / package).rglob("__init__.py"):
            doc = ast.get_docstring(ast.parse(init.read_text()))
            assert doc and len(doc) > 40, f"{init.relative_to(ROOT)} needs a docstring saying what it holds"


# What a pipeline run imports. ``tfx.v1`` imports TFX's Google Cloud extensions (the aiplatform SDK):
# 2.4 s of every run's start-up (``pipeline/pipeline.py``), so these use TFX's own modules.
RUN_PACKAGES = ("pipeline", "components", "models", "scheduler")


def tfx_v1_imports(path: Path) -> list[int]:
    """Lines of ``path`` that import ``tfx.v1`` (``import tfx.v1...`` or ``from tfx import v1``)."""
    return sorted({line for line, module in absolute_imports(path) if _matches(module, "tfx.v1")})


def test_a_pipeline_run_does_not_import_tfx_v1(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("from tfx import v1 as tfx\nimport tfx.v1.dsl\nfrom tfx.v1.proto import TrainArgs\n")
    assert tfx_v1_imports(planted) == [1, 2, 3]  # the check sees each form
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in RUN_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line in tfx_v1_imports(path)
    ]
    assert not found, f"import TFX's own modules instead of tfx.v1 (2.4 s of start-up): {found}"
