"""The load check on planted candidates: each in a real child model server, called over REST and gRPC.

A good model is blessed with a latency per signature and protocol; a signature that raises at call time,
a model slower than the budget and a model that cannot load are not, each with one line naming why; a
check whose own server cannot start raises, and no child process outlives the check or a killed parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from components.load_check.check import (
    Budget,
    ServerStartError,
    check_model,
    check_on,
    child_server,
    server_error,
)
from components.load_check.child import PARENT_PID_ENV
from components.load_check.requests import from_warmup_file, rest_body, to_warmup_file
from fixtures.models import write_fixture_model
from serving.errors import ServingError
from serving.servable import read_signature_defs
from tests.rollout.bad_models import write_slow_model
from tfx_canary.errors import ConfigError

MODEL = "candidate"


def x_requests(values=(1.0, 2.0, 3.0), signature: str = "serving_default") -> list:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    requests = []
    for value in values:
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = signature
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([value], dtype=tf.float32))
        requests.append(request)
    return requests


def example_requests(signature: str) -> list:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    example = tf.train.Example(
        features=tf.train.Features(
            feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[2.0]))}
        )
    )
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto([example.SerializeToString()], dtype=tf.string))
    return [request]


def save_module(directory: Path, module, signatures: dict) -> str:
    import tensorflow as tf

    tf.saved_model.save(module, str(directory), signatures=signatures)
    return str(directory)


def raising_model(directory: Path) -> str:
    """Loads fine; ``serving_default`` answers, ``broken`` fails every call with a planted message."""
    import tensorflow as tf

    class Planted(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def fine(self, x):
            return {"y": x + 1.0}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def broken(self, x):
            with tf.control_dependencies(
                [tf.debugging.Assert(tf.reduce_all(x < -1e9), ["planted call failure"])]
            ):
                return {"y": tf.identity(x)}

    module = Planted()
    return save_module(directory, module, {"serving_default": module.fine, "broken": module.broken})


def children_of_this_process() -> set[int]:
    """Live processes started by a load check in this test process (by the environment it sets)."""
    mine = f"{PARENT_PID_ENV}={os.getpid()}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mine in (entry / "environ").read_bytes().split(b"\0"):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def new_children(before: set[int], count: int, timeout_s: float = 10.0) -> set[int]:
    """The load check's processes started since ``before``, once there are ``count`` of them: a child's
    ``/proc/<pid>/environ`` reads empty until its exec has set up the new image, which can be a moment
    after Popen returns on a loaded machine."""
    deadline = time.monotonic() + timeout_s
    while len(started := children_of_this_process() - before) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return started


def running(pid: int) -> bool:
    """Whether ``pid`` is alive (a zombie waiting to be reaped has exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One child server for the planted candidates (each loaded in turn, as ``check_model`` would)."""
    with child_server(str(tmp_path_factory.mktemp("shared-server")), 180) as running_server:
        yield running_server


def test_a_good_model_is_blessed_with_every_signature_timed_on_both_protocols(tmp_path):
    model = write_fixture_model(tmp_path / "m", 1)
    requests = x_requests() + example_requests("classify_x_to_y") + example_requests("regress_x_to_y")
    log = tmp_path / "server.log"
    before = children_of_this_process()

    report = check_model(str(model), MODEL, requests, Budget(latency_ms=2000), server_log=str(log))

    assert report.blessed, report.reason
    timed = {(m.signature, m.protocol) for m in report.measurements}
    assert timed == {
        (s, p) for s in ("serving_default", "classify_x_to_y", "regress_x_to_y") for p in ("rest", "grpc")
    }
    assert all(m.error is None and 0 < m.median_ms < 2000 for m in report.measurements)
    assert "3 signature(s) answered over REST and gRPC" in report.reason
    assert "Running gRPC ModelServer at 127.0.0.1:" in log.read_text()  # loopback only
    assert children_of_this_process() == before


def test_a_signature_that_raises_at_call_time_is_not_blessed(tmp_path, server):
    model = raising_model(tmp_path / "raising")
    requests = x_requests() + x_requests(signature="broken")

    report = check_on(server, model, "raising", requests, Budget(latency_ms=2000))

    assert not report.blessed
    assert report.reason.startswith("signature 'broken' failed over REST: HTTP 400:")
    assert "planted call failure" in report.reason
    assert "(and 1 more)" in report.reason  # gRPC failed too
    grpc_failure = next(m for m in report.measurements if (m.signature, m.protocol) == ("broken", "grpc"))
    assert grpc_failure.error.startswith("INVALID_ARGUMENT:")
    fine = [m for m in report.measurements if m.signature == "serving_default"]
    assert len(fine) == 2 and all(m.error is None for m in fine)


def test_a_model_slower_than_the_budget_is_not_blessed_while_a_fast_one_passes(tmp_path, server):
    budget = Budget(latency_ms=40, timed_requests=3)
    fast = check_on(server, str(write_fixture_model(tmp_path / "fast", 1)), "fast", x_requests(), budget)
    # a wall-clock wait, not arithmetic: as slow on a fast CPU as on a slow one (a 256x256 matmul loop
    # that took ~190 ms on one machine took 37 ms on another)
    slow_dir = write_slow_model(tmp_path / "slow", 1, delay_ms=150)
    slow = check_on(server, str(slow_dir), "slow", x_requests(), budget)

    assert fast.blessed, fast.reason
    assert not slow.blessed
    assert "signature 'serving_default' takes" in slow.reason
    assert "at batch 1 over REST (median of 3), over the 40 ms budget" in slow.reason
    assert all(m.median_ms > 40 for m in slow.measurements)


def test_a_model_that_cannot_load_is_not_blessed_with_the_servers_error(tmp_path, server):
    model = write_fixture_model(tmp_path / "m", 1)
    for shard in (model / "variables").glob("variables.data-*"):
        shard.unlink()

    report = check_on(server, str(model), "unloadable", x_requests(), Budget())

    assert not report.blessed
    assert report.reason.startswith("the model did not load: ")
    assert "unloadable" in report.reason and "variables" in report.reason
    assert report.measurements == []
    # the same server goes on to check the next candidate
    assert check_on(
        server, str(write_fixture_model(tmp_path / "ok", 1)), "ok", x_requests(), Budget()
    ).blessed


def test_a_server_that_cannot_start_fails_the_check_and_leaves_no_process(tmp_path):
    model = write_fixture_model(tmp_path / "m", 1)
    before = children_of_this_process()

    with pytest.raises(ServerStartError, match=r"did not start within 0.2 s"):
        check_model(str(model), MODEL, x_requests(), Budget(start_timeout_s=0.2))
    assert children_of_this_process() == before


def test_the_child_server_dies_with_a_killed_parent(tmp_path):
    """SIGKILL leaves the parent no ``finally``: the kernel ends the child (PR_SET_PDEATHSIG)."""
    script = textwrap.dedent(
        """
        import sys, time
        from components.load_check.check import child_server
        with child_server(sys.argv[1], 120) as server:
            print(server.process.pid, flush=True)
            time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 20
        while running(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not running(child), "the child model server outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency_ms": 0}, "latency budget 0 ms is out of range"),
        ({"latency_ms": 120_000}, "out of range"),
        ({"timed_requests": 0}, "timed requests 0 is out of range [1, 1000]"),
        ({"timed_requests": 1001}, "timed requests 1001"),
    ],
)
def test_a_budget_out_of_range_is_a_config_error(kwargs, message):
    with pytest.raises(ConfigError) as raised:
        Budget(**kwargs)
    assert message in str(raised.value)


