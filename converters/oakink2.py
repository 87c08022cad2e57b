"""OakInk2 (Zhan et al., CVPR 2024; oakink/OakInk2) -> schema v1 hands + object parts, per camera.

```
<source>/anno_preview/<seq_token>.pkl               (option anno_dir; README.md:191 calls the folder anno/)
<source>/data/<seq_token>/<serial>/<frame_id:06d>.png
<source>/object_raw/align_ds/<obj_id>/<mesh>.obj
```

Read as the official toolkit and preview tool do (commit 63365c6): the annotation pickle (README.md:191-237)
holds ``cam_def`` (serial -> camera name), ``cam_selection``, ``frame_id_list`` (image frames, numbered on
the 120 Hz mocap clock), ``cam_intr[cam][frame]`` (3x3), ``cam_extr[cam][frame]`` (4x4 WORLD -> camera:
seg_3d.py:192-193 moves world joints with it, 239 ``cam_extr @ obj_transf``; the egocentric camera moves),
``obj_transf[obj][frame]`` (4x4 object -> world), ``raw_mano[mocap frame]`` = torch tensors
``{rh,lh}__pose_coeffs`` (1, 16, 4) quaternions ``[w, x, y, z]``, ``__tsl`` (1, 3), ``__betas`` (1, 10)
(dataset.py:257-274). Images: ``data/<seq_token>/<serial>/{frame_id:0>6}.png`` (stream_preview.py:76-81).
The pickle is read with :func:`converters.base.load_torch_pickle`, never ``pickle.load``.

Hands: manotorch ``ManoLayer(rot_mode="quat", center_idx=0, use_pca=False, flat_hand_mean=True)``, world
joints = ``joints + tsl`` (seg_3d.py:127-143, 187-189): quaternions -> axis-angle, manopth's tips and order,
centred so the wrist sits AT ``tsl`` (lixiny/manotorch manolayer.py:218-248), metres ->
:class:`converters.mano.ManoHand`; needs the licensed MANO model (option ``mano_dir``).
Objects: each ``obj_list`` part whose ``align_ds`` folder holds one ``.obj`` mesh (dataset.py:24-34; other
mesh types are counted in the stats and left out), box = centre and extents of its vertices [m].
Waypoints: the world wrist 1 s later on the 120 Hz mocap clock (``offset_steps`` in mocap frames,
oakink2_toolkit/meta.py:3-5), in this frame's camera.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from converters.base import (
    EpisodeRows,
    InvalidInput,
    Rejected,
    UnitStats,
    WorkUnit,
    image_size,
    load_torch_pickle,
    source_record,
)
from converters.dexycb import mesh_box
from converters.hand_tracks import HandTrack, hands_in_camera
from converters.mano import mano_hands, require_mano_dir
from converters.object_rows import ImageInput, ObjectInstance, image_rows
from converters.taco import to_numpy
from schemas.catalog import DatasetEntry
from schemas.converter_options import Oakink2Options
from schemas.geometry import invert_transform, make_transform, quat_to_axis_angle
from schemas.tokenizer import Codebook
from schemas.waypoints import future_steps, waypoint_offsets

VERSION = "0.1.0"
SIDES = {"left": "lh", "right": "rh"}
FPS_MOCAP = 120.0  # oakink2_toolkit/meta.py:4


class Oakink2Converter:
    name = "oakink2"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: Oakink2Options):
        self.entry, self.source, self.options = entry, source, options
        self.annos = sorted((source / options.anno_dir).glob("*.pkl"))
        if not self.annos:
            raise FileNotFoundError(
                f"{source}: no OakInk2 annotations ({options.anno_dir}/*.pkl)"
            )
        self.mano = mano_hands(
            require_mano_dir(options.mano_dir, entry.name), flat_hand_mean=True, tips="manopth", center_root=True
        )
        self.cams = options.cams  # None = the annotation's cam_selection
        horizon = options.waypoint_horizon
        self.offsets = waypoint_offsets(FPS_MOCAP, horizon.count, horizon.spacing_s)
        self._boxes: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        annos = self.annos[:limit_episodes] if limit_episodes is not None else self.annos
        return [WorkUnit(p.stem, "train", {"anno": str(p)}) for p in annos]

    def source_info(self) -> dict:
        return source_record(self.source, "OakInk2", self.annos)

    def dataset_metadata(self) -> dict:
        return {
            "fps": self.entry.fps,
            "mocap_fps": FPS_MOCAP,
            "views": "cam_selection names (allocentric_top/left/right, egocentric)",
            "hands": "manotorch MANO (quaternions, center_idx 0) from world-frame parameters",
            "objects": "obj_transf parts, boxes from the align_ds .obj meshes",
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        path = Path(unit.payload["anno"])
        try:
            anno = load_torch_pickle(path)
            mocap = list(anno["mocap_frame_id_list"])
            index = {fid: i for i, fid in enumerate(mocap)}
            frames = [fid for fid in anno["frame_id_list"] if fid in index]
            steps = np.array([index[f] for f in frames], dtype=np.int64)  # the rows and their waypoints' frames:
            needed = sorted(set(future_steps(steps, (0, *self.offsets), np.ones(len(mocap), dtype=bool))[1].tolist()))
            tracks = [self._track(side, anno["raw_mano"], mocap, needed) for side in SIDES]
        except pickle.UnpicklingError as e:
            yield Rejected(str(path), "security", str(e))
            return
        except (OSError, KeyError, ValueError, TypeError) as e:
            yield Rejected(str(path), "read", f"{type(e).__name__}: {e}")
            return
        serials = {name: serial for serial, name in anno["cam_def"].items()}
        for cam in [c for c in anno["cam_selection"] if self.cams is None or c in self.cams]:
            images = []
            for fid in frames:
                image = self.source / "data" / path.stem / serials[cam] / f"{fid:0>6}.png"
                if not image.is_file():
                    stats.notes[f"{cam}: frames without an image"] += 1
                    continue
                try:
                    data = image.read_bytes()
                    width, height = image_size(data)
                    T_cam_world = np.asarray(anno["cam_extr"][cam][fid], dtype=np.float64)
                    objects = self._objects(anno, fid, T_cam_world, stats)
                    images.append(
                        ImageInput(
                            self.entry.name,
                            unit.split,
                            "hands",
                            path.stem,
                            fid,
                            cam,
                            data,
                            width,
                            height,
                            np.asarray(anno["cam_intr"][cam][fid], dtype=np.float64),
                            objects,
                            hands_in_camera(tracks, index[fid], T_cam_world, self.offsets, FPS_MOCAP),
                            timestamp_s=fid / FPS_MOCAP,
                            T_ref_cam=invert_transform(T_cam_world),
                            ref_frame="world",
                        )
                    )
                except (InvalidInput, KeyError, ValueError) as e:
                    yield Rejected(str(image), "convert", f"{type(e).__name__}: {e}")
            stats.notes["frames"] += len(images)
            if images:
                yield EpisodeRows(f"{path.stem}/{cam}", image_rows(images, codebook, stats.clipped_tokens))

    def _track(self, side: str, raw_mano: dict, mocap: list, needed: list[int]) -> HandTrack:
        """World-frame wrists and joints on the mocap clock, computed at the ``needed`` indices only."""
        prefix = SIDES[side]
        quats = np.stack([to_numpy(raw_mano[mocap[i]][f"{prefix}__pose_coeffs"]).reshape(16, 4) for i in needed])
        tsl = np.stack([to_numpy(raw_mano[mocap[i]][f"{prefix}__tsl"]).reshape(3) for i in needed])
        betas = np.stack([to_numpy(raw_mano[mocap[i]][f"{prefix}__betas"]).reshape(10) for i in needed])
        rotvec = quat_to_axis_angle(quats)  # (N, 16, 3): manotorch quaternion_to_axis_angle
        out = self.mano[side](rotvec[:, 0], rotvec[:, 1:].reshape(-1, 45), betas, tsl)
        wrists, joints = [None] * len(mocap), [None] * len(mocap)
        for k, i in enumerate(needed):
            wrists[i], joints[i] = out.T_wrist[k], out.joints[k]
        return HandTrack(f"{side}_hand", wrists, joints)

    def _objects(self, anno: dict, fid: int, T_cam_world: np.ndarray, stats: UnitStats) -> list[ObjectInstance]:
        objects = []
        for obj_id in anno["obj_list"]:
            box = self._box(obj_id)
            if box is None:
                stats.notes[f"object {obj_id}: no single .obj mesh in align_ds"] += 1
                continue
            centre, size = box
            T = T_cam_world @ np.asarray(anno["obj_transf"][obj_id][fid], dtype=np.float64)
            objects.append(ObjectInstance(obj_id, obj_id, T @ make_transform(np.eye(3), centre), size))
        return objects

    def _box(self, obj_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        if obj_id not in self._boxes:
            meshes = list((self.source / "object_raw" / "align_ds" / obj_id).glob("*.obj"))
            self._boxes[obj_id] = mesh_box(meshes[0]) if len(meshes) == 1 else None
        return self._boxes[obj_id]
