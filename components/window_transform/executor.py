"""WindowTransform's executor: TFX's Transform executor, with the analyze datasets of a window split
by span and keyed by ``keys.dataset_key`` (so tf.Transform's analyzer cache hits across runs).

TFX 1.21's ``Executor.Do`` hands the work to a fresh ``TransformProcessor``, the class that lists the
datasets; ``Do`` here runs the stock ``Do`` with that class swapped for ``WindowTransformProcessor``.
Executors run one at a time in a process (LocalDagRunner, a Vertex/KFP container), so the swap is not
seen by another Transform.
"""

from __future__ import annotations

import logging
from typing import Any

from tensorflow_transform.beam import analyzer_cache
from tfx.components.transform import executor as transform_executor

from components.window_transform.keys import per_span

log = logging.getLogger(__name__)


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
        patterns, formats, keys = [], [], {}
        for pattern, file_format in zip(file_patterns, file_formats, strict=True):
            for span_pattern, key in per_span(pattern) or [(pattern, None)]:
                patterns.append(span_pattern)
                formats.append(file_format)
                if key is not None:
                    keys[span_pattern] = key
        datasets = super()._MakeDatasetList(patterns, formats, data_format, data_view_uri, *args, **kwargs)
        for dataset in datasets:
            if dataset.file_pattern in keys:
                dataset.dataset_key = analyzer_cache.DatasetKey(keys[dataset.file_pattern])
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
        stock = transform_executor.TransformProcessor
        transform_executor.TransformProcessor = WindowTransformProcessor
        try:
            super().Do(input_dict, output_dict, exec_properties)
        finally:
            transform_executor.TransformProcessor = stock
