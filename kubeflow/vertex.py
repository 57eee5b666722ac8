"""Vertex AI requests: create a PipelineJob now, or a PipelineJobSchedule on a cron.

The requests are built offline with the aiplatform SDK's own objects, so `--dry-run` prints exactly
what `send_*` would send, and tests assert on them without credentials or network.
"""

from __future__ import annotations

from typing import Any

from kubeflow.cloud_config import CloudConfig
from scheduler.cron import parse_vertex_cron


def build_pipeline_job(
    cloud: CloudConfig,
    template_path: str,
    *,
    display_name: str,
    enable_caching: bool | None = None,
    parameter_values: dict[str, Any] | None = None,
    credentials: Any = None,
):
    """An ``aiplatform.PipelineJob`` for the compiled ``.json`` template (nothing is sent)."""
    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name=display_name,
        template_path=template_path,
        pipeline_root=cloud.pipeline_root,
        parameter_values=parameter_values or {},
        enable_caching=enable_caching,
        labels=dict(cloud.labels),
        project=cloud.project,
        location=cloud.region,
        credentials=credentials,
    )


def pipeline_job_request(job, cloud: CloudConfig):
    """The ``CreatePipelineJobRequest`` that ``PipelineJob.submit(service_account=...)`` sends."""
    from google.cloud.aiplatform.compat.types import pipeline_service

    resource_type = type(job._gca_resource)
    pipeline_job = resource_type.deserialize(resource_type.serialize(job._gca_resource))  # a copy
    pipeline_job.service_account = cloud.service_account
    return pipeline_service.CreatePipelineJobRequest(
        parent=cloud.location_path, pipeline_job=pipeline_job, pipeline_job_id=job.job_id
    )


def schedule_request(
    job, cloud: CloudConfig, *, cron: str, display_name: str, max_concurrent_run_count: int = 1
):
    """The ``CreateScheduleRequest`` that ``PipelineJobSchedule.create(cron=...)`` sends.

    One run at a time and no queueing: a retraining that overruns its slot skips the next one
    instead of piling up.
    """
    from google.cloud import aiplatform
    from google.cloud.aiplatform.compat.types import schedule_service

    parse_vertex_cron(cron)
    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name=display_name, credentials=job.credentials
    )
    resource = schedule._gca_resource
    resource.cron = cron.strip()
    resource.max_concurrent_run_count = max_concurrent_run_count
    resource.allow_queueing = False
    resource.create_pipeline_job_request.pipeline_job.service_account = cloud.service_account
    return schedule_service.CreateScheduleRequest(parent=cloud.location_path, schedule=resource)


def send_pipeline_job(job, request) -> str:
    """Create the PipelineJob on Vertex; return its resource name."""
    created = job.api_client.create_pipeline_job(request=request)
    return created.name


def send_schedule(job, request) -> str:
    """Create the PipelineJobSchedule on Vertex; return its resource name."""
    from google.cloud import aiplatform

    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name=request.schedule.display_name, credentials=job.credentials
    )
    created = schedule.api_client.create_schedule(request=request)
    return created.name


def to_json(request) -> str:
    """The request as the JSON the API receives (camelCase field names)."""
    return type(request).to_json(request, indent=2)
