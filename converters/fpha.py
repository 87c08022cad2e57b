"""FPHA (Garcia-Hernando et al., CVPR 2018; guiggh/hand_pose_action) -> schema v1 right-hand rows.

```
<source>/Hand_pose_annotation_v1/Subject_<n>/<action>/<k>/skeleton.txt
<source>/Video_files/Subject_<n>/<action>/<k>/color/color_{t:04d}.jpeg
```

As load_example.py reads them: ``skeleton.txt`` = per line ``t`` + 21 x (x y z) [mm] (np.loadtxt,
load_example.py:24-32) in the DEPTH camera frame (README.md:37-39), FPHA's joint order reordered to OpenPose
(= :data:`schemas.hand_joints.HAND_JOINTS`) with ``[0, 1, 6, 7, 8, 2, ...]`` (load_example.py:99-102); the
colour camera sees ``cam_extr @ p`` (depth -> colour, translation mm) and projects with ``cam_intr``
(load_example.py:113-119, 147-153; options ``cam_extr`` / ``cam_intr``). No MANO is needed: the wrist is
joint 0, oriented by :func:`schemas.hand_joints.wrist_frame`. The camera is worn by the subject and its
trajectory is not published, so a later wrist cannot be put in this frame's camera: no waypoints (the
catalog's horizon is 0). Object poses (``Object_6D_pose_annotation_v1``, a subset) are not read yet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from converters.base import EpisodeRows, InvalidInput, Rejected, UnitStats, WorkUnit, image_size, source_record
from converters.hand_tracks import HandTrack, hands_in_camera
from converters.object_rows import ImageInput, image_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import FphaOptions
from schemas.geometry import mm_to_m, transform_points
from schemas.tokenizer import Codebook

VERSION = "0.1.0"
REORDER = [0, 1, 6, 7, 8, 2, 9, 10, 11, 3, 12, 13, 14, 4, 15, 16, 17, 5, 18, 19, 20]  # load_example.py:99-102


class FphaConverter:
    name = "fpha"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: FphaOptions):
        self.entry, self.source, self.options = entry, source, options
        self.skeletons = sorted(source.glob("Hand_pose_annotation_v1/*/*/*/skeleton.txt"))
        if not self.skeletons:
            raise FileNotFoundError(f"{source}: no FPHA skeletons (Hand_pose_annotation_v1/<subject>/<action>/<k>/)")
        self.cam_extr = np.asarray(options.cam_extr, dtype=np.float64)
        self.K = np.asarray(options.cam_intr, dtype=np.float64)
        self.fps = options.fps

    def _episode(self, path: Path) -> str:
        return path.parent.relative_to(self.source / "Hand_pose_annotation_v1").as_posix()

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        paths = self.skeletons[:limit_episodes] if limit_episodes is not None else self.skeletons
        return [WorkUnit(self._episode(p).replace("/", "-"), "train", {"skeleton": str(p)}) for p in paths]

    def source_info(self) -> dict:
        return source_record(self.source, "FPHA", self.skeletons)

    def dataset_metadata(self) -> dict:
        return {"fps": self.fps, "views": ["color"], "hands": "right hand skeleton (no MANO), no waypoints"}

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        path = Path(unit.payload["skeleton"])
        episode = self._episode(path)
        try:
            values = np.loadtxt(path, ndmin=2)
            if values.shape[1] != 64:
                raise ValueError(f"{values.shape[1]} columns, expected 64 (t + 21 x 3)")
        except (OSError, ValueError) as e:
            yield Rejected(str(path), "read", f"{type(e).__name__}: {e}")
            return
        joints = [
            transform_points(self.cam_extr, row[1:].reshape(21, 3))[REORDER] for row in values
        ]  # colour camera, mm
        track = HandTrack.from_joints("right_hand", [mm_to_m(j) for j in joints])
        color = self.source / "Video_files" / episode / "color"
        images = []
        for i, t in enumerate(values[:, 0].astype(int)):
            image = color / f"color_{t:04d}.jpeg"
            try:
                data = image.read_bytes()
                width, height = image_size(data)
                hands = hands_in_camera([track], i, np.eye(4), [], self.fps)
                images.append(
                    ImageInput(
                        self.entry.name,
                        unit.split,
                        "hands",
                        episode,
                        int(t),
                        "color",
                        data,
                        width,
                        height,
                        self.K,
                        [],
                        hands,
                        timestamp_s=t / self.fps,
                    )
                )
            except (OSError, ValueError) as e:
                yield Rejected(str(image), "read", f"{type(e).__name__}: {e}")
            except InvalidInput as e:
                yield Rejected(str(image), "convert", str(e))
        stats.notes["frames"] += len(images)
        if images:
            yield EpisodeRows(episode, image_rows(images, codebook, stats.clipped_tokens))
