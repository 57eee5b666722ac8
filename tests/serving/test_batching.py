"""Batching: merging, padding, limits, queue-full 503, timeout 504, and identical results."""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.batching import BatchScheduler
from serving.configs import BatchingOptions, ConfigError, read_batching_parameters
from serving.errors import ServingError
from serving.servable import Servable
from tests.serving.conftest import http_request, start_server


class RecordingSignature:
    """A real signature that also remembers the batch sizes it was called with."""

    def __init__(self, signature) -> None:
        self.signature = signature
        self.batch_sizes: list[int] = []

    def __call__(self, inputs):
        self.batch_sizes.append(len(inputs["x"]))
        return self.signature(inputs)


@pytest.fixture(scope="module")
def signature(half_plus_versions):
    return Servable("m", 1, str(half_plus_versions / "1")).signature("serving_default")


def _x(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array(values, dtype=np.float32)}


def test_concurrent_calls_are_merged_and_each_caller_gets_its_rows(signature):
    recording = RecordingSignature(signature)
    scheduler = BatchScheduler(
        BatchingOptions(max_batch_size=16, batch_timeout_micros=200_000, num_batch_threads=1)
    )
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: scheduler.run(recording, _x(i, i + 0.5), 10), range(8)))
    finally:
        scheduler.stop()
    for i, outputs in enumerate(results):
        assert outputs["y"].tolist() == [0.5 * i + 2, 0.5 * (i + 0.5) + 2]
    assert sum(recording.batch_sizes) == 16
    assert len(recording.batch_sizes) < 8  # merged: fewer model calls than requests


def test_batches_are_padded_to_allowed_sizes(signature):
    recording = RecordingSignature(signature)
    scheduler = BatchScheduler(
        BatchingOptions(max_batch_size=8, allowed_batch_sizes=(4, 8), num_batch_threads=1)
    )
    try:
        outputs = scheduler.run(recording, _x(1.0, 2.0, 3.0), 10)
    finally:
        scheduler.stop()
    assert recording.batch_sizes == [4]
    assert outputs["y"].tolist() == [2.5, 3.0, 3.5]


def test_a_request_larger_than_max_batch_size_is_rejected(signature):
    scheduler = BatchScheduler(BatchingOptions(max_batch_size=2, num_batch_threads=1))
    try:
        with pytest.raises(ServingError, match="Task size 3 is larger than maximum input batch size 2"):
            scheduler.run(signature, _x(1.0, 2.0, 3.0), 10)
    finally:
        scheduler.stop()


def test_batching_parameters_file_is_strict(tmp_path):
    good = tmp_path / "batching.txt"
    good.write_text(
        "max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
        "max_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 8 }\n"
        "allowed_batch_sizes: 32\nallowed_batch_sizes: 128\n"
    )
    options = read_batching_parameters(str(good), default_threads=2)
    assert (options.max_batch_size, options.num_batch_threads, options.allowed_batch_sizes) == (
        128,
        8,
        (32, 128),
    )
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("max_batch_size { value: 8 }\nmax_batch_sizes { value: 9 }\n")
    with pytest.raises(ConfigError, match='no field named "max_batch_sizes"'):
        read_batching_parameters(str(unknown), default_threads=2)
    inconsistent = tmp_path / "inconsistent.txt"
    inconsistent.write_text("max_batch_size { value: 64 }\nallowed_batch_sizes: 32\n")
    with pytest.raises(ConfigError, match="final entry in allowed_batch_sizes must equal max_batch_size"):
        read_batching_parameters(str(inconsistent), default_threads=2)


def _batching_file(tmp_path, **values) -> str:
    path = tmp_path / "batching.txt"
    path.write_text("".join(f"{k} {{ value: {v} }}\n" for k, v in values.items()))
    return str(path)


def _batching_server(contract_root, batching: str, **extra):
    """The contract models served with batching on, with ``batching`` as the batching parameters file."""
    return start_server(
        model_config_file=str(contract_root / "models.config"),
        allow_version_labels_for_unavailable_models=True,
        enable_batching=True,
        batching_parameters_file=batching,
        **extra,
    )


