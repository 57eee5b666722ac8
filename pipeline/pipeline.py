"""``create_pipeline(config)``: the one TFX pipeline definition every runner uses.

CsvExampleGen (the newest span) → StatisticsGen → ImportSchemaGen (curated schema) → ExampleValidator
→ [data gate: only a clean span goes on] → Resolver (latest K validated spans) → Transform → Trainer
→ Resolver (latest blessed model) → Evaluator (value + change thresholds) → SafePusher (blessed, new
models only).

→ ServingConfigGen (models.config + stable/canary labels, see ``components/``).

CsvExampleGen reads one span per run. ``create_pipeline(config, span=N, ingest_only=True)`` ingests
and validates an older span N, which ``pipeline.runner`` uses to backfill the window on a first run.

``orchestrator="kubeflow_v2"`` builds the variant compiled for Vertex AI / Kubeflow Pipelines: TFX
1.21's V2 compiler accepts only the LatestArtifact and LatestBlessedModel resolver strategies, so
there the model trains on the span the run ingests instead of the validated K-span window.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.placeholder.placeholder_base import logical_and

from components.serving_config.component import ServingConfigGen
from pipeline import data
from pipeline.config import PipelineConfig
from pipeline.pusher import SafePusher
from pipeline.window import ValidatedSpanWindowStrategy

PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.model.run_fn"
LABEL_KEYS = {"classification": "big_tipper_xf", "regression": "fare_label_xf"}


ORCHESTRATORS = ("local", "kubeflow_v2")


def schema_path() -> Path:
    """The curated raw-data schema shipped in this package."""
    return Path(str(resources.files("pipeline") / "schema" / "taxi.pbtxt"))


def span_range(span: int | None) -> tfx.proto.RangeConfig | None:
    """Ingest exactly ``span``; None means the newest span folder."""
    if span is None:
        return None
    return tfx.proto.RangeConfig(
        static_range=tfx.proto.StaticRange(start_span_number=span, end_span_number=span)
    )


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """TFMA gates: absolute thresholds, and no more than ``max_metric_drop`` worse than the baseline."""
    if config.task == "classification":
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
                label_key=LABEL_KEYS[config.task],
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
    span: int | None = None,
    ingest_only: bool = False,
    orchestrator: str = "local",
) -> tfx.dsl.Pipeline:
    """The training pipeline for ``config.model``, writing under ``config.home``.

    ``span`` pins the span to ingest (default: the newest); ``ingest_only`` stops after validation;
    ``orchestrator`` is ``local`` (LocalDagRunner) or ``kubeflow_v2`` (Vertex AI / Kubeflow Pipelines).
    """
    if orchestrator not in ORCHESTRATORS:
        raise ValueError(f"orchestrator {orchestrator!r} is not one of {ORCHESTRATORS}")
    custom_config = {"model": config.model}
    example_gen = tfx.components.CsvExampleGen(
        input_base=str(config.data_root),
        input_config=tfx.proto.Input(
            splits=[tfx.proto.Input.Split(name="single_split", pattern=data.SPAN_PATTERN)]
        ),
        output_config=tfx.proto.Output(
            split_config=tfx.proto.SplitConfig(
                splits=[
                    tfx.proto.SplitConfig.Split(name="train", hash_buckets=3),
                    tfx.proto.SplitConfig.Split(name="eval", hash_buckets=1),
                ]
            )
        ),
        range_config=span_range(span),
    ).with_id("CsvExampleGen")
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"]).with_id(
        "StatisticsGen"
    )
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_file or str(schema_path())).with_id(
        "ImportSchemaGen"
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    ).with_id("ExampleValidator")
    components = [example_gen, statistics_gen, schema_gen, example_validator]
    if ingest_only:
        return _pipeline(config, components)

    # ExampleValidator alone blocks nothing: only a span without anomalies in every split goes on.
    blessed = example_validator.outputs["anomalies"].future()[0].custom_property("blessed")
    with tfx.dsl.Cond(logical_and(blessed["train"] == 1, blessed["eval"] == 1)):
        training_examples = example_gen.outputs["examples"]
        if orchestrator == "local":
            window = _span_window(config, example_gen, example_validator)
            training_examples = window.outputs["examples"]
            components.append(window)
        transform = tfx.components.Transform(
            examples=training_examples,
            schema=schema_gen.outputs["schema"],
            preprocessing_fn=PREPROCESSING_FN,
            custom_config=custom_config,
        ).with_id("Transform")
        trainer = tfx.components.Trainer(
            run_fn=RUN_FN,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
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
            examples=training_examples,
            model=trainer.outputs["model"],
            baseline_model=baseline.outputs["model"],
            eval_config=eval_config(config),
        ).with_id("Evaluator")
        components += [transform, trainer, baseline, evaluator]
        model_blessed = evaluator.outputs["blessing"].future()[0].custom_property("blessed") == 1
        with tfx.dsl.Cond(model_blessed):
            pusher = SafePusher(
                model=trainer.outputs["model"],
                model_blessing=evaluator.outputs["blessing"],
                examples=example_gen.outputs["examples"],
                base_directory=str(config.serving_model_dir),
                pipeline_name=config.name,
                warmup_examples=config.warmup_examples,
            ).with_id("Pusher")
            serving_config = ServingConfigGen(
                pushed_model=pusher.outputs["pushed_model"],
                serving_root=str(config.serving_root),
                model_name=config.serving_model_name,
                server_address=config.server_address or None,
            ).with_id("ServingConfigGen")
            components += [pusher, serving_config]
    return _pipeline(config, components)


def _span_window(config: PipelineConfig, example_gen, example_validator) -> tfx.dsl.Resolver:
    """The latest ``span_window`` spans whose validation found no anomalies (local runs only)."""
    window = tfx.dsl.Resolver(
        strategy_class=ValidatedSpanWindowStrategy,
        config={"num_spans": config.span_window},
        examples=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.Examples, producer_component_id=example_gen.id
        ),
        anomalies=tfx.dsl.Channel(
            type=tfx.types.standard_artifacts.ExampleAnomalies,
            producer_component_id=example_validator.id,
        ),
    ).with_id("SpanWindow")
    window.add_upstream_node(example_validator)
    return window


def _pipeline(config: PipelineConfig, components: list) -> tfx.dsl.Pipeline:
    return tfx.dsl.Pipeline(
        pipeline_name=config.name,
        pipeline_root=str(config.pipeline_root),
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(config.metadata_path)
        ),
        beam_pipeline_args=list(config.beam_args),
    )
