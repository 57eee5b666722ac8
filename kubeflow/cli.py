"""``tfx-canary compile | submit | schedule``: the same pipeline on Vertex AI or Kubeflow Pipelines.

No flag here is named like a Beam option (--project, --region, --runner, --temp_location): TFX's
Beam executors re-parse the process's argv and such a flag breaks every Beam component.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

from tfx_canary.errors import UsageError
from tfx_canary.options import add_home

logger = logging.getLogger(__name__)

CLOUD_CONFIG_ENV = "TFX_CANARY_CLOUD_CONFIG"


def _add_cloud_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cloud-config",
        default=os.environ.get(CLOUD_CONFIG_ENV),
        help=f"cloud settings YAML (see kubeflow/cloud.example.yaml; default ${CLOUD_CONFIG_ENV})",
    )


def _add_pipeline_config(parser) -> None:
    parser.add_argument(
        "--config",
        help="the model's pipeline config file, as `tfx-canary run --config` takes it "
        "(Vertex / KFP default: the cloud config's pipeline_config)",
    )


def _load_cloud(args: argparse.Namespace):
    from kubeflow.cloud_config import load_cloud_config

    if not args.cloud_config:
        raise UsageError(f"pass --cloud-config or set {CLOUD_CONFIG_ENV} (see kubeflow/cloud.example.yaml)")
    return load_cloud_config(args.cloud_config)


def _anonymous_if_dry_run(args: argparse.Namespace):
    """Dry runs need no Google credentials: nothing is sent."""
    if not args.dry_run:
        return None
    import google.auth.credentials

    return google.auth.credentials.AnonymousCredentials()


def _compiled(args: argparse.Namespace, cloud, target: str, scratch: str) -> Path:
    """The template to send: --template if given, else a fresh compile into ``scratch``."""
    from kubeflow.compile import TARGET_SUFFIX, compile_pipeline

    if args.template:
        template = Path(args.template)
        allowed = {".yaml", ".yml"} if target == "kfp" else {".json"}
        if template.suffix not in allowed:
            raise UsageError(f"{template} is not a {TARGET_SUFFIX[target]} file (compile --target {target})")
        if not template.is_file():
            raise UsageError(f"template {template} does not exist")
        return template
    return compile_pipeline(cloud, target, scratch, config_file=args.config)


def _compile(args: argparse.Namespace) -> int:
    from kubeflow.compile import compile_pipeline

    path = compile_pipeline(_load_cloud(args), args.target, args.output_dir, config_file=args.config)
    print(path)
    return 0


def _submit(args: argparse.Namespace) -> int:
    from kubeflow import vertex

    cloud = _load_cloud(args)
    with tempfile.TemporaryDirectory(prefix="tfx-canary-compile-") as scratch:
        template = _compiled(args, cloud, "vertex", scratch)
        job = vertex.build_pipeline_job(
            cloud,
            str(template),
            display_name=template.stem,
            enable_caching=False if args.no_cache else None,
            credentials=_anonymous_if_dry_run(args),
        )
        request = vertex.pipeline_job_request(job, cloud)
        url = f"https://{cloud.region}-aiplatform.googleapis.com/v1/{request.parent}/pipelineJobs"
        if args.dry_run:
            return _dry_run(args, url, vertex.to_json(request))
        name = vertex.send_pipeline_job(job, request)
    console = f"https://console.cloud.google.com/vertex-ai/pipelines/runs?project={cloud.project}"
    if args.json:
        print(json.dumps({"pipeline_job": name, "console": console}, indent=1))
        return 0
    print(f"Created Vertex PipelineJob {name}")
    print(console)
    return 0


def _dry_run(args: argparse.Namespace, url: str, body: str) -> int:
    """The exact request that would be sent: as two text lines, or as one JSON object with --json."""
    if args.json:
        print(json.dumps({"dry_run": True, "method": "POST", "url": url, "body": json.loads(body)}, indent=1))
    else:
        print(f"POST {url}")
        print(body)
    return 0


def _schedule(args: argparse.Namespace) -> int:
    if args.local:
        return _schedule_local(args)
    if not args.cron:
        raise UsageError("--cron is required (or use --local for the on-machine scheduler)")
    cloud = _load_cloud(args)
    with tempfile.TemporaryDirectory(prefix="tfx-canary-compile-") as scratch:
        if args.target == "kfp":
            return _schedule_kfp(args, cloud, scratch)
        from kubeflow import vertex

        template = _compiled(args, cloud, "vertex", scratch)
        job = vertex.build_pipeline_job(
            cloud, str(template), display_name=template.stem, credentials=_anonymous_if_dry_run(args)
        )
        request = vertex.schedule_request(
            job, cloud, cron=args.cron, display_name=args.name or f"{template.stem}-schedule"
        )
        if args.dry_run:
            url = f"https://{cloud.region}-aiplatform.googleapis.com/v1/{request.parent}/schedules"
            return _dry_run(args, url, vertex.to_json(request))
        name = vertex.send_schedule(job, request)
    if args.json:
        print(json.dumps({"schedule": name, "cron": args.cron}, indent=1))
        return 0
    print(f"Created Vertex PipelineJobSchedule {name} ({args.cron})")
    return 0


def _schedule_local(args: argparse.Namespace) -> int:
    """The local daemon; with --json one decision (--once), printed as JSON."""
    from scheduler.daemon import LocalScheduler, run_daemon_from_args, settings_from_args

    if not args.json:
        return run_daemon_from_args(args)
    if not args.once:
        raise UsageError(
            "--json with --local needs --once: one decision to report (the daemon logs each one)"
        )
    scheduler = LocalScheduler(settings_from_args(args))
    decision = scheduler.check_once()
    print(
        json.dumps({"decision": decision, "runs": scheduler.runs, "state": scheduler.load_state()}, indent=1)
    )
    return 0


def _schedule_kfp(args: argparse.Namespace, cloud, scratch: str) -> int:
    from kubeflow import kfp_recurring

    template = _compiled(args, cloud, "kfp", scratch)
    run = kfp_recurring.recurring_run(
        cloud, str(template), cron=args.cron, job_name=args.name or f"{template.stem}-schedule"
    )
    if args.dry_run:
        url = f"{cloud.kfp.host or '<kfp.host>'}/apis/v2beta1/recurringruns"
        return _dry_run(args, url, json.dumps(kfp_recurring.request_body(run), indent=2, sort_keys=True))
    if not cloud.kfp.host:
        raise UsageError("set kfp.host in the cloud config to the Kubeflow Pipelines endpoint")
    run_id = kfp_recurring.send(run, cloud.kfp.host)
    if args.json:
        print(json.dumps({"recurring_run": run_id, "cron": args.cron}, indent=1))
        return 0
    print(f"Created Kubeflow Pipelines recurring run {run_id} ({args.cron})")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    compile_parser = subparsers.add_parser(
        "compile",
        help="compile the pipeline for Vertex AI (.json PipelineJob) or Kubeflow (.yaml PipelineSpec)",
    )
    compile_parser.add_argument("--target", choices=("vertex", "kfp"), default="vertex")
    compile_parser.add_argument(
        "--output-dir", default="build", help="where to write the file (default ./build)"
    )
    _add_cloud_config(compile_parser)
    _add_pipeline_config(compile_parser)
    compile_parser.set_defaults(func=_compile)

    submit = subparsers.add_parser("submit", help="run the pipeline once on Vertex AI Pipelines")
    _add_cloud_config(submit)
    submit.add_argument("--template", help="a compiled .json (default: compile now)")
    submit.add_argument("--no-cache", action="store_true", help="rerun every step even if cached")
    submit.add_argument("--dry-run", action="store_true", help="print the exact request; send nothing")
    _add_pipeline_config(submit)
    submit.add_argument("--json", action="store_true", help="print the request or the created job as JSON")
    submit.set_defaults(func=_submit)

    schedule = subparsers.add_parser(
        "schedule", help="retrain on a cron: Vertex schedule, KFP recurring run, or --local daemon"
    )
    schedule.add_argument(
        "--cron", help="Vertex: 5 fields, optional 'TZ=Europe/Berlin ' prefix; KFP: 6 fields, seconds first"
    )
    schedule.add_argument("--target", choices=("vertex", "kfp"), default="vertex")
    schedule.add_argument("--name", help="schedule display name (default <pipeline>-schedule)")
    schedule.add_argument("--template", help="a compiled .json/.yaml (default: compile now)")
    schedule.add_argument("--dry-run", action="store_true", help="print the exact request; send nothing")
    schedule.add_argument(
        "--json",
        action="store_true",
        help="print the request, the schedule or (--local --once) the decision as JSON",
    )
    _add_cloud_config(schedule)
    local = schedule.add_argument_group("on this machine (--local)")
    local.add_argument(
        "--local", action="store_true", help="run the local scheduler daemon in the foreground"
    )
    add_home(local)
    _add_pipeline_config(local)
    local.add_argument(
        "--poll-seconds", type=float, default=60.0, help="how often to look for new spans (default 60)"
    )
    local.add_argument("--max-runs", type=int, help="stop after this many pipeline runs (tests, demos)")
    local.add_argument("--once", action="store_true", help="check once, run if needed, and exit (cron)")
    local.add_argument("--run-command", help="the retraining command (default: `tfx-canary run --home HOME`)")
    local.add_argument(
        "--after-push",
        help="command run after a push to continue the canary; {version} is replaced by the new version",
    )
    schedule.set_defaults(func=_schedule)
