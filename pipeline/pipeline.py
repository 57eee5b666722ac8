"""``create_pipeline(config)``: the one TFX pipeline definition every runner uses, Vertex included.

ImportSchemaGen (curated schema) → WindowIngest (the latest K spans of the data root, each ingested,
summarized and validated in one Beam pass; spans with anomalies left out, the clean ones merged) →
[data gate: only a run whose newest span is clean, on a window not trained on yet, goes on] →
WindowTransform (a warm retrain reuses the blessed model's analysis; a first run, every
``transform_reuses + 1``-th retrain or a change of the preprocessing analyzes the window) → Trainer
(warm start from the latest blessed model, onto the graph its weights were trained on) → Evaluator
(value + change thresholds, against that model) → [blessed]
→ LoadCheck (the candidate served by a child model server, every signature over REST and gRPC within a
latency budget)
→ SafePusher (blessed by both, new models and new data only) → ServingConfigGen (models.config,
stable/canary labels, Model Registry aliases).

No custom resolver picks the window from MLMD (TFX 1.21's Vertex compiler takes only its built-in
LatestBlessedModel and LatestArtifact strategies: the baseline, and the analyzer cache), so a
scheduled Vertex run trains on the same validated window as a local one.
``ingest_only`` stops after the ingest.
"""

from __future__ import annotations

import json
from typing import Any

import tensorflow_model_analysis as tfma

# TFX's own modules, not ``tfx.v1``: importing ``tfx.v1`` also imports its Google Cloud extensions (the
# aiplatform SDK), 2.4 s of every pipeline process's start-up that a run never uses (measured with
# ``python -X importtime``). These are the same classes ``tfx.v1`` re-exports.
from tfx.components import Evaluator, Trainer
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.experimental.conditionals.conditional import Cond
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.dsl.placeholder.placeholder_base import logical_and
from tfx.orchestration import metadata
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import example_gen_pb2, trainer_pb2
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

from components.data_gate import clean_span, new_window
from components.load_check.component import LoadCheck
from components.safe_pusher.component import SafePusher
from components.serving_config.component import ServingConfigGen
from components.window_ingest.component import WindowIngest
from components.window_transform.component import WindowTransform
from models import contract
from models.warm_start import WARM_START_STEPS
from pipeline import data, nodes
from pipeline.config import MetricGate, PipelineConfig, with_dependencies

ORCHESTRATORS = ("local", "kubeflow_v2")


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """TFMA gates from ``config.metrics``: value thresholds, and no more than ``max_drop`` worse than
    the baseline (the latest blessed model)."""
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                # a SavedModel of signatures (``models.export``): said here, TFMA does not load each
                # model once more to find out whether it is a Keras one
                model_type=tfma.TF_GENERIC,
                signature_name=contract.EVAL_EXAMPLES,
                prediction_key=contract.PREDICTION_KEY,
                label_key=config.label_key,
                preprocessing_function_names=[contract.TRANSFORM_FEATURES],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[_metric(gate) for gate in config.metrics])],
    )


def _metric(gate: MetricGate) -> tfma.MetricConfig:
    bound = gate.min if gate.higher_is_better else gate.max
    if bound is None:
        return tfma.MetricConfig(class_name=gate.name)
    if gate.higher_is_better:
        value = tfma.GenericValueThreshold(lower_bound={"value": bound})
    else:
        value = tfma.GenericValueThreshold(upper_bound={"value": bound})
    change = None
    if gate.max_drop is not None:
        # Ignored on the first run, when there is no baseline yet.
        change = tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER
            if gate.higher_is_better
            else tfma.MetricDirection.LOWER_IS_BETTER,
            absolute={"value": -gate.max_drop if gate.higher_is_better else gate.max_drop},
        )
    return tfma.MetricConfig(
        class_name=gate.name, threshold=tfma.MetricThreshold(value_threshold=value, change_threshold=change)
    )


def create_pipeline(
    config: PipelineConfig, ingest_only: bool = False, orchestrator: str = "local"
) -> Pipeline:
    """The training pipeline of the model ``config`` names, writing under ``config.home``.

    ``ingest_only`` stops after the ingest; ``orchestrator`` is ``local`` (LocalDagRunner) or
    ``kubeflow_v2`` (Vertex AI / Kubeflow Pipelines): the components are the same, only where the
    release is recorded differs (a local run writes the project's MLMD; Vertex keeps its own).
    """
    if orchestrator not in ORCHESTRATORS:
        raise ValueError(f"orchestrator {orchestrator!r} is not one of {ORCHESTRATORS}")
    schema, ingest = _ingest(config)
    components = [schema, ingest]
    if ingest_only:
        return _pipeline(config, components, orchestrator)

    # WindowIngest alone blocks nothing: only a run whose newest span is clean, on a window no pushed
    # version was trained on, trains.
    with Cond(logical_and(clean_span(ingest), new_window(ingest))):
        window = ingest.outputs["examples"]
        trainer, evaluator, train_components = _train(config, window, schema.outputs["schema"])
        components += train_components
        model_blessed = evaluator.outputs["blessing"].future()[0].custom_property("blessed") == 1
        with Cond(model_blessed):
            components += _release(config, trainer, evaluator, window, orchestrator)
    return _pipeline(config, components, orchestrator)


