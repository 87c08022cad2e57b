"""TACO (Liu et al., CVPR 2024; leolyliu/TACO-Instructions) egocentric sequences -> schema v1 hands + tool/target.

```
<source>/Hand_Poses/<triplet>/<seq>/{left,right}_hand.pkl  {left,right}_hand_shape.pkl
<source>/Egocentric_Camera_Parameters/<triplet>/<seq>/egocentric_intrinsic.txt  egocentric_frame_extrinsic.npy
<source>/Egocentric_RGB_Videos/<triplet>/<seq>/color.mp4
<source>/Object_Poses/<triplet>/<seq>/tool_<id>.npy  target_<id>.npy        <source>/Object_Models/<id>_cm.obj
```

Read as dataset_utils/project_pose_to_egocentric_view.py:73-117 and hand_pose_loader.py:10-65 do (commit c06f82c):

* hands: ``<side>_hand.pkl`` = ``pickle.dump`` of ``{frame key: {hand_pose (48,), hand_trans (3,)}}`` torch tensors,
  frames in sorted key order (hand_pose_loader.py:38-45); ``<side>_hand_shape.pkl`` = ``{hand_shape}`` (10)
  (project_pose_to_egocentric_view.py:99-100). Read with :func:`converters.base.load_torch_pickle` (never
  ``pickle.load``). Joints = manopth ``ManoLayer(use_pca=False, center_idx=0)`` (``flat_hand_mean`` default
  True) ``/ 1000 + hand_trans`` (hand_pose_loader.py:33, 61-65): the wrist sits AT ``hand_trans``, WORLD frame,
  metres -> :class:`converters.mano.ManoHand` with manopth's conventions; needs the licensed MANO model
  (option ``mano_dir``).
* camera: ``egocentric_intrinsic.txt`` (3x3, np.loadtxt) and ``egocentric_frame_extrinsic.npy`` (N, 4, 4)
  WORLD -> camera per frame (the head camera moves; project_pose_to_egocentric_view.py:112-113, used as the
  PyTorch3D extrinsic, pyt3d_wrapper.py:96-105). Frames = every frame of ``color.mp4``; a video whose frame
  count differs from the poses' is skipped, as the official script does (lines 114-117).
* objects: ``tool_<id>.npy`` / ``target_<id>.npy`` (N, 4, 4) object -> world [m]; the mesh
  ``Object_Models/<id>_cm.obj`` is in CENTIMETRES (``vertices *= 0.01``, lines 89-94). Box = centre and
  extents of the mesh's vertices; category = the tool / target of the ``(action, tool, target)`` triplet.
Waypoints: the world wrist ``k`` frames later in this frame's camera, 30 fps (README.md "fps=30").
Splits: option ``split_file`` = data_lists/v1_overall_data_train_test_split.txt (``<seq>,train|test_N``).
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
    encode_jpeg,
    load_torch_pickle,
    source_record,
)
from converters.dexycb import mesh_box
from converters.egodex import decode_frames
from converters.hand_tracks import HandTrack, hands_in_camera
from converters.mano import mano_hands, require_mano_dir
from converters.object_rows import ImageInput, ObjectInstance, image_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import TacoOptions
from schemas.geometry import invert_transform, make_transform
from schemas.tokenizer import Codebook
from schemas.waypoints import waypoint_offsets

VERSION = "0.1.0"
SIDES = ("left", "right")
CM = 0.01  # Object_Models/<id>_cm.obj -> metres (project_pose_to_egocentric_view.py:90,92)


def to_numpy(value) -> np.ndarray:
    """A torch tensor (possibly requiring grad) or array-like as a float64 array."""
    value = value.detach().cpu().numpy() if hasattr(value, "detach") else value
    return np.asarray(value, dtype=np.float64)


def read_hand(folder: Path, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hand_pose (N, 48), hand_trans (N, 3), hand_shape (10,))`` of one side, frames in sorted key order."""
    poses = load_torch_pickle(folder / f"{side}_hand.pkl")
    keys = sorted(poses)
    theta = np.stack([to_numpy(poses[k]["hand_pose"]).reshape(48) for k in keys])
    trans = np.stack([to_numpy(poses[k]["hand_trans"]).reshape(3) for k in keys])
    beta = to_numpy(load_torch_pickle(folder / f"{side}_hand_shape.pkl")["hand_shape"]).reshape(10)
    return theta, trans, beta


def triplet_objects(triplet: str) -> dict[str, str]:
    """``{"tool": name, "target": name}`` of a ``(action, tool, target)`` folder name."""
    _, tool, target = (part.strip() for part in triplet.strip("()").split(","))
    return {"tool": tool, "target": target}


