"""The span cache on its own: keys, complete entries only, eviction."""

from tfx.proto import example_gen_pb2

from components.window_ingest.ingest import EXAMPLES_FILE, STATISTICS_FILE
from components.window_ingest.span_cache import COMPLETE, SpanCache, entry_key
from pipeline.pipeline import _OUTPUT_CONFIG

SPLIT_CONFIG = _OUTPUT_CONFIG.split_config


def _span_files(folder, text):
    folders = {}
    for split in ("train", "eval"):
        examples, stats = folder / f"examples-{split}", folder / f"stats-{split}"
        examples.mkdir(parents=True)
        stats.mkdir(parents=True)
        (examples / EXAMPLES_FILE).write_text(f"{text} {split} examples")
        (stats / STATISTICS_FILE).write_text(f"{text} {split} stats")
        folders[split] = (str(examples), str(stats))
    return folders


def test_the_key_covers_the_span_its_files_and_the_split_config():
    key = entry_key(4, "fingerprint", SPLIT_CONFIG)
    assert key.startswith("span-4-") and key == entry_key(4, "fingerprint", SPLIT_CONFIG)
    other_split = example_gen_pb2.SplitConfig()
    other_split.CopyFrom(SPLIT_CONFIG)
    other_split.splits[0].hash_buckets += 1
    assert len({key, entry_key(5, "fingerprint", SPLIT_CONFIG), entry_key(4, "other", SPLIT_CONFIG),
                entry_key(4, "fingerprint", other_split)}) == 4  # fmt: skip


def test_an_entry_round_trips_and_a_half_written_one_is_never_read(tmp_path):
    cache = SpanCache(str(tmp_path / "cache"))
    key = entry_key(1, "f", SPLIT_CONFIG)
    assert not cache.restore(key, _span_files(tmp_path / "empty", "unused"))
    cache.store(key, _span_files(tmp_path / "source", "span 1"))
    targets = {split: (str(tmp_path / "out" / split / "ex"), str(tmp_path / "out" / split / "st"))
               for split in ("train", "eval")}  # fmt: skip
    assert cache.restore(key, targets)
    for split, (examples, stats) in targets.items():
        assert (tmp_path / examples / EXAMPLES_FILE).read_text() == f"span 1 {split} examples"
        assert (tmp_path / stats / STATISTICS_FILE).read_text() == f"span 1 {split} stats"

    (tmp_path / "cache" / key / COMPLETE).unlink()  # as a run killed while storing leaves it
    assert not cache.restore(key, targets)
    cache.store(key, _span_files(tmp_path / "again", "span 1 again"))
    assert cache.restore(key, targets)
    assert (tmp_path / targets["eval"][0] / EXAMPLES_FILE).read_text() == "span 1 again eval examples"


def test_keep_only_drops_every_other_entry(tmp_path):
    cache = SpanCache(str(tmp_path / "cache"))
    SpanCache(str(tmp_path / "missing")).keep_only(set())  # no folder yet: nothing to do
    keys = [entry_key(span, "f", SPLIT_CONFIG) for span in (1, 2, 3)]
    for index, key in enumerate(keys):
        cache.store(key, _span_files(tmp_path / f"s{index}", key))
    cache.keep_only(set(keys[1:]))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(keys[1:])
