"""ARCTIC (Fan et al., CVPR 2023; zc-alexfan/arctic) raw sequences -> schema v1 hands + articulated object.

```
<source>/raw_seqs/<sid>/<seq>.mano.npy  .egocam.dist.npy  .object.npy     <source>/meta/misc.json
<source>/meta/object_vtemplates/<obj>/object_params.json     <source>/images/<sid>/<seq>/<view>/<i:05d>.jpg
```

Read as src/arctic/preprocess_dataset.py:77-119 and processing.py:174-283 do (the ``.npy`` dicts are loaded
with :class:`converters.base.RestrictedUnpickler`, never ``allow_pickle``):

* hands: ``mano.npy[side]`` ``rot``/``pose``/``trans``/``shape`` are WORLD-frame parameters of smplx
  ``MANO(use_pca=False, flat_hand_mean=False)`` (common/body_models.py:128-145) with the 5 smplx fingertip
  vertices (the patched smplx, docs/setup.md:65-72): :class:`converters.mano.ManoHand` with those
  conventions; ARCTIC needs the licensed MANO model (option ``mano_dir``) and refuses without it.
* cameras: view 0 is the moving egocentric camera, ``world2ego = [R_k_cam_np | T_k_cam_np]`` per frame and
  ``intrinsics`` (preprocess_dataset.py:108-119); views 1-8 are fixed, ``misc.json[sid].world2cam[v-1]`` and
  ``intris_mat[v-1]`` (process_seqs.py:39-44, processing.py:238-283). The ego images are distorted
  (``dist8``); like ARCTIC's own 2D annotations of view 0 (processing.py:242-244, 269-271;
  src/datasets/arctic_dataset.py:45-67: "kp2d, kp3d are in undistorted space") posetok uses the pinhole K.
* images: frame ``i`` is ``images/<sid>/<seq>/<view>/{i + ioi_offset:05d}.jpg`` (arctic_dataset.py:29-40).
* object: ``object.npy`` (F, 7) = articulation [rad], axis-angle, translation [mm] (processing.py:212-216);
  the top part turns by the articulation about the object's -z axis before the global pose
  (common/object_tensors.py:73-99, 292). Each part is one object item: ``<obj> top`` / ``<obj> bottom``, the
  box = centre and extents of its 8 ``bbox_top`` / ``bbox_bottom`` corners [mm] in the (part's) object frame.
Waypoints: the world wrist ``k`` frames later, in this frame's camera (the ego camera moves), 30 fps.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from converters.base import (
    EpisodeRows,
    InvalidInput,
    Rejected,
    RestrictedUnpickler,
    UnitStats,
    WorkUnit,
    image_size,
    source_record,
)
from converters.hand_tracks import HandTrack, hands_in_camera
from converters.mano import mano_hands, require_mano_dir
from converters.object_rows import ImageInput, ObjectInstance, image_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import ArcticOptions
from schemas.geometry import axis_angle_to_matrix, invert_transform, make_transform, mm_to_m
from schemas.tokenizer import Codebook
from schemas.waypoints import waypoint_offsets

VERSION = "0.1.0"
SIDES = ("left", "right")


def load_npy(path: Path):
    """An ``.npy`` file; one holding a pickled object (ARCTIC's dicts) is unpickled with
    :class:`RestrictedUnpickler` and its single object returned."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        _, _, dtype = read_header(f)
        if not dtype.hasobject:
            return np.load(path)
        array = RestrictedUnpickler(f, encoding="latin1").load()
    return array.item() if getattr(array, "shape", None) == () else array


def part_box(corners_mm) -> tuple[np.ndarray, np.ndarray]:
    """(centre, size) [m] of 8 box corners [mm] in the object frame."""
    corners = mm_to_m(np.asarray(corners_mm, dtype=np.float64).reshape(8, 3))
    lo, hi = corners.min(0), corners.max(0)
    return (lo + hi) / 2, hi - lo


class ArcticConverter:
    name = "arctic"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: ArcticOptions):
        self.entry, self.source, self.options = entry, source, options
        self.sequences = sorted(source.glob("raw_seqs/*/*.mano.npy"))
        if not self.sequences:
            raise FileNotFoundError(f"{source}: no ARCTIC raw sequences (raw_seqs/<sid>/<seq>.mano.npy)")
        self.mano = mano_hands(require_mano_dir(options.mano_dir, entry.name), flat_hand_mean=False, tips="smplx")
        self.views = options.views
        self.fps = options.fps
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        seqs = self.sequences[:limit_episodes] if limit_episodes is not None else self.sequences
        return [WorkUnit(f"{p.parent.name}-{p.name.split('.')[0]}", "train", {"mano": str(p)}) for p in seqs]

    def source_info(self) -> dict:
        files = [p for s in self.sequences for p in s.parent.glob(s.name.split(".")[0] + ".*")]
        return source_record(self.source, "ARCTIC raw_seqs", files)

    def dataset_metadata(self) -> dict:
        return {
            "fps": self.fps,
            "views": "0 egocentric (moving, pinhole K of the distorted images), 1-8 allocentric",
            "hands": "smplx MANO (flat_hand_mean False, smplx fingertips) from world-frame parameters",
            "objects": "two parts per object (top articulated), boxes from object_params.json",
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        path = Path(unit.payload["mano"])
        sid, seq = path.parent.name, path.name.split(".")[0]
        try:
            mano = load_npy(path)
            ego = load_npy(path.with_name(f"{seq}.egocam.dist.npy"))
            obj = np.asarray(load_npy(path.with_name(f"{seq}.object.npy")), dtype=np.float64)
            meta = json.loads((self.source / "meta" / "misc.json").read_text())[sid]
            obj_name = seq.split("_")[0]
            params = json.loads(
                (self.source / "meta" / "object_vtemplates" / obj_name / "object_params.json").read_text()
            )
            tracks = [self._track(side, mano[side]) for side in SIDES]
        except pickle.UnpicklingError as e:
            yield Rejected(str(path), "security", str(e))
            return
        except (OSError, KeyError, ValueError) as e:
            yield Rejected(str(path), "read", f"{type(e).__name__}: {e}")
            return
        n = len(tracks[0].wrists)
        world2ego = np.tile(np.eye(4), (n, 1, 1))
        world2ego[:, :3, :3] = np.asarray(ego["R_k_cam_np"], dtype=np.float64)
        world2ego[:, :3, 3] = np.asarray(ego["T_k_cam_np"], dtype=np.float64).reshape(n, 3)
        parts = self._parts(obj, params, obj_name)
        for view in self.views:
            folder = self.source / "images" / sid / seq / str(view)
            if not folder.is_dir():
                stats.notes[f"view {view}: no image folder"] += 1
                continue
            if view == 0:
                cams, K = world2ego, np.asarray(ego["intrinsics"], dtype=np.float64)
            else:
                cams = np.tile(np.asarray(meta["world2cam"][view - 1], dtype=np.float64), (n, 1, 1))
                K = np.asarray(meta["intris_mat"][view - 1], dtype=np.float64)
            images = []
            for i in range(n):
                image = folder / f"{i + int(meta['ioi_offset']):05d}.jpg"
                if not image.is_file():
                    stats.notes[f"view {view}: frames without an image"] += 1
                    continue
                data = image.read_bytes()
                width, height = image_size(data)
                objects = [ObjectInstance(name, name, cams[i] @ T[i], size) for name, T, size in parts]
                try:
                    images.append(
                        ImageInput(
                            self.entry.name,
                            unit.split,
                            "hands",
                            f"{sid}/{seq}",
                            i,
                            str(view),
                            data,
                            width,
                            height,
                            K,
                            objects,
                            hands_in_camera(tracks, i, cams[i], self.offsets, self.fps),
                            timestamp_s=i / self.fps,
                            T_ref_cam=invert_transform(cams[i]),
                            ref_frame="world",
                        )
                    )
                except InvalidInput as e:
                    yield Rejected(str(image), "convert", str(e))
            stats.notes["frames"] += len(images)
            if images:
                yield EpisodeRows(f"{sid}/{seq}/{view}", image_rows(images, codebook, stats.clipped_tokens))

    def _track(self, side: str, hand: dict) -> HandTrack:
        out = self.mano[side](hand["rot"], hand["pose"], hand["shape"], hand["trans"])
        return HandTrack(f"{side}_hand", list(out.T_wrist), list(out.joints))

    @staticmethod
    def _parts(obj: np.ndarray, params: dict, name: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(name, T_world_part_box (F, 4, 4), size)`` of the bottom and the articulated top part."""
        T_world_obj = np.stack([make_transform(axis_angle_to_matrix(o[1:4]), mm_to_m(o[4:7])) for o in obj])
        arti = np.stack([make_transform(axis_angle_to_matrix([0.0, 0.0, -a]), np.zeros(3)) for a in obj[:, 0]])
        parts = []
        for part, T in (("bottom", T_world_obj), ("top", T_world_obj @ arti)):
            centre, size = part_box(params[f"bbox_{part}"])
            parts.append((f"{name} {part}", T @ make_transform(np.eye(3), centre), size))
        return parts
