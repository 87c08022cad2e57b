"""Reading RLDS datasets (DROID, Open X-Embodiment, OpenVLA's LIBERO) through tensorflow-datasets.

``tfds.builder_from_directory`` on the folder holding ``dataset_info.json``; images stay encoded
(``SkipDecoding``); each episode's ``steps`` are batched into whole tensors inside the tf.data
graph (measured ~12x faster than iterating steps in Python). Work units are the TFDS shard
files, so a truncated or corrupt shard costs only its own episodes, and only those after the
damage: it is reported as a :class:`Rejected` naming the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from converters.base import Rejected, WorkUnit, listing_sha256


def find_tfds_dir(source: Path) -> Path:
    """The folder holding ``dataset_info.json``: ``source`` itself or the newest version below it."""
    if (source / "dataset_info.json").is_file():
        return source
    found = sorted(source.glob("**/dataset_info.json"))
    if not found:
        raise FileNotFoundError(
            f"{source}: no RLDS dataset found (expected <source>/<name>/<version>/dataset_info.json)"
        )
    return found[-1].parent


class RldsSource:
    """One RLDS dataset folder; ``split`` is read shard by shard."""

    def __init__(self, source: Path, split: str = "train"):
        import tensorflow_datasets as tfds

        self.tfds_dir = find_tfds_dir(source)
        self.builder = tfds.builder_from_directory(str(self.tfds_dir))
        self.split = split

    def listing_sha256(self) -> str:
        return listing_sha256(self.tfds_dir, (p for p in self.tfds_dir.iterdir() if p.is_file()))

    @property
    def version(self) -> str:
        return str(self.builder.info.version)

    def shard_units(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per shard file: ``{split}-{first episode}-{end}`` (truncated by ``limit_episodes``)."""
        lengths = self.builder.info.splits[self.split].shard_lengths
        units, start = [], 0
        for index, n in enumerate(lengths):
            end = start + n if limit_episodes is None else min(start + n, limit_episodes)
            if end <= start:
                break
            shard_file = f"{self.builder.name}-{self.split}.tfrecord-{index:05d}-of-{len(lengths):05d}"
            units.append(
                WorkUnit(
                    f"{self.split}-{start:06d}-{end:06d}", "train", {"start": start, "end": end, "file": shard_file}
                )
            )
            start += n
        return units

    def episodes(self, unit: WorkUnit, image_keys: list[str]) -> Iterator[tuple[int, dict] | Rejected]:
        """``(episode index, {"steps": whole tensors, <episode-level keys>...})`` per episode of the
        unit, images of ``steps/observation/<image_keys>`` left as encoded bytes; a read error ends
        the unit with one :class:`Rejected` for the episodes it cost."""
        import tensorflow as tf
        import tensorflow_datasets as tfds

        ds = self.builder.as_dataset(
            split=f"{self.split}[{unit.payload['start']}:{unit.payload['end']}]",
            decoders={"steps": {"observation": {k: tfds.decode.SkipDecoding() for k in image_keys}}},
            shuffle_files=False,
            read_config=tfds.ReadConfig(interleave_cycle_length=1),
        )

        @tf.autograph.experimental.do_not_convert
        def whole_episode(episode):
            return {
                **{k: v for k, v in episode.items() if k != "steps"},
                "steps": episode["steps"].batch(1 << 30).get_single_element(),
            }

        iterator = ds.map(whole_episode).as_numpy_iterator()
        total = unit.payload["end"] - unit.payload["start"]
        for done in range(total):
            try:
                episode = next(iterator)
            except StopIteration:
                return
            except tf.errors.OpError as e:
                yield Rejected(
                    str(self.tfds_dir / unit.payload["file"]),
                    "read",
                    f"unreadable after episode {done} of this shard ({type(e).__name__}: "
                    f"{e.message.strip()}); {total - done} episode(s) lost",
                    episodes=total - done,
                )
                return
            yield unit.payload["start"] + done, episode