def _plain_and_batched(config: str, batching: str, calls: list, workers: int) -> dict[str, list]:
    """The (status, headers, body) answers to ``calls`` ((method suffix, body) pairs), sent concurrently to
    a server without batching and then to one with it."""
    answers = {}
    for mode, extra in (
        ("plain", {}),
        ("batched", {"enable_batching": True, "batching_parameters_file": batching}),
    ):
        with (
            start_server(
                model_config_file=config, allow_version_labels_for_unavailable_models=True, **extra
            ) as s,
            ThreadPoolExecutor(workers) as pool,
        ):
            answers[mode] = list(
                pool.map(
                    lambda call: http_request(s.rest_port, "POST", f"/v1/models/half_plus{call[0]}", call[1]),
                    calls,
                )
            )
    return answers


def test_results_are_identical_with_and_without_batching(tmp_path, contract_root):
    config = str(contract_root / "models.config")
    rng = random.Random(7)
    bodies = [
        {"instances": [round(rng.uniform(-100, 100), 3) for _ in range(rng.randint(1, 4))]} for _ in range(48)
    ]
    batching = _batching_file(tmp_path, max_batch_size=32, batch_timeout_micros=2000, num_batch_threads=2)
    calls = [(":predict", body) for body in bodies]
    answers = {
        mode: [body for _status, _headers, body in got]
        for mode, got in _plain_and_batched(config, batching, calls, workers=16).items()
    }
    assert answers["batched"] == answers["plain"]
    assert answers["plain"][0] == {"predictions": [0.5 * x + 3.0 for x in bodies[0]["instances"]]}


def test_full_queue_is_503_and_timeout_is_504(tmp_path, contract_root):
    batching = _batching_file(
        tmp_path,
        max_batch_size=2,
        batch_timeout_micros=3_000_000,
        max_enqueued_batches=1,
        num_batch_threads=1,
    )
    with _batching_server(contract_root, batching, rest_api_timeout_in_ms=1000) as server:
        path = "/v1/models/half_plus:predict"
        first: list = []
        waiting = threading.Thread(
            target=lambda: first.append(http_request(server.rest_port, "POST", path, {"instances": [1.0]}))
        )
        waiting.start()
        # The first request holds the only queue slot in an open batch that waits 3 s to fill up.
        server.manager.wait_until(lambda: server.scheduler._queues, timeout=10)
        status, _h, body = http_request(server.rest_port, "POST", path, {"instances": [1.0, 2.0]})
        assert status == 503 and "queue" in body["error"]
        waiting.join()
        assert first[0][0] == 504  # it waited longer than --rest_api_timeout_in_ms


def test_batched_classify_and_regress_match_unbatched(tmp_path, contract_root):
    config = str(contract_root / "models.config")
    batching = _batching_file(tmp_path, max_batch_size=16, batch_timeout_micros=2000, num_batch_threads=2)
    calls = [
        (":classify", {"signature_name": "classify_x_to_y", "examples": [{"x": float(i)}, {"x": i + 0.5}]})
        for i in range(12)
    ] + [(":regress", {"signature_name": "regress_x_to_y", "examples": [{"x": float(i)}]}) for i in range(12)]
    answers = _plain_and_batched(config, batching, calls, workers=12)
    assert [a[0] for a in answers["batched"]] == [200] * len(calls)
    assert [a[2] for a in answers["batched"]] == [a[2] for a in answers["plain"]]
    assert answers["plain"][-1][2] == {"results": [0.5 * 11 + 3.0]}


class _Recorder:
    """Wraps a loaded signature's function: the batch sizes it ran and the threads that parsed bodies."""

    def __init__(self, signature) -> None:
        self.function = signature.function
        self.batch_sizes: list[int] = []
        signature.function = self

    def __call__(self, **tensors):
        self.batch_sizes.append(int(next(iter(tensors.values())).shape[0]))
        return self.function(**tensors)


def test_batched_rest_requests_wait_without_holding_a_pool_thread(tmp_path, contract_root):
    # One REST pool thread, and a batch that only closes when 8 requests are in: on the event loop they
    # all wait together and run as one batch of 8.
    batching = _batching_file(tmp_path, max_batch_size=8, batch_timeout_micros=5_000_000, num_batch_threads=1)
    with _batching_server(contract_root, batching, rest_api_num_threads=1) as server:
        servable = server.manager.resolve("half_plus", None, None).servable
        recorder = _Recorder(servable.signatures["serving_default"])
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda x: http_request(
                        server.rest_port, "POST", "/v1/models/half_plus:predict", {"instances": [x]}
                    ),
                    [float(i) for i in range(8)],
                )
            )
    assert [status for status, _h, _b in answers] == [200] * 8
    assert [body["predictions"] for _s, _h, body in answers] == [[0.5 * i + 3.0] for i in range(8)]
    assert recorder.batch_sizes == [8]


