"""``create_pipeline(config)``: the one TFX pipeline definition every runner uses.

CsvExampleGen (the newest span) → StatisticsGen → ImportSchemaGen (curated schema) → ExampleValidator
→ [data gate: only a clean span goes on] → Resolver (latest K validated spans) → MergeSpans (one
artifact) → Transform → Trainer → Resolver (latest blessed model) → Evaluator (value + change
thresholds) → SafePusher (blessed, new models only).

→ ServingConfigGen (models.config + stable/canary labels, see ``components/``).

CsvExampleGen reads one span per run. On a first run, ``create_pipeline(config, backfill_spans=[...])``
adds ``BackfillSpans``, which ingests, summarizes and validates every older span of the window in one
Beam pass (per span, the artifacts CsvExampleGen → StatisticsGen → ExampleValidator would give), before
the span window resolver: one run ingests and validates every span, and a span with anomalies stays out
of the window. ``ingest_only`` stops after validation.

``orchestrator="kubeflow_v2"`` builds the variant compiled for Vertex AI / Kubeflow Pipelines: TFX
1.21's V2 compiler accepts only the LatestArtifact and LatestBlessedModel resolver strategies, so
there the model trains on the span the run ingests instead of the validated K-span window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.placeholder.placeholder_base import logical_and

from components.backfill_spans.component import BackfillSpans
from components.merge_spans.component import MergeSpans
from components.safe_pusher.component import SafePusher
from components.serving_config.component import ServingConfigGen
from components.span_validator.component import SpanValidator
from components.span_window.strategy import ValidatedSpanWindowStrategy
from models.catalog import CLASSIFICATION
from pipeline import data
from pipeline.config import PipelineConfig

ORCHESTRATORS = ("local", "kubeflow_v2")


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """TFMA gates: absolute thresholds, and no more than ``max_metric_drop`` worse than the baseline."""
    if config.task == CLASSIFICATION:
        metrics = [
            _metric("AUC", config.min_auc, higher_is_better=True, drop=config.max_metric_drop),
            _metric("BinaryAccuracy", config.min_accuracy, higher_is_better=True, drop=None),
            tfma.MetricConfig(class_name="ExampleCount"),
        ]
    else:
        metrics = [
            _metric("MeanAbsoluteError", config.max_mae, higher_is_better=False, drop=config.max_metric_drop),
            tfma.MetricConfig(class_name="MeanSquaredError"),
            tfma.MetricConfig(class_name="ExampleCount"),
        ]
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="eval_examples",
                prediction_key="prediction",
                label_key=config.catalog_entry.label_key,
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )


def _metric(name: str, bound: float, higher_is_better: bool, drop: float | None) -> tfma.MetricConfig:
    if higher_is_better:
        value = tfma.GenericValueThreshold(lower_bound={"value": bound})
    else:
        value = tfma.GenericValueThreshold(upper_bound={"value": bound})
    change = None
    if drop is not None:
        # Ignored on the first run, when there is no baseline yet.
        change = tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER
            if higher_is_better
            else tfma.MetricDirection.LOWER_IS_BETTER,
            absolute={"value": -drop if higher_is_better else drop},
        )
    return tfma.MetricConfig(
        class_name=name, threshold=tfma.MetricThreshold(value_threshold=value, change_threshold=change)
    )


def create_pipeline(
    config: PipelineConfig,
    backfill_spans: Sequence[int] = (),
    ingest_only: bool = False,
    orchestrator: str = "local",
) -> tfx.dsl.Pipeline:
    """The training pipeline for ``config.model``, writing under ``config.home``.

    ``backfill_spans`` are older spans to ingest and validate in this run too (local runs only: the
    window that uses them is a local resolver); ``ingest_only`` stops after validation;
    ``orchestrator`` is ``local`` (LocalDagRunner) or ``kubeflow_v2`` (Vertex AI / Kubeflow Pipelines).
    """
    if orchestrator not in ORCHESTRATORS:
        raise ValueError(f"orchestrator {orchestrator!r} is not one of {ORCHESTRATORS}")
    if backfill_spans and orchestrator != "local":
        raise ValueError("backfill_spans needs the local span window; the kubeflow_v2 variant has none")
    ingest = _ingest(config, backfill_spans)
    components = list(ingest.components)
    if ingest_only:
        return _pipeline(config, components, orchestrator)

    # ExampleValidator alone blocks nothing: only a span without anomalies in every split goes on.
    blessed = ingest.validator.outputs["anomalies"].future()[0].custom_property("blessed")
    with tfx.dsl.Cond(logical_and(blessed["train"] == 1, blessed["eval"] == 1)):
        training_examples = ingest.example_gen.outputs["examples"]
        if orchestrator == "local":
            validators = [ingest.validator] + ([ingest.backfill] if ingest.backfill else [])
            window = _span_window(config, validators)
            merge = MergeSpans(spans=window.outputs["examples"]).with_id("MergeSpans")
            training_examples = merge.outputs["examples"]
            components += [window, merge]
        trainer, evaluator, train_components = _train(config, training_examples, ingest.schema)
        components += train_components
        model_blessed = evaluator.outputs["blessing"].future()[0].custom_property("blessed") == 1
        with tfx.dsl.Cond(model_blessed):
            components += _release(
                config, trainer, evaluator, ingest.example_gen, training_examples, orchestrator
            )
    return _pipeline(config, components, orchestrator)


@dataclass
class _Ingest:
    """The ingest part: the curated schema, the newest span's CsvExampleGen → StatisticsGen →
    ExampleValidator, and BackfillSpans for older spans on a first run."""

    schema: Any
    example_gen: Any
    validator: Any
    backfill: Any | None
    components: list


def _ingest(config: PipelineConfig, backfill_spans: Sequence[int]) -> _Ingest:
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=config.schema_file or str(data.schema_path())
    ).with_id("ImportSchemaGen")
    schema = schema_gen.outputs["schema"]
    data_root = config.paths.data_root
    example_gen = tfx.components.CsvExampleGen(
        input_base=data_root, input_config=_INPUT_CONFIG, output_config=_OUTPUT_CONFIG
    ).with_id("CsvExampleGen")
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"]).with_id(
        "StatisticsGen"
    )
    validator = SpanValidator(statistics=statistics_gen.outputs["statistics"], schema=schema).with_id(
        "ExampleValidator"
    )
    components = [schema_gen, example_gen, statistics_gen, validator]
    backfill = None
    if backfill_spans:
        backfill = BackfillSpans(
            input_base=data_root,
            spans=backfill_spans,
            schema=schema,
            input_config=_INPUT_CONFIG,
            output_config=_OUTPUT_CONFIG,
        ).with_id("BackfillSpans")
        components.append(backfill)
    return _Ingest(schema, example_gen, validator, backfill, components)


def _train(config: PipelineConfig, examples, schema) -> tuple[Any, Any, list]:
    """Transform → Trainer → Resolver (latest blessed model) → Evaluator (value + change thresholds)."""
    model = config.catalog_entry
    custom_config = {"model": config.model}
    transform = tfx.components.Transform(
        examples=examples,
        schema=schema,
        preprocessing_fn=model.preprocessing_fn,
        custom_config=custom_config,
        # Pre/post-transform TFDV statistics gate nothing here (each span was validated above) and
        # cost two more statistics passes over the whole window.
        disable_statistics=True,
    ).with_id("Transform")
    trainer = tfx.components.Trainer(
        run_fn=model.run_fn,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
        custom_config=custom_config,
    ).with_id("Trainer")
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("LatestBlessedModel")
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(config),
    ).with_id("Evaluator")
    return trainer, evaluator, [transform, trainer, baseline, evaluator]


def _release(
    config: PipelineConfig, trainer, evaluator, example_gen, training_examples, orchestrator: str
) -> list:
    """SafePusher (blessed, new models and new data only) → ServingConfigGen (models.config, labels)."""
    pusher = SafePusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        examples=example_gen.outputs["examples"],
        training_examples=training_examples,
        base_directory=config.serving_model_dir,
        pipeline_name=config.name,
        warmup_examples=config.warmup_examples,
    ).with_id("Pusher")
    serving_config = ServingConfigGen(
        pushed_model=pusher.outputs["pushed_model"],
        serving_root=config.paths.serving_root,
        model_name=config.serving_model_name,
        server_address=config.server_address or None,
        # local runs record each generation in the project's MLMD as it is written (Vertex keeps its own)
        metadata_path=config.metadata_path if orchestrator == "local" else None,
        snapshot_root=config.paths.releases_dir if orchestrator == "local" else None,
    ).with_id("ServingConfigGen")
    return [pusher, serving_config]


# Every span: one CSV folder, hash-split 3:1 into train and eval.
_INPUT_CONFIG = tfx.proto.Input(
    splits=[tfx.proto.Input.Split(name="single_split", pattern=data.SPAN_PATTERN)]
)
_OUTPUT_CONFIG = tfx.proto.Output(
    split_config=tfx.proto.SplitConfig(
        splits=[
            tfx.proto.SplitConfig.Split(name="train", hash_buckets=3),
            tfx.proto.SplitConfig.Split(name="eval", hash_buckets=1),
        ]
    )
)


def _span_window(config: PipelineConfig, validators: list) -> tfx.dsl.Resolver:
    """The latest ``span_window`` spans whose validation found no anomalies (local runs only).

    The channels name no producer: the strategy sees every ingested span of the pipeline, whether
    CsvExampleGen or BackfillSpans ingested it, and runs after this run's validators.
    """
    window = tfx.dsl.Resolver(
        strategy_class=ValidatedSpanWindowStrategy,
        config={"num_spans": config.span_window},
        examples=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples),
        anomalies=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleAnomalies),
    ).with_id("SpanWindow")
    for validator in validators:
        window.add_upstream_node(validator)
    return window


# Beam options that tell TFX the workers' Python dependencies are declared already.
_DEPENDENCY_FLAGS = ("--extra_package", "--setup_file", "--requirements_file", "--sdk_container_image")


def beam_args(config: PipelineConfig, orchestrator: str = "local") -> list[str]:
    """``config.beam_args``, plus this project's ``setup.py`` as the Beam dependency on local runs.

    Without a dependency flag every TFX Beam component first builds an sdist of the whole tfx package
    for remote workers (measured ~3 s for each Beam component). In-process runners
    stage nothing; a remote runner given here gets the project's own package (tfx + ``models``).
    """
    args = list(config.beam_args)
    setup_file = Path(__file__).resolve().parent.parent / "setup.py"
    declared = any(a.startswith(_DEPENDENCY_FLAGS) for a in args)
    if orchestrator == "local" and not declared and setup_file.is_file():
        args.append(f"--setup_file={setup_file}")
    return args


def _pipeline(config: PipelineConfig, components: list, orchestrator: str) -> tfx.dsl.Pipeline:
    return tfx.dsl.Pipeline(
        pipeline_name=config.name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path
        ),
        beam_pipeline_args=beam_args(config, orchestrator),
    )
