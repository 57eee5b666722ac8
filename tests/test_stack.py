"""The native parts of the TFX stack work on this host, not just import.

ml-metadata and tensorflow-data-validation are the two packages patched for glibc < 2.39
(tools/wheel_compat); these tests drive their C++ code paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest


def test_ml_metadata_sqlite_round_trip(tmp_path: Path) -> None:
    from ml_metadata import errors, metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "mlmd.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)

    model_type = metadata_store_pb2.ArtifactType(name="SmokeModel")
    model_type.properties["version"] = metadata_store_pb2.INT
    model_type_id = store.put_artifact_type(model_type)
    [train_type_id] = [store.put_execution_type(metadata_store_pb2.ExecutionType(name="SmokeTrainer"))]

    artifact = metadata_store_pb2.Artifact(type_id=model_type_id, uri=str(tmp_path / "model"))
    artifact.properties["version"].int_value = 7
    artifact.custom_properties["blessed"].int_value = 1
    [artifact_id] = store.put_artifacts([artifact])
    [execution_id] = store.put_executions([metadata_store_pb2.Execution(type_id=train_type_id)])
    event = metadata_store_pb2.Event(
        artifact_id=artifact_id, execution_id=execution_id, type=metadata_store_pb2.Event.OUTPUT
    )
    store.put_events([event])

    # Read back through a fresh connection, by type, by filter query and through the event.
    reopened = metadata_store.MetadataStore(config)
    [by_type] = reopened.get_artifacts_by_type("SmokeModel")
    assert by_type.id == artifact_id
    assert by_type.properties["version"].int_value == 7
    [by_uri] = reopened.get_artifacts_by_uri(str(tmp_path / "model"))
    assert by_uri.custom_properties["blessed"].int_value == 1
    [read_event] = reopened.get_events_by_execution_ids([execution_id])
    assert (read_event.artifact_id, read_event.type) == (artifact_id, metadata_store_pb2.Event.OUTPUT)
    assert reopened.get_artifacts_by_type("NoSuchType") == []
    # MLMD 1.21 dropped ZetaSQL: filter queries are gone, so project code must not use them.
    with pytest.raises(errors.UnimplementedError, match="filter_query is not supported"):
        reopened.get_artifacts(list_options=metadata_store.ListOptions(filter_query="uri = 'x'"))


def test_tfdv_infers_schema_and_detects_anomalies() -> None:
    import tensorflow_data_validation as tfdv

    good = pd.DataFrame(
        {"fare": [5.0, 7.5, 12.0, 3.25] * 5, "company": ["Flash Cab", "Taxi Affiliation"] * 10}
    )
    schema = tfdv.infer_schema(tfdv.generate_statistics_from_dataframe(good))
    assert {f.name for f in schema.feature} == {"fare", "company"}

    bad = pd.DataFrame({"company": ["Flash Cab", "Unknown Co"] * 10})  # fare missing, new company
    anomalies = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(bad), schema)
    assert set(anomalies.anomaly_info) == {"fare", "company"}
    assert "Unknown Co" in anomalies.anomaly_info["company"].description

    clean = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(good), schema)
    assert not clean.anomaly_info


def test_tft_preprocessing_fn_through_beam(tmp_path: Path) -> None:
    import apache_beam as beam
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    def preprocessing_fn(inputs):
        return {
            "miles_scaled": tft.scale_to_0_1(inputs["miles"]),
            "company_id": tft.compute_and_apply_vocabulary(inputs["company"]),
        }

    rows = [
        {"miles": 1.0, "company": "b"},
        {"miles": 3.0, "company": "a"},
        {"miles": 5.0, "company": "b"},
    ]
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(
            {"miles": tf.io.FixedLenFeature([], tf.float32), "company": tf.io.FixedLenFeature([], tf.string)}
        )
    )
    # DirectRunner would first try to download Beam's Prism binary: name the runner explicitly.
    with beam.Pipeline(runner="FnApiRunner") as pipeline, tft_beam.Context(temp_dir=str(tmp_path)):
        data = pipeline | beam.Create(rows)
        (transformed, _), _ = (data, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
        _ = (
            transformed
            | beam.Map(lambda row: json.dumps({key: float(value) for key, value in row.items()}))
            | beam.io.WriteToText(str(tmp_path / "out"), shard_name_template="")
        )

    lines = (tmp_path / "out").read_text().splitlines()
    results = sorted((json.loads(line) for line in lines), key=lambda r: r["miles_scaled"])
    assert [round(r["miles_scaled"], 6) for r in results] == [0.0, 0.5, 1.0]
    # "b" is the most frequent value, so it gets vocabulary id 0.
    assert [r["company_id"] for r in results] == [0, 1, 0]


def test_model_server_config_text_proto_parses() -> None:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    text = """
    model_config_list {
      config {
        name: "taxi"
        base_path: "/models/taxi"
        model_platform: "tensorflow"
        model_version_policy { specific { versions: 42 versions: 43 } }
        version_labels { key: "stable" value: 42 }
        version_labels { key: "canary" value: 43 }
      }
    }
    """
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    [model] = config.model_config_list.config
    assert list(model.model_version_policy.specific.versions) == [42, 43]
    assert dict(model.version_labels) == {"stable": 42, "canary": 43}
    with pytest.raises(text_format.ParseError, match="no_such_field"):
        text_format.Parse(
            "model_config_list { config { no_such_field: 1 } }", model_server_config_pb2.ModelServerConfig()
        )


def test_kfp_and_kubeflow_v2_runner_available() -> None:
    import kfp
    from tfx import v1 as tfx

    assert kfp.__version__.startswith("2.16.")
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner
    config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image="example/image:1")
    assert runner(config=config, output_filename="pipeline.json") is not None
