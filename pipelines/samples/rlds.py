"""Writing an RLDS dataset folder through tensorflow-datasets (formats.md 0.1-0.4).

Records are ``features.serialize_example(episode)``, one episode per record, framed by
``tf.io.TFRecordWriter`` into ``<name>-train.tfrecord-XXXXX-of-YYYYY``; ``dataset_info.json`` and
``features.json`` come from ``tfds.folder_dataset.write_metadata`` so that
``tfds.builder_from_directory`` reads the folder like any published RLDS dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path


def write_rlds(
    tfds_dir: Path,
    name: str,
    version: str,
    features,
    shards: Sequence[Sequence],
    make_example: Callable[[object], dict],
    description: str = "",
) -> None:
    """Write ``shards`` (lists of episode objects, turned into examples by ``make_example``)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tfds_dir.mkdir(parents=True, exist_ok=True)
    lengths, num_bytes = [], 0
    for index, members in enumerate(shards):
        path = tfds_dir / f"{name}-train.tfrecord-{index:05d}-of-{len(shards):05d}"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for episode in members:
                writer.write(features.serialize_example(make_example(episode)))
        lengths.append(len(members))
        num_bytes += os.path.getsize(path)
    template = tfds.core.ShardedFileTemplate(
        data_dir=tfds_dir,
        template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
        dataset_name=name,
        split="train",
        filetype_suffix="tfrecord",
    )
    split = tfds.core.SplitInfo(name="train", shard_lengths=lengths, num_bytes=num_bytes, filename_template=template)
    tfds.folder_dataset.write_metadata(
        data_dir=tfds_dir,
        features=features,
        split_infos=[split],
        filename_template=template,
        version=version,
        check_data=True,
        description=description or f"posetok synthetic sample in {name} RLDS format",
    )


def chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[i : i + size] for i in range(0, len(items), size)]
