"""LoadCheck's executor: build the requests, run ``check.check_model``, write an InfraBlessing.

The blessing folder holds what TFX's InfraValidator writes (``INFRA_BLESSED`` or ``INFRA_NOT_BLESSED``,
custom property ``blessed``) plus ``tf_serving_warmup_requests`` (the requests replayed, which the pusher
ships as the version's warm-up file), ``load_check.json`` (every latency) and ``server.log``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

import tensorflow as tf
from tfx import types
from tfx.components.util import model_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.load_check import early
from components.load_check.check import Budget, Report, check_model, check_on
from components.load_check.requests import build_requests, to_warmup_file
from release.serving_dir import MAX_WARMUP_RECORDS, WARMUP_FILE
from tfx_canary.errors import ConfigError

log = logging.getLogger(__name__)

BLESSED_KEY = "blessed"  # what TFX's Pusher reads
REASON_KEY = "load_check_reason"
REPORT_FILE = "load_check.json"
SERVER_LOG_FILE = "server.log"
WARMUP_BLESSING_FILE = os.path.basename(WARMUP_FILE)


class LoadCheckExecutor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        count = int(exec_properties["warmup_examples"])
        if not 1 <= count <= MAX_WARMUP_RECORDS:
            raise ConfigError(f"warmup_examples {count} is out of range [1, {MAX_WARMUP_RECORDS}]")
        budget = Budget(
            latency_ms=float(exec_properties["latency_budget_ms"]),
            timed_requests=int(exec_properties.get("timed_requests") or Budget.timed_requests),
        )
        [evaluated] = input_dict.get("model_blessing") or [None]
        if evaluated is not None and not model_utils.is_model_blessed(evaluated):
            _mark(
                blessing,
                Report(False, "not checked: the Evaluator did not bless the model", budget.latency_ms),
            )
            return
        model = artifact_utils.get_single_instance(input_dict["model"])
        source = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        requests = build_requests(examples.uri, count, source)
        if not requests:
            raise ValueError(f"no request could be built from the eval examples under {examples.uri}")
        with tf.io.gfile.GFile(os.path.join(blessing.uri, WARMUP_BLESSING_FILE), "wb") as handle:
            handle.write(to_warmup_file(requests))
        with tempfile.TemporaryDirectory(prefix="tfx-canary-load-check-log-") as scratch:
            server_log = os.path.join(scratch, SERVER_LOG_FILE)  # local: on Vertex the artifact is on gs://
            try:
                report = _check(source, exec_properties["model_name"], requests, budget, server_log)
            finally:
                if os.path.exists(server_log):
                    tf.io.gfile.copy(server_log, os.path.join(blessing.uri, SERVER_LOG_FILE), overwrite=True)
        _mark(blessing, report)


def _check(source: str, model_name: str, requests: list, budget: Budget, server_log: str) -> Report:
    """On the server the runner started early (``early``) if there is one, else on a new child."""
    starting = early.take()
    if starting is None:
        return check_model(source, model_name, requests, budget, server_log)
    try:
        return check_on(starting.ready(budget.start_timeout_s), source, model_name, requests, budget)
    finally:
        shutil.copyfile(starting.log_path, server_log)


def _mark(blessing: types.Artifact, report: Report) -> None:
    marker = "INFRA_BLESSED" if report.blessed else "INFRA_NOT_BLESSED"
    with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), "w") as handle:
        handle.write("")
    with tf.io.gfile.GFile(os.path.join(blessing.uri, REPORT_FILE), "w") as handle:
        handle.write(report.to_json())
    blessing.set_int_custom_property(BLESSED_KEY, int(report.blessed))
    blessing.set_string_custom_property(REASON_KEY, report.reason)
    log.info("Load check: %s: %s", "passed" if report.blessed else "failed", report.reason)
