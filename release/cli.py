"""``tfx-canary status|promote|rollback|retire|history``: release commands over the emitted config,
ML Metadata and the model server's REST status.

Every command that changes the config records an MLMD execution (actor, reason, metrics) so
``history`` and ``history --at`` answer "what was stable for model M at time T, and why". Errors are
raised as ``tfx_canary.errors`` types; ``tfx_canary.cli`` prints them and picks the exit code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import logging

from tfx_canary.options import add_serving_options, serving_paths

log = logging.getLogger(__name__)


def _target(args: argparse.Namespace, with_audit: bool = True):
    from release import audit
    from release.metadata import open_store
    from release.operations import Target
    from release.server_client import ServerClient

    home, serving_root, metadata = serving_paths(args)
    auditor = None
    if with_audit:
        actor = getattr(args, "actor", None) or getpass.getuser()
        auditor = audit.Audit(open_store(metadata), home.releases_dir, actor)
    return Target(
        serving_root=serving_root,
        model=args.model,
        server=ServerClient(args.server) if args.server else None,
        load_timeout_s=getattr(args, "load_timeout", 300.0),
        audit=auditor,
    )


def _status_rows(args: argparse.Namespace) -> list[dict]:
    from release import config_store as cs
    from release.server_client import ServerClient, ServerUnreachable
    from release.serving_dir import CONFIG_NAME, join, read_text

    _, serving_root, _ = serving_paths(args)
    path = join(serving_root, CONFIG_NAME)
    config = cs.parse_config(read_text(path) or "", path)
    names = [args.model] if args.model else [e.name for e in config.model_config_list.config]
    server = ServerClient(args.server) if args.server else None
    rows = []
    for name in names:
        snapshot = cs.read_release(serving_root, name)
        state = snapshot.state
        try:
            states = server.version_status(name) if server else {}
        except ServerUnreachable as e:
            states = {"error": str(e)}
        rows.append(
            {
                "model": name,
                "base_path": snapshot.base_path,
                "generation": state.generation,
                "versions": list(state.versions),
                "labels": state.label_map,
                "canary_weight": state.canary_weight,
                "shadow_fraction": state.shadow_fraction,
                "step": state.step,
                "verdict": state.verdict,
                "hold_reason": state.hold_reason,
                "phase2_pending": state.candidate,
                "retain_until": state.retain_until,
                "server": {str(k): v for k, v in states.items()},
            }
        )
    return rows


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return dt.datetime.fromtimestamp(seconds).isoformat(timespec="seconds")


def status(args: argparse.Namespace) -> int:
    if args.watch:
        from release.watch import watch_status
        from tfx_canary.errors import UsageError
        from tfx_canary.live import LiveOutput

        if args.json:
            raise UsageError("--watch redraws the status; use --json without it for one answer")
        home, _, _ = serving_paths(args)
        return watch_status(lambda: _status_rows(args), home.releases_dir, args.interval, LiveOutput())
    rows = _status_rows(args)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no models in the serving config yet")
    for row in rows:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(row["labels"].items())) or "none"
        print(f"model {row['model']} (generation {row['generation']}, {row['base_path']})")
        print(f"  labels: {labels}")
        for version in row["versions"]:
            server = row["server"].get(str(version), {})
            named = [k for k, v in row["labels"].items() if v == version]
            state = server.get("state", "unknown") if isinstance(server, dict) else "unknown"
            print(f"  version {version}: {state}{' (' + ', '.join(sorted(named)) + ')' if named else ''}")
        if "error" in row["server"]:
            print(f"  server: {row['server']['error']}")
        if row["phase2_pending"] is not None:
            print(f"  waiting for phase 2: version {row['phase2_pending']} is listed but not labelled")
        print(
            f"  traffic: canary {row['canary_weight']:.0%}, shadow {row['shadow_fraction']:.0%}; "
            f"step {row['step'] or '-'}; verdict {row['verdict'] or '-'}"
        )
        if row["hold_reason"]:
            print(f"  held: {row['hold_reason']}")
        if row["retain_until"]:
            print(f"  previous version retained until {_when(row['retain_until'])}")
    return 0


def promote(args: argparse.Namespace) -> int:
    from release import operations

    target = _target(args)
    if args.phase2:
        update = operations.finish_phase2(target, reason=args.reason or "phase 2 finished by hand")
    else:
        update = operations.promote(target, args.reason or "promoted by hand", retain_seconds=args.retain)
    _report(update.after.state, update.changed)
    return 0


def rollback(args: argparse.Namespace) -> int:
    from release import operations

    target = _target(args)
    updates = operations.rollback(target, args.reason or "rolled back by hand")
    _report(updates[-1].after.state, True)
    return 0


def retire(args: argparse.Namespace) -> int:
    from release import operations

    update = operations.retire(_target(args))
    _report(update.after.state, update.changed)
    return 0


def _report(state, changed: bool) -> None:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(state.label_map.items()))
    word = "now" if changed else "unchanged"
    print(
        f"{state.model}: generation {state.generation} {word}: "
        f"versions {list(state.versions)}, labels {labels}"
    )


def _parse_time(text: str) -> float:
    from tfx_canary.errors import UsageError

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(
            f"--at {text!r} is neither an ISO time (2026-01-01T12:00) nor epoch seconds"
        ) from None


def history(args: argparse.Namespace) -> int:
    from release import audit
    from release.metadata import open_store

    _, _, metadata = serving_paths(args)
    store = open_store(metadata)
    if args.at:
        answer = audit.stable_at(store, args.model, _parse_time(args.at))
        if args.json:
            print(json.dumps(answer, indent=1))
        elif answer is None:
            print(f"{args.model}: nothing was released at {args.at}")
        else:
            cause = answer["since"]
            print(
                f"{args.model} at {args.at}: stable = version {answer['stable']} "
                f"(generation {answer['generation']}), "
                f"since {_when(cause['at'])} by {cause['actor']}: {cause['kind']}: {cause['reason']}"
            )
        return 0
    entries = [e for e in audit.history(store, args.model) if e["kind"] != "unchanged"]
    if args.json:
        print(json.dumps(entries, indent=1))
        return 0
    for e in entries:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(e["labels"].items())) or "none"
        extra = f" verdict={e['analysis'].get('verdict')}" if e["analysis"] else ""
        metrics = f" metrics={json.dumps(e['metrics'], sort_keys=True)}" if e["metrics"] else ""
        print(
            f"{_when(e['at'])} gen {e['generation']:>3} {e['kind']:<13} {e['actor']:<10} "
            f"versions={e['versions']} labels[{labels}] weight={e['canary_weight']:.0%}{extra}{metrics} "
            f"- {e['reason']}"
        )
    if not entries:
        print(f"no history for model {args.model!r}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "status", help="models, versions, states, labels, traffic weights, step and verdict"
    )
    add_serving_options(p, model_required=False)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--watch", action="store_true", help="keep it up to date, with a running rollout's step (Ctrl-C ends)"
    )
    p.add_argument("--interval", type=float, default=1.0, help="seconds between redraws (default 1)")
    p.set_defaults(func=status)

    p = subparsers.add_parser(
        "promote", help="move `stable` to the canary (or --phase2: label a loaded version)"
    )
    add_serving_options(p)
    p.add_argument("--phase2", action="store_true", help="finish phase 2 of a pushed version instead")
    p.add_argument("--retain", type=float, default=3600.0, help="rollback window in seconds (default 3600)")
    p.add_argument("--reason", default="")
    p.add_argument("--actor", default="")
    p.add_argument("--load-timeout", type=float, default=300.0)
    p.set_defaults(func=promote)

    p = subparsers.add_parser(
        "rollback", help="undo the canary or the last promotion (label flip, never re-push)"
    )
    add_serving_options(p)
    p.add_argument("--reason", default="")
    p.add_argument("--actor", default="")
    p.add_argument("--load-timeout", type=float, default=300.0)
    p.set_defaults(func=rollback)

    p = subparsers.add_parser("retire", help="unload the `previous` version once its rollback window passed")
    add_serving_options(p)
    p.add_argument("--actor", default="")
    p.set_defaults(func=retire)

    p = subparsers.add_parser("history", help="every release transition with time, actor, reason, metrics")
    add_serving_options(p)
    p.add_argument("--at", help="instead: what was stable at this time (ISO time or epoch seconds), and why")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=history)
