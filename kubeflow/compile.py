"""Compile the one ``create_pipeline`` for Vertex AI Pipelines (.json) or Kubeflow Pipelines (.yaml).

The local pipeline config keeps its model, user code (dotted paths), steps and thresholds; only where
things live (GCS roots, the schema's path in the image), the image and the Beam runner come from the
cloud config.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kubeflow.cloud_config import CloudConfig
from release.serving_dir import write_text_atomic
from tfx_canary.errors import ConfigError
from tfx_canary.home import is_uri

logger = logging.getLogger(__name__)

TARGET_SUFFIX = {"vertex": ".json", "kfp": ".yaml"}
# Where the Dockerfile puts the project's sources, and the user's project (build arg USER_PROJECT),
# inside the pipeline image.
IMAGE_SOURCE_DIR = "/tfx-canary"
IMAGE_USER_PROJECT_DIR = "/user-project"
CHECKOUT = Path(__file__).resolve().parents[1]


def cloud_pipeline_config(cloud: CloudConfig, config_file: str | Path | None = None):
    """The pipeline config (``config_file``, else the cloud config's ``pipeline_config``, else the
    shipped default) with every root on GCS, the cloud's Beam args and image paths.

    The config is checked first, as a local run checks it (its code imports, its schema, label, task
    and metrics fit), so a compile never ships a pipeline that fails in its first component.
    """
    from pipeline.config import load_config
    from pipeline.preflight import check_config

    base = load_config(config_file or cloud.pipeline_config or None)
    check_config(base)
    return base.replace(
        beam_args=cloud.beam_args(base.beam_args),
        schema_file=image_path(base, "schema_file"),
        code_dir="",  # in the image the user's package is installed (Dockerfile: USER_PROJECT)
        data_root=cloud.data_root,
        pipelines_root=cloud.pipeline_root,
        serving_root=cloud.serving_root,
    )


def image_path(config, key: str) -> str:
    """Where the file ``config.<key>`` is inside the pipeline image: this checkout is copied to
    ``/tfx-canary``, the user's project (``code_dir``) to ``/user-project``; a URI stays as it is."""
    local = getattr(config, key)
    if is_uri(local):
        return local
    path = Path(local).resolve()
    roots = [(CHECKOUT, IMAGE_SOURCE_DIR)]
    if config.code_dir:
        roots.insert(0, (Path(config.code_dir).resolve(), IMAGE_USER_PROJECT_DIR))
    for root, in_image in roots:
        if path.is_relative_to(root):
            return f"{in_image}/{path.relative_to(root).as_posix()}"
    raise ConfigError(
        f"{key}{config.where}: {local} is neither under code_dir ({config.code_dir or 'not set'}) nor in "
        f"this checkout ({CHECKOUT}), so the pipeline image would not have it; move it under code_dir "
        "(docker build --build-arg USER_PROJECT=...) or give a gs:// path"
    )


def turn_cache_off(path: Path, task_names: list[str]) -> None:
    """Vertex caches every task of a pipeline compiled with caching; a task that reads the data root
    (the ingest) must run each time, so its ``cachingOptions`` are cleared in the compiled file."""
    if not task_names:
        return
    is_json = path.suffix == ".json"
    spec = json.loads(path.read_text()) if is_json else yaml.safe_load(path.read_text())
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            tasks = node.get("tasks")
            if isinstance(tasks, dict):
                for name, task in tasks.items():
                    if name in task_names and isinstance(task, dict):
                        task["cachingOptions"] = {}
                        found.add(name)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    missing = sorted(set(task_names) - found)
    if missing:
        raise ValueError(f"the compiled pipeline {path} has no task {missing} to turn the cache off for")
    text = json.dumps(spec, indent=2, sort_keys=True) if is_json else yaml.safe_dump(spec, sort_keys=False)
    write_text_atomic(str(path), text)


def compile_pipeline(
    cloud: CloudConfig,
    target: str,
    output_dir: str | Path,
    build: Callable | None = None,
    config_file: str | Path | None = None,
) -> Path:
    """Write the compiled pipeline for ``target`` ('vertex' or 'kfp') into ``output_dir``; return its path.

    ``build`` makes the ``tfx.dsl.Pipeline`` from the config (default: ``pipeline.pipeline.create_pipeline``);
    ``config_file`` is the pipeline config (default: the cloud config's ``pipeline_config``).
    """
    if target not in TARGET_SUFFIX:
        raise ValueError(f"unknown target {target!r}; choose one of {sorted(TARGET_SUFFIX)}")
    from tfx import v1 as tfx

    config = cloud_pipeline_config(cloud, config_file)
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
    from pipeline.pipeline import never_cached

    pipeline = build(config)
    runner.run(pipeline, write_out=True)
    path = output_dir / file_name
    turn_cache_off(path, never_cached(pipeline))
    logger.info("Wrote %s (%d bytes)", path, path.stat().st_size)
    return path
