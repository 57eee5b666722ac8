"""WindowIngest's executor: the latest K spans ingested, summarized and validated in one Beam pass; the
clean ones merged into one Examples artifact, the others left out with their reasons. With a
``span_cache`` (the pipeline passes one), spans whose files an earlier run ingested are copied from it
and only new or changed spans go through Beam; every span is validated against the schema each run.

Outputs (one artifact each, as every runner, Vertex included, passes them):

- ``examples``: the clean spans of the window, ``Split-<split>/span-<N>-<file>``; custom properties
  ``span`` (the newest span present), ``spans`` (those merged), ``left_out`` ({span: reasons}),
  ``data_fingerprint`` (equal exactly when the window holds the same span files) and ``trained_as``
  (the version in ``serving_model_dir`` trained on exactly this window, 0 if none: nothing new to train);
- ``statistics``: TFDV statistics per span under ``span-<N>/Split-<split>/``, and the newest span's at
  the top, where StatisticsGen puts them;
- ``anomalies``: the same layout of ExampleValidator's files; the top-level ``blessed`` flags per split
  are the newest span's, which gate the run (new data that is not clean trains nothing).
"""

from __future__ import annotations

import json
import logging
import posixpath
from typing import Any

import tensorflow as tf
from tfx import types
from tfx.components.example_gen import utils, write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils, proto_utils

from components.safe_pusher.publish import find_version_trained_on
from components.window_ingest.ingest import (
    ANOMALIES_FILE,
    STATISTICS_FILE,
    fill_empty_splits,
    find_span_files,
    ingest_and_summarize,
    slice_key,
    validate_span,
)
from components.window_ingest.span_cache import SpanCache, entry_key
from components.window_ingest.window import (
    DATA_FINGERPRINT,
    TRAINED_AS,
    anomaly_words,
    data_fingerprint,
    latest,
    merge_into,
    present_spans,
    write_manifest,
)
from tfx_canary import beam_views

log = logging.getLogger(__name__)