def _ingest(config: PipelineConfig) -> tuple[Any, WindowIngest]:
    """The curated schema, and the training window validated against it."""
    schema = ImportSchemaGen(schema_file=config.schema_file).with_id(nodes.IMPORT_SCHEMA)
    ingest = WindowIngest(
        input_base=config.paths.data_root,
        num_spans=config.span_window,
        schema=schema.outputs["schema"],
        input_config=_INPUT_CONFIG,
        output_config=_OUTPUT_CONFIG,
        serving_model_dir=config.serving_model_dir,
        span_cache=config.span_cache_dir,
    ).with_id(nodes.WINDOW_INGEST)
    return schema, ingest


def _train(config: PipelineConfig, examples, schema) -> tuple[Any, Any, list]:
    """WindowTransform (a warm retrain reuses the blessed model's analysis; otherwise it analyzes the
    window, with ``analyzer_cache`` per span from the latest cache) → Trainer (warm start from the
    latest blessed model) → Evaluator (value + change thresholds, against the same model)."""
    custom_config = config.user_custom_config
    # The latest blessed model: the Evaluator's baseline, the Trainer's warm start, and the analysis
    # a warm retrain reuses. Empty on the first run.
    baseline = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing),
    ).with_id(nodes.BASELINE)
    components = [baseline]
    cache = {"disable_analyzer_cache": True}  # off: no cache is written, and the window is one dataset
    if config.analyzer_cache:
        resolver = Resolver(
            strategy_class=LatestArtifactStrategy,
            cache=Channel(type=standard_artifacts.TransformCache),
        ).with_id(nodes.ANALYZER_CACHE)
        components.append(resolver)
        cache = {"analyzer_cache": resolver.outputs["cache"]}
    transform = WindowTransform(
        examples=examples,
        schema=schema,
        preprocessing_fn=config.preprocessing_fn,
        custom_config=custom_config,
        # Pre/post-transform TFDV statistics gate nothing here (each span was validated above) and
        # cost two more statistics passes over the whole window.
        disable_statistics=True,
        base_model=baseline.outputs["model"],
        # a reused analysis serves only a warm start
        transform_reuses=config.transform_reuses if config.warm_start_steps > 0 else 0,
        **cache,
    ).with_id(nodes.TRANSFORM)
    trainer = Trainer(
        run_fn=config.run_fn,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        base_model=baseline.outputs["model"],
        train_args=trainer_pb2.TrainArgs(num_steps=config.train_steps),
        eval_args=trainer_pb2.EvalArgs(num_steps=config.eval_steps),
        # the Trainer's own copy: Transform's stays the same when only the warm start steps change
        custom_config={**custom_config, WARM_START_STEPS: config.warm_start_steps},
    ).with_id(nodes.TRAINER)
    evaluator = Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config(config),
    ).with_id(nodes.EVALUATOR)
    return trainer, evaluator, [*components, transform, trainer, evaluator]


def _release(config: PipelineConfig, trainer, evaluator, window, orchestrator: str) -> list:
    """LoadCheck → SafePusher (blessed by both, new models and new data only) → ServingConfigGen."""
    load_check = LoadCheck(
        model=trainer.outputs["model"],
        examples=window,
        model_blessing=evaluator.outputs["blessing"],
        model_name=config.serving_model_name,
        latency_budget_ms=config.load_check_latency_ms,
        warmup_examples=config.warmup_examples,
    ).with_id(nodes.LOAD_CHECK)
    pusher = SafePusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=load_check.outputs["blessing"],
        training_examples=window,
        base_directory=config.serving_model_dir,
        pipeline_name=config.name,
    ).with_id(nodes.PUSHER)
    serving_config = ServingConfigGen(
        pushed_model=pusher.outputs["pushed_model"],
        serving_root=config.paths.serving_root,
        model_name=config.serving_model_name,
        server_address=config.server_address or None,
        # local runs record each generation in the project's MLMD as it is written (Vertex keeps its own)
        metadata_path=config.metadata_path if orchestrator == "local" else None,
        snapshot_root=config.paths.releases_dir if orchestrator == "local" else None,
        registry=json.dumps(dict(config.model_registry), sort_keys=True) if config.model_registry else None,
    ).with_id(nodes.SERVING_CONFIG)
    return [load_check, pusher, serving_config]


# Every span: one CSV folder, hash-split 3:1 into train and eval.
_INPUT_CONFIG = example_gen_pb2.Input(
    splits=[example_gen_pb2.Input.Split(name="single_split", pattern=data.SPAN_PATTERN)]
)
_OUTPUT_CONFIG = example_gen_pb2.Output(
    split_config=example_gen_pb2.SplitConfig(
        splits=[
            example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=3),
            example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
        ]
    )
)


def beam_args(config: PipelineConfig, orchestrator: str = "local") -> list[str]:
    """``config.beam_args``, with this checkout's ``setup.py`` as the Beam dependency on local runs
    (``pipeline.config.with_dependencies``); a compiled pipeline's are the cloud config's."""
    return with_dependencies(config.beam_args) if orchestrator == "local" else list(config.beam_args)


def never_cached(pipeline: Pipeline) -> list[str]:
    """Ids of the components that must run on every run (``NEVER_CACHED``: they read the data root,
    which TFX's cache key does not see); the local runner and the Vertex compiler turn their cache off."""
    return [c.id for c in pipeline.components if getattr(c, "NEVER_CACHED", False)]


def _pipeline(config: PipelineConfig, components: list, orchestrator: str) -> Pipeline:
    return Pipeline(
        pipeline_name=config.name,
        pipeline_root=config.pipeline_root,
        components=components,
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(config.metadata_path),
        beam_pipeline_args=beam_args(config, orchestrator),
    )
