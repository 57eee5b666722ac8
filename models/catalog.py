"""The models this project ships, in one list: name, task, label, and where their TFX user code is.

``PipelineConfig`` validates ``model`` against it, the eval config takes the label from it, and the CLI
offers its names as choices. It imports nothing heavy, so ``tfx-canary --help`` stays fast; the feature
lists of each model live in ``models.features``.
"""

from __future__ import annotations

from dataclasses import dataclass

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass(frozen=True)
class CatalogModel:
    name: str
    task: str  # CLASSIFICATION or REGRESSION
    label_key: str  # the transformed label feature the Trainer and TFMA read
    description: str
    preprocessing_fn: str = "models.preprocessing.preprocessing_fn"  # dotted path, as TFX takes it
    run_fn: str = "models.model.run_fn"


MODELS: dict[str, CatalogModel] = {
    m.name: m
    for m in (
        CatalogModel(
            "taxi_tips", CLASSIFICATION, "big_tipper_xf", "is the tip more than 20% of the fare? (taxi data)"
        ),
        CatalogModel("taxi_fare", REGRESSION, "fare_label_xf", "the fare in dollars (taxi data)"),
    )
}
DEFAULT_MODEL = "taxi_tips"


def catalog_model(name: str) -> CatalogModel:
    """The catalog entry of ``name``; a clear error naming the known models otherwise."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name]