STAGING_DIR = ".staging"  # per-span split files before the clean ones are moved into the window


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        beam_views.install()  # also where this runs alone (a Vertex step), not under our local runner
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties["input_config"], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties["output_config"], output_config)
        if len(input_config.splits) != 1 or not output_config.split_config.splits:
            raise ValueError("WindowIngest needs one input pattern and hash-bucket output splits")
        input_base = exec_properties["input_base"]
        pattern = input_config.splits[0].pattern
        present = present_spans(input_base, pattern)
        if not present:
            raise ValueError(f"no span matching {pattern!r} under {input_base}")
        spans = latest(present, int(exec_properties["num_spans"]))
        splits = [split.name for split in output_config.split_config.splits]
        left_out: dict[str, list[str]] = {}
        files = []
        for span in spans:
            try:
                files.append(find_span_files(input_base, pattern, span))
            except ValueError as error:  # no rows, an empty file, files that disagree on the header
                left_out[str(span)] = [str(error)]
        readable = [f.span for f in files]
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        statistics = artifact_utils.get_single_instance(output_dict["statistics"])
        anomalies = artifact_utils.get_single_instance(output_dict["anomalies"])

        staging = posixpath.join(examples.uri, STAGING_DIR)
        split_dirs = {
            (s, split): posixpath.join(staging, f"span-{s}", f"Split-{split}")
            for s in readable
            for split in splits
        }
        stats_dirs = {
            slice_key(s, split): posixpath.join(statistics.uri, f"span-{s}", f"Split-{split}")
            for s in readable
            for split in splits
        }
        by_slice = {slice_key(s, split): directory for (s, split), directory in split_dirs.items()}
        for directory in [*by_slice.values(), *stats_dirs.values()]:
            tf.io.gfile.makedirs(directory)
        cache = SpanCache(exec_properties["span_cache"]) if exec_properties.get("span_cache") else None
        keys = {f.span: entry_key(f.span, f.fingerprint, output_config.split_config) for f in files}
        folders = {
            s: {split: (split_dirs[(s, split)], stats_dirs[slice_key(s, split)]) for split in splits}
            for s in readable
        }
        reused = [s for s in readable if cache is not None and cache.restore(keys[s], folders[s])]
        new = [f for f in files if f.span not in reused]
        ingested = [f.span for f in new]
        if new:
            log.info("Ingesting, summarizing and validating spans %s in one Beam pass", ingested)
            with self._make_beam_pipeline() as pipeline:
                ingest_and_summarize(pipeline, new, output_config.split_config, by_slice, stats_dirs)
            fill_empty_splits(by_slice, stats_dirs)
        if cache is not None:
            for f in new:
                cache.store(keys[f.span], folders[f.span])
            cache.keep_only(set(keys.values()))
            log.info("Span cache: %d reused %s, %d ingested %s", len(reused), reused, len(ingested), ingested)

        schema = io_utils.SchemaReader().read(
            io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(input_dict["schema"]))
        )
        newest_blessed = {split: 0 for split in splits}  # unless the newest span is read and clean
        for span in readable:
            per_span = standard_artifacts.ExampleAnomalies()
            per_span.uri = posixpath.join(anomalies.uri, f"span-{span}")
            per_span.split_names = artifact_utils.encode_split_names(splits)
            blessed = validate_span(span, splits, stats_dirs, per_span, schema)
            if span == spans[-1]:
                newest_blessed = blessed
            if not all(blessed.values()):
                left_out[str(span)] = _reasons(per_span, splits)
        clean = [s for s in readable if str(s) not in left_out]
        merge_into(split_dirs, clean, splits, examples.uri)
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        if spans[-1] in readable:
            _copy_newest(statistics.uri, anomalies.uri, spans[-1], splits)

        fingerprints = {f.span: f.fingerprint for f in files if f.span in clean}
        for artifact in (examples, statistics, anomalies):
            artifact.split_names = artifact_utils.encode_split_names(splits)
            artifact.set_int_custom_property("span", spans[-1])
        examples.set_string_custom_property("spans", json.dumps(clean))
        examples.set_string_custom_property("left_out", json.dumps(left_out, sort_keys=True))
        write_manifest(examples.uri, fingerprints)
        fingerprint = data_fingerprint(fingerprints)
        examples.set_string_custom_property(DATA_FINGERPRINT, fingerprint)
        served = exec_properties.get("serving_model_dir") or ""
        trained_as = (
            find_version_trained_on({"fingerprint": fingerprint}, served) if served and clean else None
        )
        examples.set_int_custom_property(TRAINED_AS, trained_as or 0)
        if files and files[-1].span == spans[-1]:
            examples.set_string_custom_property(utils.FINGERPRINT_PROPERTY_NAME, files[-1].fingerprint)
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP)
        )
        anomalies.set_json_value_custom_property("blessed", newest_blessed)
        anomalies.set_string_custom_property("left_out", json.dumps(left_out, sort_keys=True))
        log.info("Window: spans %s merged; left out: %s", clean, left_out or "none")


def _reasons(per_span: types.Artifact, splits: list[str]) -> list[str]:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    words: list[str] = []
    for split in splits:
        found = anomalies_pb2.Anomalies()
        path = posixpath.join(artifact_utils.get_split_uri([per_span], split), ANOMALIES_FILE)
        with tf.io.gfile.GFile(path, "rb") as handle:
            found.ParseFromString(handle.read())
        words += [f"{split}: {word}" for word in anomaly_words(found)]
    return words


def _copy_newest(statistics_uri: str, anomalies_uri: str, newest: int, splits: list[str]) -> None:
    """The newest span's statistics and anomalies also where StatisticsGen and ExampleValidator put them."""
    for root, name in ((statistics_uri, STATISTICS_FILE), (anomalies_uri, ANOMALIES_FILE)):
        for split in splits:
            target = posixpath.join(root, f"Split-{split}")
            tf.io.gfile.makedirs(target)
            source = posixpath.join(root, f"span-{newest}", f"Split-{split}", name)
            tf.io.gfile.copy(source, posixpath.join(target, name), overwrite=True)
