"""The library route's example: stock TFX components plus the data gate, SafePusher and
ServingConfigGen, run for real (LocalDagRunner, Beam, MLMD) on the wine data and a scaffolded model."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest
from tfx import v1 as tfx

from models import contract
from release.config_store import parse_config
from release.serving_dir import list_versions
from scaffold.project import init_project

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _example_module():
    spec = importlib.util.spec_from_file_location(
        "library_pipeline", ROOT / "examples" / "library_pipeline.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wine_csv(path: Path, label=None) -> Path:
    from sklearn.datasets import load_wine

    wine = load_wine()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*(n.replace("/", "_") for n in wine.feature_names), "cultivar"])
        for x, y in zip(wine.data, wine.target, strict=True):
            writer.writerow([*(repr(float(v)) for v in x), label if label is not None else int(y)])
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("library")
    config = init_project(folder / "wine", _wine_csv(folder / "wine.csv"), "cultivar", contract.MULTICLASS)
    sys.path.insert(0, str(config.parent))
    yield config.parent
    sys.path.remove(str(config.parent))
    # the scaffolded package must not answer a later test's import of another `wine_model`
    for name in [name for name in sys.modules if name == "wine_model" or name.startswith("wine_model.")]:
        del sys.modules[name]


def _pipeline(project: Path, home: Path, data_root: Path):
    example = _example_module()
    settings = contract.ModelSettings("cultivar", "cultivar_xf", contract.MULTICLASS, ("0", "1", "2"))
    return example.create_pipeline(
        name="library-example",
        home=str(home),
        data_root=str(data_root),
        schema_file=str(project / "schema" / "schema.pbtxt"),
        preprocessing_fn="wine_model.preprocessing.preprocessing_fn",
        run_fn="wine_model.model.run_fn",
        eval_config=example.accuracy_gate("cultivar_xf", 0.5),
        model_name="wine",
        custom_config=settings.to_custom_config(),
        train_steps=60,
    )


def test_stock_components_plus_ours_push_a_listed_version(project, tmp_path):
    home = tmp_path / "home"
    tfx.orchestration.LocalDagRunner().run(_pipeline(project, home, project / "data" / "span-1"))
    [version] = list_versions(str(home / "serving" / "wine"))
    assert (home / "serving" / "wine" / str(version) / "saved_model.pb").is_file()
    assert (
        home / "serving" / "wine" / str(version) / "assets.extra" / "tf_serving_warmup_requests"
    ).is_file()
    models_config = home / "serving" / "models.config"
    config = parse_config(models_config.read_text(), str(models_config))
    [entry] = config.model_config_list.config
    assert entry.name == "wine" and list(entry.model_version_policy.specific.versions) == [version]


def test_the_data_gate_stops_a_span_that_breaks_the_schema(project, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    _wine_csv(bad / "data.csv", label=7)  # a class outside the label's domain (0..2)
    home = tmp_path / "home"
    tfx.orchestration.LocalDagRunner().run(_pipeline(project, home, bad))
    assert not (home / "serving").exists()  # nothing trained, nothing pushed
    assert not (home / "pipelines" / "library-example" / "Trainer").exists()
    assert (home / "pipelines" / "library-example" / "ExampleValidator").is_dir()