def test_small_bodies_are_parsed_on_the_loop_and_large_ones_on_the_pool(tmp_path, contract_root, monkeypatch):
    from serving import rest_aio, rest_json

    parsed_on: list[str] = []
    parse_body = rest_json.parse_body

    def recording_parse(body):
        parsed_on.append(threading.current_thread().name)
        return parse_body(body)

    monkeypatch.setattr(rest_json, "parse_body", recording_parse)
    batching = _batching_file(tmp_path, max_batch_size=20_000, batch_timeout_micros=0, num_batch_threads=1)
    large = [round(i * 0.25, 2) for i in range(16_000)]
    assert len(json.dumps({"instances": large})) > rest_aio.LOOP_PARSE_MAX_BYTES
    with _batching_server(contract_root, batching) as server:
        path = "/v1/models/half_plus:predict"
        small_answer = http_request(server.rest_port, "POST", path, {"instances": [1.0]})
        large_answer = http_request(server.rest_port, "POST", path, {"instances": large})
    assert small_answer[0] == 200 and small_answer[2] == {"predictions": [3.5]}
    assert large_answer[0] == 200 and large_answer[2]["predictions"] == [0.5 * x + 3.0 for x in large]
    assert parsed_on[0] == "rest-server"  # the event loop's thread
    assert parsed_on[1].startswith("rest_")  # a pool thread


def test_batched_calls_without_a_deadline_wait_for_their_batch(tmp_path, contract_root):
    """A gRPC call with no deadline reports ~2**63 s remaining; a huge REST timeout is as long. Both must
    simply wait for the batch (they once failed with OverflowError inside the wait)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    batching = _batching_file(tmp_path, max_batch_size=4, batch_timeout_micros=1000)
    with _batching_server(
        contract_root,
        batching,
        rest_api_server="threading",  # its requests wait in BatchScheduler.run, like gRPC's
        rest_api_timeout_in_ms=2**62,
    ) as server:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus"
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([2.0], dtype=tf.float32))
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for timeout in (None, 10):
                response = stub.Predict(request, timeout=timeout)
                assert tf.make_ndarray(response.outputs["y"]).tolist() == [4.0]
        status, _headers, body = http_request(
            server.rest_port, "POST", "/v1/models/half_plus:predict", {"instances": [2.0]}
        )
        assert (status, body) == (200, {"predictions": [4.0]})


def test_batched_grpc_waits_on_the_event_loop_and_keeps_its_deadline(tmp_path, contract_root):
    """Batched gRPC calls queue on the REST batch scheduler from grpc.aio's loop: eight calls through a
    one-thread pool still run as one batch, and a call past its deadline ends DEADLINE_EXCEEDED, counted
    in the metrics as REST's would be."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving.monitoring import REQUEST_COUNT

    batching = _batching_file(tmp_path, max_batch_size=8, batch_timeout_micros=1_500_000, num_batch_threads=1)
    with _batching_server(contract_root, batching, grpc_max_threads=1) as server:
        servable = server.manager.resolve("half_plus", 1, None).servable
        recorder = _Recorder(servable.signatures["serving_default"])
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        )

        def call(x: float, timeout: float = 30):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "half_plus"
            request.model_spec.version.value = 1
            request.inputs["x"].CopyFrom(tf.make_tensor_proto([x], dtype=tf.float32))
            return tf.make_ndarray(stub.Predict(request, timeout=timeout).outputs["y"]).tolist()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, [float(i) for i in range(8)]))
        assert answers == [[0.5 * i + 2.0] for i in range(8)]
        assert recorder.batch_sizes == [8]  # one thread in the pool, yet all eight waited together
        with pytest.raises(grpc.RpcError) as raised:
            call(1.0, timeout=0.3)  # alone in a batch that closes after 1.5 s
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert server.manager.wait_until(
            lambda: server.metrics.value(REQUEST_COUNT, ("half_plus", "DEADLINE_EXCEEDED")) == 1, timeout=10
        )
