"""What the pipeline hands a model's TFX user code, in one place (imports nothing).

The Transform's ``preprocessing_fn`` and the Trainer's ``run_fn`` both receive ``custom_config``: the
config file's own ``custom_config`` mapping plus the model settings below, so user code never repeats
the label, the task or the class names the config file already says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

BINARY = "binary_classification"
MULTICLASS = "multiclass_classification"
REGRESSION = "regression"
TASKS = (BINARY, MULTICLASS, REGRESSION)
CLASSIFICATION_TASKS = (BINARY, MULTICLASS)

# The custom_config keys the pipeline adds (they win over the user's own keys of the same name).
LABEL, LABEL_KEY, TASK, CLASSES = "label", "label_key", "task", "classes"
SETTINGS_KEYS = (LABEL, LABEL_KEY, TASK, CLASSES)

# What a plain JSON client sends to the raw-features signature for a missing optional value
# (TF Serving needs every input key in every instance): NaN for floats, -1 for integers, "" for strings.
MISSING_FLOAT = float("nan")
MISSING_INT = -1
MISSING_STRING = ""

# Signature names: a contract with the server, TFMA and the canary tooling.
SERVING_DEFAULT = "serving_default"
SERVING_RAW = "serving_raw"
TRANSFORM_FEATURES = "transform_features"
EVAL_EXAMPLES = "eval_examples"
PREDICTION_KEY = "prediction"


def transformed_name(key: str) -> str:
    """The name a transformed feature gets by default: the label ``species`` becomes ``species_xf``."""
    return f"{key}_xf"


@dataclass(frozen=True)
class ModelSettings:
    """The model settings of a config: the raw label column, the transformed label, task and classes.

    ``classes`` are the class names in index order (classification only): the label's index is what
    the model predicts, index 1 is the positive class of a binary classifier.
    """

    label: str
    label_key: str
    task: str
    classes: tuple[str, ...] = ()

    def to_custom_config(self, user: Mapping | None = None) -> dict:
        """The ``custom_config`` the pipeline passes to Transform and Trainer."""
        return {
            **(user or {}),
            LABEL: self.label,
            LABEL_KEY: self.label_key,
            TASK: self.task,
            CLASSES: list(self.classes),
        }

    @classmethod
    def from_custom_config(cls, custom_config: Mapping | None) -> ModelSettings:
        """The settings inside a component's ``custom_config``; a clear error when they are missing."""
        given = custom_config or {}
        missing = [key for key in (LABEL, LABEL_KEY, TASK) if not given.get(key)]
        if missing:
            raise ValueError(f"custom_config has no {missing}: run this code through the tfx-canary pipeline")
        classes: Sequence[str] = given.get(CLASSES) or ()
        return cls(given[LABEL], given[LABEL_KEY], given[TASK], tuple(str(c) for c in classes))
