"""Warm start loads the blessed model's weights only onto the transform graph they were trained on,
and otherwise trains from scratch and says why. Real Keras weights files and transform graph folders."""

import posixpath

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from models import warm_start

COLD, WARM = 300, 40


def _model(seed: int) -> tf.keras.Model:
    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input(shape=(3,), name="x")
    return tf.keras.Model(inputs, tf.keras.layers.Dense(2, name="out")(inputs))


def _graph(root, vocabulary: str) -> str:
    """A transform graph folder: what tf.Transform writes, with ``vocabulary`` as its one asset."""
    for part in warm_start.TRANSFORM_PARTS:
        (root / part).mkdir(parents=True)
    (root / "transform_fn" / "saved_model.pb").write_bytes(b"graph")
    (root / "transform_fn" / "assets").mkdir()
    (root / "transform_fn" / "assets" / "vocab_company").write_text(vocabulary)
    (root / "transformed_metadata" / "schema.pbtxt").write_text("feature {}")
    (root / "metadata" / "schema.pbtxt").write_text("feature {}")
    (root / ".temp_path").mkdir()  # tf.Transform's scratch: not part of the graph
    (root / ".temp_path" / "scratch").write_text("x")
    return str(root)


@pytest.fixture
def blessed(tmp_path):
    """A blessed model's export folder, with its weights and transform graph kept beside it."""
    serving = str(tmp_path / "model" / "Format-Serving")
    model = _model(seed=1)
    warm_start.save_weights(model, serving)
    warm_start.save_transform(tft.TFTransformOutput(_graph(tmp_path / "graph", "a\nb\n")), serving)
    return serving, model


def _args(tmp_path, base_model, transform_output, steps=WARM) -> FnArgs:
    return FnArgs(
        train_steps=COLD,
        custom_config={warm_start.WARM_START_STEPS: steps},
        base_model=base_model,
        transform_output=transform_output,
        model_run_dir=str(tmp_path / "model_run"),
    )


def test_the_kept_graph_is_a_copy_without_scratch(blessed, tmp_path):
    serving, _ = blessed
    kept = warm_start.transform_path(serving)
    assert kept == posixpath.join(str(tmp_path / "model"), warm_start.TRANSFORM_DIR)
    assert not (tmp_path / "model" / warm_start.TRANSFORM_DIR / ".temp_path").exists()
    assert warm_start.transform_digest(kept) == warm_start.transform_digest(str(tmp_path / "graph"))
    reordered = _graph(tmp_path / "other", "b\na\n")  # a re-analysis ranked the vocabulary otherwise
    assert warm_start.transform_digest(kept) != warm_start.transform_digest(reordered)


def test_a_retrain_on_the_same_graph_starts_from_the_blessed_weights(blessed, tmp_path):
    serving, trained = blessed
    model = _model(seed=2)
    begun = warm_start.start(model, _args(tmp_path, serving, _graph(tmp_path / "reused", "a\nb\n")))
    assert begun == warm_start.Start(
        WARM, True, f"warm start from the blessed model's weights ({WARM} steps)"
    )
    for got, expected in zip(model.get_weights(), trained.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)
    warm_start.write_report(_args(tmp_path, serving, None), begun)
    assert warm_start.read_report(str(tmp_path / "model_run")) == begun


def test_a_reanalyzed_window_trains_from_scratch(blessed, tmp_path):
    serving, _ = blessed
    model = _model(seed=2)
    before = model.get_weights()
    begun = warm_start.start(model, _args(tmp_path, serving, _graph(tmp_path / "analyzed", "b\na\n")))
    assert begun == warm_start.Start(
        COLD,
        False,
        f"trained from scratch ({COLD} steps): the window was analyzed afresh, and the blessed model's "
        "weights were trained on other vocabularies and scales",
    )
    for got, expected in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, expected)  # nothing was loaded


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("first run", "no blessed model yet"),
        ("warm start off", "warm start is off"),
        ("no weights", "the blessed model has no warm-start weights"),
        ("no graph", "the blessed model keeps no transform graph"),
        ("another architecture", "the blessed model's weights do not fit: "),
    ],
)
def test_otherwise_it_trains_from_scratch_and_says_why(blessed, tmp_path, case, why):
    serving, _ = blessed
    graph = _graph(tmp_path / "reused", "a\nb\n")
    args = _args(tmp_path, serving, graph)
    model = _model(seed=2)
    if case == "first run":
        args.base_model = None
    elif case == "warm start off":
        args.custom_config = {warm_start.WARM_START_STEPS: 0}
    elif case == "no weights":
        tf.io.gfile.remove(warm_start.weights_path(serving))
    elif case == "no graph":
        tf.io.gfile.rmtree(warm_start.transform_path(serving))
    else:
        inputs = tf.keras.Input(shape=(3,), name="x")
        model = tf.keras.Model(inputs, tf.keras.layers.Dense(5, name="out")(inputs))
    begun = warm_start.start(model, args)
    assert not begun.warm and begun.steps == COLD
    assert begun.reason.startswith(f"trained from scratch ({COLD} steps): {why}"), begun.reason
