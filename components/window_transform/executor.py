"""WindowTransform's executor: TFX's Transform executor that, on a warm retrain, reuses the blessed
model's transform graph, and otherwise analyzes the window with per-span analyzer-cache keys.

Reuse (``reuse.decide`` says when) copies the graph the blessed model was trained on and applies it to
every split in plain TensorFlow (``materialize``): no Beam pipeline, and the Trainer can warm-start
onto the same encoding. Otherwise the stock ``Do`` runs; when it writes an analyzer cache, the datasets to
analyze are split by span and keyed by ``keys.dataset_key`` (so tf.Transform's analyzer cache hits
across runs). TFX 1.21's ``Executor.Do`` hands that work to a fresh ``TransformProcessor``, the class
that lists the datasets; ``_analyze`` runs the stock ``Do`` with that class swapped for
``WindowTransformProcessor``. Executors run one at a time in a process (LocalDagRunner, a Vertex/KFP
container), so the swap is not seen by another Transform.
"""

from __future__ import annotations

import logging
from typing import Any

import tensorflow as tf
from tensorflow_transform.beam import analyzer_cache
from tfx.components.transform import executor as transform_executor
from tfx.components.transform import executor_utils
from tfx.components.util import examples_utils, tfxio_utils, udf_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs as keys
from tfx.utils import io_utils, path_utils

from components.window_transform import reuse
from components.window_transform.keys import per_span
from components.window_transform.materialize import materialize
from models import warm_start
from tfx_canary import beam_views

log = logging.getLogger(__name__)

BASE_MODEL = "base_model"  # input: the blessed model (its transform graph may be reused)
TRANSFORM_REUSES = "transform_reuses"  # parameter: retrains in a row that may reuse one analysis
REUSABLE_FILE_FORMAT = "tfrecords_gzip"  # what ``materialize`` reads and writes


class WindowTransformProcessor(transform_executor.TransformProcessor):
    """Per-span analyze datasets with stable keys; the datasets to transform stay one per split."""

    def Transform(self, inputs, outputs, status_file=None) -> None:
        # TFX lists the analyze datasets first, then the ones to transform (tfx 1.21 executor.py).
        self._analyze_list_pending = True
        super().Transform(inputs, outputs, status_file)

    def _MakeDatasetList(self, file_patterns, file_formats, data_format, data_view_uri, *args, **kwargs):
        if not getattr(self, "_analyze_list_pending", False):
            return super()._MakeDatasetList(
                file_patterns, file_formats, data_format, data_view_uri, *args, **kwargs
            )
        self._analyze_list_pending = False
        patterns, formats, keys_by_pattern = [], [], {}
        for pattern, file_format in zip(file_patterns, file_formats, strict=True):
            for span_pattern, key in per_span(pattern) or [(pattern, None)]:
                patterns.append(span_pattern)
                formats.append(file_format)
                if key is not None:
                    keys_by_pattern[span_pattern] = key
        datasets = super()._MakeDatasetList(patterns, formats, data_format, data_view_uri, *args, **kwargs)
        for dataset in datasets:
            if dataset.file_pattern in keys_by_pattern:
                dataset.dataset_key = analyzer_cache.DatasetKey(keys_by_pattern[dataset.file_pattern])
        datasets.sort(key=lambda dataset: dataset.dataset_key)
        for index, dataset in enumerate(datasets):
            dataset.index = index
        return datasets

    def _JoinUncachedDatasets(self, analyze_data_list, optimized_analyze_data_dict, *args, **kwargs):
        """Say which spans came from the analyzer cache (TFX marks them with no data to read)."""
        cached = sorted(k.key for k, dataset in optimized_analyze_data_dict.items() if dataset is None)
        analyzed = sorted(k.key for k, dataset in optimized_analyze_data_dict.items() if dataset is not None)
        log.info(
            "Transform analyzer cache: %d dataset(s) cached %s, %d analyzed %s",
            len(cached),
            cached,
            len(analyzed),
            analyzed,
        )
        return super()._JoinUncachedDatasets(analyze_data_list, optimized_analyze_data_dict, *args, **kwargs)


