"""BackfillSpans' executor: one output artifact per span, then the one Beam pass of ``ingest``."""

from __future__ import annotations

import copy
import json
import logging
import os
from typing import Any

import tensorflow as tf
from tfx import types
from tfx.components.example_gen import utils, write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.utils import io_utils, proto_utils

from components.window_ingest.ingest import (
    fill_empty_splits,
    find_span_files,
    ingest_and_summarize,
    slice_key,
    validate_span,
)

log = logging.getLogger(__name__)


def _span_artifact(template: types.Artifact, span: int, many: bool) -> types.Artifact:
    """The output artifact of one span: a sub-directory of the system's URI when there are several."""
    artifact = copy.deepcopy(template)
    if many:
        artifact.uri = os.path.join(template.uri, f"span-{span}")
    artifact.set_int_custom_property("span", span)
    return artifact


class Executor(base_beam_executor.BaseBeamExecutor):
    """Ingests, summarizes and validates every requested span; one artifact per span in each output."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        spans = sorted(set(json.loads(exec_properties["spans"])))
        if not spans:
            raise ValueError("BackfillSpans needs at least one span")
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties["input_config"], input_config)
        output_config = example_gen_pb2.Output()
        proto_utils.json_to_proto(exec_properties["output_config"], output_config)
        if len(input_config.splits) != 1 or not output_config.split_config.splits:
            raise ValueError("BackfillSpans needs one input pattern and hash-bucket output splits")
        split_names = [split.name for split in output_config.split_config.splits]
        pattern = input_config.splits[0].pattern
        files = [find_span_files(exec_properties["input_base"], pattern, span) for span in spans]

        outputs = {key: [] for key in ("examples", "statistics", "anomalies")}
        for key, artifacts in outputs.items():
            [template] = output_dict[key]
            for span in spans:
                artifact = _span_artifact(template, span, many=len(spans) > 1)
                artifact.split_names = artifact_utils.encode_split_names(split_names)
                artifacts.append(artifact)
        split_dirs, stats_dirs = {}, {}
        per_span = zip(files, outputs["examples"], outputs["statistics"], strict=True)
        for span_files, examples, statistics in per_span:
            examples.set_string_custom_property(utils.FINGERPRINT_PROPERTY_NAME, span_files.fingerprint)
            examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
            examples_utils.set_file_format(
                examples, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP)
            )
            for split in split_names:
                key = slice_key(span_files.span, split)
                split_dirs[key] = artifact_utils.get_split_uri([examples], split)
                stats_dirs[key] = artifact_utils.get_split_uri([statistics], split)
        for directory in [*split_dirs.values(), *stats_dirs.values()]:
            tf.io.gfile.makedirs(directory)

        log.info("Ingesting and summarizing spans %s in one Beam pass", spans)
        with self._make_beam_pipeline() as pipeline:
            ingest_and_summarize(pipeline, files, output_config.split_config, split_dirs, stats_dirs)
        fill_empty_splits(split_dirs, stats_dirs)

        schema = io_utils.SchemaReader().read(
            io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(input_dict["schema"]))
        )
        for span, anomalies in zip(spans, outputs["anomalies"], strict=True):
            anomalies.set_json_value_custom_property(
                "blessed", validate_span(span, split_names, stats_dirs, anomalies, schema)
            )
        for key, artifacts in outputs.items():
            output_dict[key][:] = artifacts
