"""Streamed training data: shards on disk hold exactly `load_image` pixels, are a safe cache, and
the tf.data stream feeds every training row with its labels (the streamed skew test)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from train_helpers import tiny_config

from edge_common.shards import INDEX_FILE, ShardView, load_table_shards, open_shards
from edge_runtime.errors import DataError
from edge_runtime.evaluation.dataset import read_labels_csv
from edge_runtime.inference.preprocess import load_image
from trainer.config import NO_AUGMENT


def private_copies(src_paths, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in src_paths:
        shutil.copy(p, folder / p.name)
        out.append(folder / p.name)
    return out


# --- shards -------------------------------------------------------------------------------------


def test_shards_hold_exactly_load_image_pixels_and_are_plain_npy(demo_data, tmp_path):
    paths = read_labels_csv(demo_data[0]).paths[:37]
    s = open_shards(paths, (40, 24), tmp_path, workers=2, shard_images=8)
    assert len(s) == 37 and [sh.count for sh in s.shards] == [8, 8, 8, 8, 5] and s.failures == []
    got = s.read(range(37))
    expect = np.stack([load_image(p, (40, 24)) for p in paths])
    assert got.shape == (37, 24, 40, 3) and got.dtype == np.uint8 and np.array_equal(got, expect)
    # Rows are spread over the shards in a fixed shuffled order, and each shard is a valid .npy.
    assert sorted(s.position.tolist()) == list(range(37)) and s.position.tolist() != list(range(37))
    whole = np.concatenate([np.load(sh.file) for sh in s.shards])
    assert np.array_equal(whole[s.position], expect)
    view = ShardView(s, np.arange(37))[np.array([5, 0, 30])]
    assert len(view) == 3 and view.shape == (3, 24, 40, 3)
    assert np.array_equal(np.concatenate(list(view.batches(2))), expect[[5, 0, 30]])


def test_shard_cache_hit_and_key(demo_data, tmp_path):
    paths = private_copies(read_labels_csv(demo_data[0]).paths[:20], tmp_path / "img")
    cache = tmp_path / "cache"
    s1 = open_shards(paths, (32, 32), cache, shard_images=8)
    stamps = {p: p.stat().st_mtime_ns for p in s1.folder.iterdir()}
    time.sleep(0.01)
    s2 = open_shards(paths, (32, 32), cache, shard_images=8)  # a hit: nothing rewritten
    assert (
        s2.folder == s1.folder and {p: p.stat().st_mtime_ns for p in s2.folder.iterdir()} == stamps
    )
    assert np.array_equal(s2.position, s1.position)
    assert (
        open_shards(paths, (24, 24), cache, shard_images=8).folder != s1.folder
    )  # size is in the key
    from PIL import Image

    Image.new("RGB", (64, 64), (255, 0, 0)).save(paths[3])  # new content and mtime: new key
    os.utime(paths[3], ns=(time.time_ns(), time.time_ns() + 10**9))
    s3 = open_shards(paths, (32, 32), cache, shard_images=8)
    assert s3.folder != s1.folder
    assert np.array_equal(s3.read([3])[0], load_image(paths[3], (32, 32)))
    assert not list(cache.rglob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "deleted", "wrong_shape", "bad_index"])
def test_corrupt_shard_is_a_miss_and_only_it_is_decoded_again(demo_data, tmp_path, damage):
    paths = read_labels_csv(demo_data[0]).paths[:24]
    s = open_shards(paths, (24, 24), tmp_path, shard_images=8)
    expect = s.read(range(24))
    victim = s.shards[1].file
    others = {sh.file: sh.file.stat().st_mtime_ns for sh in s.shards if sh.file != victim}
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:-100])
    elif damage == "garbage":
        victim.write_bytes(b"\x93NUMPY garbage")
    elif damage == "deleted":
        victim.unlink()
    elif damage == "wrong_shape":
        np.save(victim, np.zeros((8, 24, 24, 1), np.uint8))
    else:
        (s.folder / INDEX_FILE).write_text("{not json")
    time.sleep(0.01)
    s2 = open_shards(paths, (24, 24), tmp_path, shard_images=8)  # no exception: decoded again
    assert np.array_equal(s2.read(range(24)), expect)
    assert json.loads((s2.folder / INDEX_FILE).read_text())["count"] == 24
    if damage != "bad_index":  # with a good index, the intact shards are kept as they are
        assert {f: f.stat().st_mtime_ns for f in others} == others
    assert sorted(p.name for p in s2.folder.iterdir()) == sorted(
        [INDEX_FILE] + [sh.file.name for sh in s2.shards]
    )


def test_unreadable_rows_are_reported_and_cached(demo_data, tmp_path):
    table = read_labels_csv(demo_data[0])
    lines = ["filename,labels"]
    for p, row in zip(table.paths[:12], table.y[:12]):
        shutil.copy(p, tmp_path / p.name)
        lines.append(f"{p.name}," + " ".join(lab for lab, v in zip(table.labels, row) if v))
    (tmp_path / table.paths[4].name).write_bytes(b"not a png at all")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    for _ in range(2):  # the second time from the cache: the failure is remembered, not lost
        t, view = load_table_shards(
            read_labels_csv(tmp_path / "labels.csv"), (32, 32), "training", tmp_path / "cache"
        )
        assert len(t) == len(view) == 11
        (s,) = t.skipped
        assert (
            s.row == 6
            and s.filename.endswith(table.paths[4].name)
            and "unreadable image" in s.reason
        )
        assert np.array_equal(view.read(), np.stack([load_image(p, (32, 32)) for p in t.paths]))


def test_no_readable_image_is_a_data_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"nope")
    (tmp_path / "l.csv").write_text("filename,labels\na.png,cat\n")
    with pytest.raises(DataError, match="no readable training image"):
        load_table_shards(read_labels_csv(tmp_path / "l.csv"), (32, 32), "training", tmp_path / "c")


def test_failed_shard_write_leaves_no_partial_file(demo_data, tmp_path, monkeypatch):
    paths = read_labels_csv(demo_data[0]).paths[:4]

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", disk_full)
    with pytest.raises(DataError, match="cannot write shard.*No space left"):
        open_shards(paths, (24, 24), tmp_path / "cache")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_temporary_shards_are_removed_with_the_set(demo_data, tmp_path):
    root = tmp_path / "tmpshards"
    s = open_shards(read_labels_csv(demo_data[0]).paths[:4], (24, 24), root, temporary=True)
    assert root.is_dir()
    del s
    assert not root.exists()


def test_csv_paths_relative_absolute_and_through_a_mount(demo_data, tmp_path):
    """Rows may point anywhere: relative to the CSV, absolute, or into a mounted folder (a symlink
    stands in for a bucket or share mount); a row whose file is missing is reported, not fatal."""
    src = read_labels_csv(demo_data[0]).paths[:6]
    local = private_copies(src[:2], tmp_path / "data" / "img")
    elsewhere = private_copies(src[2:4], tmp_path / "elsewhere")
    bucket = private_copies(src[4:], tmp_path / "bucket")
    (tmp_path / "mnt").symlink_to(tmp_path / "bucket")
    rows = [
        f"img/{local[0].name},circle",
        f"img/{local[1].name},square",
        f"{elsewhere[0]},circle",
        f"{elsewhere[1]},",
        f"{tmp_path / 'mnt' / bucket[0].name},square",
        f"../mnt/{bucket[1].name},circle",
        "img/missing.png,circle",
    ]
    csv = tmp_path / "data" / "labels.csv"
    csv.write_text("filename,labels\n" + "\n".join(rows) + "\n")
    table, view = load_table_shards(read_labels_csv(csv), (32, 32), "training", tmp_path / "cache")
    assert (
        len(view) == 6
        and [s.row for s in table.skipped] == [8]
        and "missing.png" in table.skipped[0].filename
    )
    assert np.array_equal(view.read(), np.stack([load_image(p, (32, 32)) for p in src]))


# --- the tf.data stream -------------------------------------------------------------------------


def _digest(img) -> str:
    return hashlib.sha1(np.asarray(img, dtype=np.uint8).tobytes()).hexdigest()


@pytest.mark.slow
def test_streamed_training_pipeline_feeds_exactly_load_image(demo_data, tmp_path):
    """Skew test, streamed twin: every image the training stream yields is the runtime's
    `load_image` output of a training row, with that row's labels, and one epoch covers every row."""
    from trainer.data.prepare import prepare_data
    from trainer.data.streaming import make_stream, steps_per_epoch

    config = tiny_config(
        demo_data[0],
        tmp_path / "run",
        input_size=40,
        batch_size=16,
        cache_dir=str(tmp_path / "cache"),
    )
    data = prepare_data(config)
    assert isinstance(data.train.x, ShardView) and isinstance(data.val.x, ShardView)
    assert len(data.train.x) + len(data.val.x) == 160
    expect = {}
    for p, y in zip(data.train.table.paths, data.train.y):
        expect[_digest(load_image(p, (40, 40)))] = y
    seen = set()
    ds = make_stream(data.train.x, data.train.y, 16, NO_AUGMENT, shuffle=True, seed=0)
    for images, labels in ds.take(steps_per_epoch(data.train.x, 16)):
        for img, lab in zip(images.numpy(), labels.numpy()):
            assert np.array_equal(img, np.round(img)) and img.dtype == np.float32
            d = _digest(img)
            assert d in expect, "a streamed image is not the load_image pixels of any training row"
            assert np.array_equal(lab, expect[d])
            seen.add(d)
    assert seen == set(expect)
    # Unshuffled, the stream is the table, row for row.
    images, labels = next(
        iter(make_stream(data.train.x, data.train.y, 16, NO_AUGMENT, shuffle=False))
    )
    for i in range(16):
        expect_i = load_image(data.train.table.paths[i], (40, 40))
        assert np.array_equal(images[i].numpy(), expect_i.astype(np.float32))
        assert np.array_equal(labels[i].numpy(), data.train.y[i])