class Executor(transform_executor.Executor):
    def Do(
        self, input_dict: dict[str, list[Any]], output_dict: dict[str, list[Any]], exec_properties: dict
    ) -> None:
        beam_views.install()  # also where this runs alone (a Vertex step), not under our local runner
        transform_dir = artifact_utils.get_single_uri(output_dict[keys.TRANSFORM_GRAPH_KEY])
        base = _base_transform(input_dict)
        reusable, analysis = reuse.decide(
            base, _fingerprint(input_dict, exec_properties), int(exec_properties.get(TRANSFORM_REUSES) or 0)
        )
        if reusable and (why_not := _cannot_reuse(input_dict, exec_properties)):
            reusable, analysis = (
                False,
                reuse.Analysis(analysis.fingerprint, 0, f"analyzed the window: {why_not}"),
            )
        log.info("Transform %s", analysis.reason)
        if reusable:
            self._apply(base, input_dict, output_dict, exec_properties)
        else:
            self._analyze(input_dict, output_dict, exec_properties)
        reuse.write(transform_dir, analysis)

    def _analyze(self, input_dict, output_dict, exec_properties) -> None:
        """TFX's Transform; per-span analyze datasets when it writes an analyzer cache (for later runs)."""
        if not output_dict.get(keys.UPDATED_ANALYZER_CACHE_KEY):
            super().Do(input_dict, output_dict, exec_properties)
            return
        stock = transform_executor.TransformProcessor
        transform_executor.TransformProcessor = WindowTransformProcessor
        try:
            super().Do(input_dict, output_dict, exec_properties)
        finally:
            transform_executor.TransformProcessor = stock

    def _apply(self, base: str, input_dict, output_dict, exec_properties) -> None:
        """The blessed model's transform graph as this run's, applied to every split to transform."""
        self._log_startup(input_dict, output_dict, exec_properties)
        transform_dir = artifact_utils.get_single_uri(output_dict[keys.TRANSFORM_GRAPH_KEY])
        warm_start.copy_transform(base, transform_dir)
        if output_dict.get(keys.TRANSFORMED_EXAMPLES_KEY):
            examples = input_dict[keys.EXAMPLES_KEY]
            executor_utils.MatchNumberOfTransformedExamplesArtifacts(input_dict, output_dict)
            transformed = output_dict[keys.TRANSFORMED_EXAMPLES_KEY]
            splits = executor_utils.ResolveSplitsConfig(exec_properties.get(keys.SPLITS_CONFIG_KEY), examples)
            executor_utils.SetSplitNames(splits.transform, transformed)
            raw_patterns = [
                io_utils.all_files_pattern(uri)
                for split in splits.transform
                for uri in artifact_utils.get_split_uris(examples, split)
            ]
            targets = list(zip(raw_patterns, executor_utils.GetSplitPaths(transformed), strict=True))
            for (pattern, _), count in zip(targets, materialize(transform_dir, targets), strict=True):
                log.info("Transform applied the reused graph to %d examples of %s", count, pattern)
        cache, updated_cache = (
            input_dict.get(keys.ANALYZER_CACHE_KEY),
            output_dict.get(keys.UPDATED_ANALYZER_CACHE_KEY),
        )
        if cache and updated_cache:  # nothing was analyzed: the next analysis starts from the same cache
            warm_start.copy_tree(
                artifact_utils.get_single_uri(cache), artifact_utils.get_single_uri(updated_cache)
            )


def _base_transform(input_dict) -> str | None:
    """Where the blessed model keeps the transform graph it was trained on (None: no blessed model)."""
    models = input_dict.get(BASE_MODEL)
    if not models:
        return None
    return warm_start.transform_path(path_utils.serving_model_path(models[-1].uri))


def _fingerprint(input_dict, exec_properties) -> str:
    if _module_file(exec_properties):
        return ""  # never reused (``_cannot_reuse``); TFX installs such code only inside its own Do
    preprocessing_fn = udf_utils.get_fn(exec_properties, keys.PREPROCESSING_FN_KEY)
    schema_file = io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(input_dict[keys.SCHEMA_KEY]))
    with tf.io.gfile.GFile(schema_file, "rb") as handle:
        schema = handle.read()
    return reuse.fingerprint(preprocessing_fn, exec_properties.get(keys.CUSTOM_CONFIG_KEY), schema)


def _cannot_reuse(input_dict, exec_properties) -> str | None:
    """Why ``materialize`` cannot stand in for the stock Transform here (None: it can)."""
    if _module_file(exec_properties):
        return "the preprocessing code is a module file (reuse needs preprocessing_fn as a dotted path)"
    if not bool(exec_properties.get(keys.DISABLE_STATISTICS_KEY, 0)):
        return "pre/post-transform statistics are asked for (disable_statistics is off)"
    examples = input_dict[keys.EXAMPLES_KEY]
    payload_format, _ = tfxio_utils.resolve_payload_format_and_data_view_uri(examples)
    if payload_format != example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE:
        return f"the examples are {example_gen_pb2.PayloadFormat.Name(payload_format)}, not tf.Examples"
    formats = {examples_utils.get_file_format(artifact) for artifact in examples}
    if formats != {REUSABLE_FILE_FORMAT}:
        return f"the examples are stored as {sorted(formats)}, not {REUSABLE_FILE_FORMAT}"
    return None


def _module_file(exec_properties) -> bool:
    return bool(exec_properties.get(keys.MODULE_FILE_KEY) or exec_properties.get(keys.MODULE_PATH_KEY))
