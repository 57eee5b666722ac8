"""Kubeflow Pipelines recurring runs: the request body `kfp.Client.create_recurring_run` sends.

The body is built here from the compiled ``.yaml`` PipelineSpec so `--dry-run` can print it; the
real call goes through ``kfp.Client.create_recurring_run`` with the same arguments (a test checks
that the client sends exactly this body).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubeflow.cloud_config import CloudConfig
from scheduler.cron import check_kfp_cron


@dataclass(frozen=True)
class RecurringRun:
    """Arguments of ``kfp.Client.create_recurring_run``, in one place for the body and the call."""

    experiment_id: str | None
    job_name: str
    cron_expression: str
    pipeline_package_path: str
    pipeline_root: str
    service_account: str | None
    enable_caching: bool | None = None
    max_concurrency: int = 1
    no_catchup: bool = True

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "job_name": self.job_name,
            "cron_expression": self.cron_expression,
            "max_concurrency": self.max_concurrency,
            "no_catchup": self.no_catchup,
            "pipeline_package_path": self.pipeline_package_path,
            "pipeline_root": self.pipeline_root,
            "enable_caching": self.enable_caching,
            "service_account": self.service_account,
        }


def recurring_run(
    cloud: CloudConfig, package_path: str, *, cron: str, job_name: str, enable_caching=None
) -> RecurringRun:
    if not package_path.endswith((".yaml", ".yml")):
        raise ValueError(
            f"{package_path}: Kubeflow Pipelines takes the .yaml PipelineSpec (compile --target kfp)"
        )
    return RecurringRun(
        experiment_id=cloud.kfp.experiment_id or None,
        job_name=job_name,
        cron_expression=check_kfp_cron(cron),
        pipeline_package_path=package_path,
        pipeline_root=cloud.pipeline_root,
        service_account=None,  # KFP runs as the cluster's pipeline-runner service account
        enable_caching=enable_caching,
    )


def request_body(run: RecurringRun) -> dict[str, Any]:
    """The JSON body of ``POST /apis/v2beta1/recurringruns``, as ``create_recurring_run`` builds it."""
    import kfp_server_api
    from kfp.client import client as kfp_client

    pipeline_doc = kfp_client._extract_pipeline_yaml(run.pipeline_package_path)
    if run.enable_caching is not None:
        kfp_client._override_caching_options(pipeline_doc.pipeline_spec, run.enable_caching, None)
    body = kfp_server_api.V2beta1RecurringRun(
        experiment_id=run.experiment_id,
        mode=kfp_server_api.RecurringRunMode.ENABLE,
        pipeline_spec=pipeline_doc.to_dict(),
        runtime_config=kfp_server_api.V2beta1RuntimeConfig(pipeline_root=run.pipeline_root, parameters={}),
        display_name=run.job_name,
        no_catchup=run.no_catchup,
        trigger=kfp_server_api.V2beta1Trigger(
            cron_schedule=kfp_server_api.V2beta1CronSchedule(cron=run.cron_expression)
        ),
        max_concurrency=run.max_concurrency,
        service_account=run.service_account,
    )
    return kfp_server_api.ApiClient().sanitize_for_serialization(body)


def send(run: RecurringRun, host: str) -> str:
    """Create the recurring run on the Kubeflow Pipelines server at ``host``; return its id."""
    import kfp

    created = kfp.Client(host=host).create_recurring_run(**run.client_kwargs())
    return created.recurring_run_id