@pytest.mark.slow
@pytest.mark.parametrize(
    "shard_images", [8, 1000]
)  # 8: many files, split by file; 1000: one file, by row
def test_each_input_pipeline_reads_its_own_part(demo_data, tmp_path, shard_images):
    from trainer.data.streaming import split_records

    paths = read_labels_csv(demo_data[0]).paths[:60]
    s = open_shards(paths, (16, 16), tmp_path, shard_images=shard_images)
    view = ShardView(s, np.arange(0, 60, 2))  # a split: every other row
    parts = [
        [int(pos) for pos, _ in split_records(view, i, 2).as_numpy_iterator()] for i in range(2)
    ]
    assert not set(parts[0]) & set(parts[1]) and all(parts)
    assert sorted(parts[0] + parts[1]) == sorted(view.positions.tolist())
    # The bytes are the rows' pixels.
    ((pos, rec),) = split_records(view[np.array([3])]).as_numpy_iterator()
    assert pos == view.positions[3] and np.array_equal(
        np.frombuffer(rec, np.uint8).reshape(16, 16, 3), load_image(paths[6], (16, 16))
    )


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_streamed_training_works_and_cleans_up(demo_data, tmp_path):
    from trainer import train

    r = train(tiny_config(demo_data[0], tmp_path / "streamed", batch_size=16))
    assert r.manifest.training.epochs_run == 2 and r.manifest.data.n_train == 128
    assert r.manifest.training.distribute["replicas"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed"]  # temporary shards gone


@pytest.mark.slow
def test_cli_streams_into_cache_dir_and_in_memory_is_gone(demo_data, tmp_path):
    from click.testing import CliRunner

    from trainer.cli import cli

    cache = tmp_path / "cache"
    r = CliRunner().invoke(
        cli,
        [
            str(demo_data[0]),
            "--out",
            str(tmp_path / "run"),
            "--arch",
            "compact",
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--cache-dir",
            str(cache),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "train.csv: decoded 160/160 images" in r.stderr
    (folder,) = cache.glob("shards-*")
    assert (folder / INDEX_FILE).is_file()
    r = CliRunner().invoke(
        cli,
        [
            str(demo_data[0]),
            "--out",
            str(tmp_path / "run2"),
            "--input-size",
            "32",
            "--epochs",
            "1",
            "--in-memory",
        ],
    )
    # Removed (one input pipeline): one line that says so and what to do, before any work.
    assert r.exit_code == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("Error: --in-memory was removed") and "drop the option" in r.stderr
    assert not (tmp_path / "run2").exists()
