"""MergeSpans' copy: every split of every span in one artifact; spans from an older layout refused clearly."""

import pytest
from tfx.types import artifact_utils, standard_artifacts

from components.merge_spans.merge import merge_spans


def span_artifact(root, span: int, splits: list[str]) -> standard_artifacts.Examples:
    artifact = standard_artifacts.Examples()
    artifact.uri = str(root / f"span-{span}")
    artifact.split_names = artifact_utils.encode_split_names(splits)
    artifact.set_int_custom_property("span", span)
    artifact.set_string_custom_property("payload_format", "FORMAT_TF_EXAMPLE")
    for split in splits:
        folder = root / f"span-{span}" / f"Split-{split}"
        folder.mkdir(parents=True)
        (folder / "data.gz").write_bytes(f"{span}-{split}".encode())
    return artifact


def merged(root) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "merged")
    return examples


def test_every_split_of_every_span_is_copied(tmp_path):
    spans = [span_artifact(tmp_path, s, ["eval", "train"]) for s in (2, 3)]
    examples = merged(tmp_path)
    merge_spans(spans, examples)
    assert artifact_utils.decode_split_names(examples.split_names) == ["eval", "train"]
    train = tmp_path / "merged" / "Split-train"
    assert sorted(p.name for p in train.iterdir()) == ["span-2-data.gz", "span-3-data.gz"]
    assert (train / "span-3-data.gz").read_bytes() == b"3-train"
    assert examples.get_string_custom_property("spans") == "[2, 3]"
    assert examples.get_int_custom_property("span") == 3


def test_spans_with_other_splits_are_refused_with_what_to_do(tmp_path):
    spans = [span_artifact(tmp_path, 1, ["train"]), span_artifact(tmp_path, 2, ["eval", "train"])]
    with pytest.raises(
        ValueError, match=r"spans \[1\] have \[\('train',\)\], the window needs \['eval', 'train'\]"
    ):
        merge_spans(spans, merged(tmp_path))
    assert not (tmp_path / "merged").exists()  # nothing half-merged
