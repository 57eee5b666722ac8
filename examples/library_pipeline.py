"""The library route: a pipeline of stock TFX components with tfx-canary's pieces added.

A team that already has a TFX pipeline keeps it and adds four pieces (see the README, "Your own
model"):

1. the data gate, ``components.data_gate.clean_span``: what trains runs inside
   ``tfx.dsl.Cond(clean_span(example_validator))``, so a span that breaks the curated schema stops
   before Transform;
2. ``components.load_check.component.LoadCheck`` (InfraValidator's job without Docker): the
   candidate loaded by a model server in a child process and called on every serving signature over
   REST and gRPC within a latency budget;
3. ``components.safe_pusher.component.SafePusher`` in place of TFX's Pusher: it publishes a model
   blessed by the Evaluator and the load check atomically into the versioned serving directory TF
   Serving watches, never pushes the same model twice, and writes the warm-up requests and the MLMD
   lineage key;
4. ``components.serving_config.component.ServingConfigGen`` after it: ``models.config`` lists the new
   version and, with a reachable server, labels it ``stable`` (the first) or ``canary``; then
   ``tfx-canary rollout`` / ``promote`` / ``rollback`` release it.

Everything else here is stock TFX: CsvExampleGen, StatisticsGen, ImportSchemaGen, ExampleValidator,
Transform, Trainer, the LatestBlessedModel resolver and Evaluator. Run it::

    python examples/library_pipeline.py --data-root DIR --schema-file S --module-path DIR \\
        --preprocessing-fn pkg.preprocessing.preprocessing_fn --run-fn pkg.model.run_fn \\
        --label-key label_xf --home /tmp/library-home
"""

from __future__ import annotations

import argparse
import os
import sys

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from components.data_gate import clean_span
from components.load_check.component import LoadCheck
from components.safe_pusher.component import SafePusher
from components.serving_config.component import ServingConfigGen
from pipeline.config import DEFAULT_BEAM_ARGS, with_dependencies


def create_pipeline(
    *,
    name: str,
    home: str,
    data_root: str,
    schema_file: str,
    preprocessing_fn: str,
    run_fn: str,
    eval_config: tfma.EvalConfig,
    model_name: str,
    custom_config: dict | None = None,
    train_steps: int = 100,
    server_address: str | None = None,
    latency_budget_ms: float = 250.0,
) -> tfx.dsl.Pipeline:
    """The team's pipeline, writing its outputs, MLMD and serving directory under ``home``."""
    example_gen = tfx.components.CsvExampleGen(input_base=data_root)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
    validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    components = [example_gen, statistics_gen, schema_gen, validator]

    # 1. The data gate: only a span without anomalies is trained on.
    with tfx.dsl.Cond(clean_span(validator)):
        transform = tfx.components.Transform(
            examples=example_gen.outputs["examples"],
            schema=schema_gen.outputs["schema"],
            preprocessing_fn=preprocessing_fn,
            custom_config=custom_config,
            # Pre/post-transform statistics gate nothing here (ExampleValidator checked the span above)
            # and cost two more statistics passes over the data.
            disable_statistics=True,
        )
        trainer = tfx.components.Trainer(
            run_fn=run_fn,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(num_steps=train_steps),
            eval_args=tfx.proto.EvalArgs(num_steps=5),
            custom_config=custom_config,
        )
        baseline = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
            model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
        ).with_id("latest_blessed_model")
        evaluator = tfx.components.Evaluator(
            examples=example_gen.outputs["examples"],
            model=trainer.outputs["model"],
            baseline_model=baseline.outputs["model"],
            eval_config=eval_config,
        )
        components += [transform, trainer, baseline, evaluator]
        blessed = evaluator.outputs["blessing"].future()[0].custom_property("blessed") == 1
        with tfx.dsl.Cond(blessed):
            # 2. LoadCheck: the candidate served by a child model server, every signature called over
            #    REST and gRPC within the latency budget; its requests become the warm-up file.
            load_check = LoadCheck(
                model=trainer.outputs["model"],
                examples=example_gen.outputs["examples"],
                model_name=model_name,
                latency_budget_ms=latency_budget_ms,
                warmup_examples=5,
            )
            # 3. SafePusher: atomic, once per model, only when the Evaluator and the load check agree.
            pusher = SafePusher(
                model=trainer.outputs["model"],
                model_blessing=evaluator.outputs["blessing"],
                infra_blessing=load_check.outputs["blessing"],
                base_directory=os.path.join(home, "serving", model_name),
                pipeline_name=name,
            )
            # 4. ServingConfigGen: models.config, and stable/canary labels once the server loads it.
            serving_config = ServingConfigGen(
                pushed_model=pusher.outputs["pushed_model"],
                serving_root=os.path.join(home, "serving"),
                model_name=model_name,
                server_address=server_address,
            )
            components += [load_check, pusher, serving_config]
    return tfx.dsl.Pipeline(
        pipeline_name=name,
        pipeline_root=os.path.join(home, "pipelines", name),
        components=components,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(home, "metadata.sqlite")
        ),
        # Declare the Beam workers' Python dependencies (here this checkout's setup.py), or TFX builds an
        # sdist of tfx for every Beam component of every run.
        beam_pipeline_args=with_dependencies(DEFAULT_BEAM_ARGS),
    )


def accuracy_gate(label_key: str, minimum: float) -> tfma.EvalConfig:
    """An Evaluator config for a model exported by ``models.export`` (its ``eval_examples`` and
    ``transform_features`` signatures): sparse categorical accuracy of at least ``minimum``."""
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": minimum})
    )
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                model_type=tfma.TF_GENERIC,  # signatures only: TFMA need not try loading it as Keras
                signature_name="eval_examples",
                prediction_key="prediction",
                label_key=label_key,
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[
            tfma.MetricsSpec(
                metrics=[tfma.MetricConfig(class_name="SparseCategoricalAccuracy", threshold=threshold)]
            )
        ],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--schema-file", required=True)
    parser.add_argument("--module-path", help="a folder to import the user code from")
    parser.add_argument("--preprocessing-fn", required=True)
    parser.add_argument("--run-fn", required=True)
    parser.add_argument("--label-key", required=True)
    parser.add_argument("--model-name", default="model")
    args = parser.parse_args(argv)
    if args.module_path:
        sys.path.insert(0, os.path.abspath(args.module_path))
    pipeline = create_pipeline(
        name="library-example",
        home=args.home,
        data_root=args.data_root,
        schema_file=args.schema_file,
        preprocessing_fn=args.preprocessing_fn,
        run_fn=args.run_fn,
        eval_config=accuracy_gate(args.label_key, 0.5),
        model_name=args.model_name,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)


if __name__ == "__main__":
    main()