def test_warmup_file_round_trip_and_the_rest_body_equals_the_grpc_request(tmp_path):
    import json

    requests = x_requests((float("nan"), 2.5)) + example_requests("classify_x_to_y")
    path = tmp_path / "warmup"
    path.write_bytes(to_warmup_file(requests))
    assert from_warmup_file(str(path)) == requests
    with pytest.raises(ValueError, match="at most 1000"):
        to_warmup_file(requests * 400)

    assert b"NaN" in rest_body(requests[0])  # TF Serving's parser takes the bare token
    body = json.loads(rest_body(requests[2]))
    assert body["signature_name"] == "classify_x_to_y"
    assert list(body["inputs"]["inputs"][0]) == ["b64"]


def test_server_error_prefers_the_error_line():
    assert server_error("loading\nerror: Failed to start server. Error: bind\nbye\n") == (
        "Failed to start server. Error: bind"
    )
    assert server_error("a\nlast words\n") == "last words"
    assert server_error("") == "no output"


def test_an_empty_csv_cell_becomes_the_missing_marker_in_a_named_tensor_request():
    """CsvExampleGen writes an empty cell as a feature with no values; the raw-features request still
    gets one (the signature's missing marker) instead of being dropped."""
    import math

    import tensorflow as tf

    from components.load_check.requests import _requests

    example = tf.train.Example()
    example.features.feature["company"].bytes_list.SetInParent()  # present, no values
    example.features.feature["fare"].float_list.value.append(10.5)
    example.features.feature["trip_seconds"].int64_list.SetInParent()
    inputs = {
        "company": tf.TensorSpec([None], tf.string),
        "fare": tf.TensorSpec([None], tf.float32),
        "trip_seconds": tf.TensorSpec([None], tf.int64),
        "tips": tf.TensorSpec([None], tf.float32),  # absent altogether
    }
    [request] = _requests("serving_raw", inputs, [example.SerializeToString()])
    values = {name: tf.make_ndarray(tensor).tolist() for name, tensor in request.inputs.items()}
    assert values["company"] == [b""] and values["fare"] == [10.5] and values["trip_seconds"] == [-1]
    assert math.isnan(values["tips"][0])


def test_signature_inputs_read_from_saved_model_pb_match_the_loaded_signatures(tmp_path):
    """Read without loading the model, the inputs are what the loaded model's signatures declare; the
    init-op signature TF2 adds is not one to call; a model with no ``serve`` graph names the tags."""
    import grpc
    import tensorflow as tf

    from components.load_check.requests import signature_inputs

    model = str(write_fixture_model(tmp_path / "m", 1))
    found = signature_inputs(model)

    assert next(iter(found)) == "serving_default"  # checked first
    assert "__saved_model_init_op" in read_signature_defs(model) and "__saved_model_init_op" not in found
    loaded = tf.saved_model.load(model).signatures
    assert set(found) == set(loaded) == {"serving_default", "classify_x_to_y", "regress_x_to_y"}
    assert found["serving_default"] == {
        name: tf.TensorSpec(spec.shape, spec.dtype, name)
        for name, spec in loaded["serving_default"].structured_input_signature[1].items()
    }
    assert found["classify_x_to_y"] is None and found["regress_x_to_y"] is None  # serialized examples

    from tensorflow.core.protobuf import saved_model_pb2

    pb = Path(model) / "saved_model.pb"
    saved = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    saved.meta_graphs[0].meta_info_def.tags[:] = ["train"]
    pb.write_bytes(saved.SerializeToString())
    with pytest.raises(ServingError) as raised:
        signature_inputs(model)
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.message == "Could not find meta graph def matching supplied tags: { serve }"