class TacoConverter:
    name = "taco"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: TacoOptions):
        self.entry, self.source, self.options = entry, source, options
        self.sequences = sorted(p.parent for p in source.glob("Hand_Poses/*/*/right_hand.pkl"))
        if not self.sequences:
            raise FileNotFoundError(f"{source}: no TACO sequences (Hand_Poses/<triplet>/<seq>/right_hand.pkl)")
        self.mano = mano_hands(
            require_mano_dir(options.mano_dir, entry.name), flat_hand_mean=True, tips="manopth", center_root=True
        )
        self.fps = options.fps
        self.quality = options.jpeg_quality
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)
        self.splits = {}
        if options.split_file:
            lines = Path(options.split_file).read_text().split()
            self.splits = {seq: "train" if split == "train" else "test" for seq, split in (x.split(",") for x in lines)}

    def _episode(self, folder: Path) -> str:
        return folder.relative_to(self.source / "Hand_Poses").as_posix()

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        seqs = self.sequences[:limit_episodes] if limit_episodes is not None else self.sequences
        return [
            WorkUnit(
                self._episode(s).replace("/", "-"), self.splits.get(s.name, "train"), {"episode": self._episode(s)}
            )
            for s in seqs
        ]

    def source_info(self) -> dict:
        files = [p for s in self.sequences for p in s.iterdir()]
        return source_record(self.source, "TACO v1", files)

    def dataset_metadata(self) -> dict:
        return {
            "fps": self.fps,
            "views": ["egocentric"],
            "hands": "manopth MANO (flat hand mean, center_idx 0) from world-frame parameters",
            "objects": "tool and target, boxes from the _cm.obj meshes",
            "image_encoding": f"JPEG quality {self.quality} from color.mp4",
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        episode = unit.payload["episode"]
        cams = self.source / "Egocentric_Camera_Parameters" / episode
        try:
            tracks = [self._track(side, *read_hand(self.source / "Hand_Poses" / episode, side)) for side in SIDES]
            K = np.loadtxt(cams / "egocentric_intrinsic.txt").reshape(3, 3)
            world2cam = np.asarray(np.load(cams / "egocentric_frame_extrinsic.npy"), dtype=np.float64)
            objects = self._objects(episode)
            frames = decode_frames(self.source / "Egocentric_RGB_Videos" / episode / "color.mp4")
        except pickle.UnpicklingError as e:
            yield Rejected(episode, "security", str(e))
            return
        except (OSError, KeyError, ValueError) as e:
            yield Rejected(episode, "read", f"{type(e).__name__}: {e}")
            return
        n = len(world2cam)
        counts = {f"{t.name} poses": len(t.wrists) for t in tracks} | {"video frames": len(frames)}
        counts.update({f"{cat} poses": len(T) for (cat, _), T, _ in objects})
        if any(c != n for c in counts.values()):  # project_pose_to_egocentric_view.py:95-117 skips these
            yield Rejected(episode, "read", f"frame counts differ from the {n} extrinsics: {counts}")
            return
        images = []
        for i, frame in enumerate(frames):
            h, w = frame.shape[:2]
            try:
                images.append(
                    ImageInput(
                        self.entry.name,
                        unit.split,
                        "hands",
                        episode,
                        i,
                        "egocentric",
                        encode_jpeg(frame, self.quality),
                        w,
                        h,
                        K,
                        [ObjectInstance(cat, iid, world2cam[i] @ T[i], size) for (cat, iid), T, size in objects],
                        hands_in_camera(tracks, i, world2cam[i], self.offsets, self.fps),
                        timestamp_s=i / self.fps,
                        T_ref_cam=invert_transform(world2cam[i]),
                        ref_frame="world",
                    )
                )
            except InvalidInput as e:
                yield Rejected(f"{episode} frame {i}", "convert", str(e))
        stats.notes["frames"] += len(images)
        if images:
            yield EpisodeRows(episode, image_rows(images, codebook, stats.clipped_tokens))

    def _track(self, side: str, theta: np.ndarray, trans: np.ndarray, beta: np.ndarray) -> HandTrack:
        out = self.mano[side](theta[:, :3], theta[:, 3:], beta, trans)
        return HandTrack(f"{side}_hand", list(out.T_wrist), list(out.joints))

    def _objects(self, episode: str) -> list[tuple[tuple[str, str], np.ndarray, np.ndarray]]:
        """``((category, id), T_world_box (N, 4, 4), size)`` of the tool and the target."""
        names = triplet_objects(episode.split("/")[0])
        objects = []
        for path in sorted((self.source / "Object_Poses" / episode).glob("*.npy")):
            role, _, obj_id = path.stem.rpartition("_")
            centre, size = mesh_box(self.source / "Object_Models" / f"{obj_id}_cm.obj")
            poses = np.asarray(np.load(path), dtype=np.float64)
            objects.append(((names[role], obj_id), poses @ make_transform(np.eye(3), centre * CM), size * CM))
        return objects
