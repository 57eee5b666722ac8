"""Compile the one ``create_pipeline`` for Vertex AI Pipelines (.json) or Kubeflow Pipelines (.yaml).

The local pipeline config keeps its model, steps and thresholds; only where things live (GCS roots),
the image and the Beam runner come from the cloud config.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from kubeflow.cloud_config import CloudConfig

logger = logging.getLogger(__name__)

TARGET_SUFFIX = {"vertex": ".json", "kfp": ".yaml"}
# Where the Dockerfile puts the project's sources inside the pipeline image.
IMAGE_SOURCE_DIR = "/tfx-canary"
IMAGE_SCHEMA_FILE = f"{IMAGE_SOURCE_DIR}/pipeline/schema/taxi.pbtxt"


def cloud_pipeline_config(cloud: CloudConfig):
    """The pipeline config with every root on GCS and the cloud's Beam args."""
    from pipeline.config import load_config

    base = load_config(cloud.pipeline_config or None)
    return base.replace(
        beam_args=cloud.beam_args(base.beam_args),
        # The schema ships inside the image (Dockerfile: COPY . /tfx-canary), not at this checkout's path.
        schema_file=base.schema_file or IMAGE_SCHEMA_FILE,
        data_root=cloud.data_root,
        pipelines_root=cloud.pipeline_root,
        serving_root=cloud.serving_root,
    )


def compile_pipeline(
    cloud: CloudConfig, target: str, output_dir: str | Path, build: Callable | None = None
) -> Path:
    """Write the compiled pipeline for ``target`` ('vertex' or 'kfp') into ``output_dir``; return its path.

    ``build`` makes the ``tfx.dsl.Pipeline`` from the config (default: ``pipeline.pipeline.create_pipeline``).
    """
    if target not in TARGET_SUFFIX:
        raise ValueError(f"unknown target {target!r}; choose one of {sorted(TARGET_SUFFIX)}")
    from tfx import v1 as tfx

    config = cloud_pipeline_config(cloud)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    file_name = f"{config.name}{TARGET_SUFFIX[target]}"
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            display_name=config.name, default_image=cloud.image
        ),
        output_dir=str(output_dir),
        output_filename=file_name,
    )
    logger.info("Compiling pipeline %s for %s with image %s", config.name, target, cloud.image)
    if build is None:
        from pipeline.pipeline import create_pipeline

        build = functools.partial(create_pipeline, orchestrator="kubeflow_v2")
    runner.run(build(config), write_out=True)
    path = output_dir / file_name
    logger.info("Wrote %s (%d bytes)", path, path.stat().st_size)
    return path
