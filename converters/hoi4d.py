"""HOI4D (Liu et al., CVPR 2022; leolyliu/HOI4D-Instructions) -> schema v1 hands + annotated object parts.

```
<source>/ZY2021080000*/H*/C*/N*/S*/s*/T*/align_rgb/image.mp4  3Dseg/output.log  objpose/<frame>.json
<source>/handpose/refinehandpose_{right,left}/<same sequence path>/<frame>.pickle
<source>/camera_params/<ZY2021080000*>/intrin.npy
```

Sequence folders as README.md:13-30 (commit 1547866); the ``handpose`` and ``camera_params`` folders as the
hand-pose and camera downloads unpack (not in the official repository; ``<frame>`` = the frame index
without padding). Read as the official code does:

* hands: each pickle ``poseCoeff`` (3 global + 45 axis-angle), ``beta`` (10), ``trans`` in the CAMERA frame of
  that frame; joints = manopth ``ManoLayer(use_pca=False, flat_hand_mean=True)`` WITHOUT ``center_idx``,
  ``/ 1000 + trans`` [m] (README.md:125-155), so the wrist sits at ``J0(beta) + trans`` ->
  :class:`converters.mano.ManoHand` (manopth tips, not centred); needs the licensed MANO model (option
  ``mano_dir``). Pickles are read with :func:`converters.base.load_torch_pickle`, never ``pickle.load``.
* camera: ``3Dseg/output.log`` = the per-frame camera trajectory in Open3D's LOG format (README.md:75-81):
  per frame a ``i i i+1`` line and a 4x4 CAMERA -> WORLD matrix (Open3D's reader stores its inverse as the
  world -> camera extrinsic, isl-org/Open3D cpp/open3d/io/file_format/FileLOG.cpp ``extrinsic_ =
  trans.inverse()``; prepare_4Dseg/scene2frame.py:131-136 uses it per frame index). Frames are the frames of
  ``align_rgb/image.mp4`` (decoded at 15 fps, utils/decode.py:15).
* objects: ``objpose/<frame>.json`` ``dataList`` (or ``objects``) entries: ``center`` [m], ``rotation``
  intrinsic Euler ``XYZ`` [rad], ``dimensions`` length / width / height [m] (README.md:97-123), camera frame;
  category = the ``C*`` class (README.md:34-40), instance = the entry's ``label`` (a part) or its index.
Waypoints: the wrist ``k`` frames later, moved camera(t+k) -> world -> camera(t), 15 fps.
"""

from __future__ import annotations

import ast
import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

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
from converters.egodex import decode_frames
from converters.hand_tracks import HandTrack, hands_in_camera
from converters.mano import mano_hands, require_mano_dir
from converters.object_rows import ImageInput, ObjectInstance, image_rows
from converters.taco import to_numpy
from schemas.catalog import DatasetEntry
from schemas.converter_options import Hoi4dOptions
from schemas.geometry import invert_transform, make_transform
from schemas.tokenizer import Codebook
from schemas.waypoints import waypoint_offsets

VERSION = "0.1.0"
SIDES = ("left", "right")
CLASSES = [  # README.md:34-40, index = the number of the C* folder
    "", "ToyCar", "Mug", "Laptop", "StorageFurniture", "Bottle", "Safe", "Bowl", "Bucket", "Scissors", "",
    "Pliers", "Kettle", "Knife", "TrashCan", "", "", "Lamp", "Stapler", "", "Chair",
]  # fmt: skip


def read_log(path: Path) -> list[np.ndarray]:
    """Open3D LOG trajectory -> per-frame camera -> world 4x4 (FileLOG.cpp ReadPinholeCameraTrajectoryFromLOG:
    a ``%d %d %d`` header line, then four matrix rows; ``#`` lines are skipped)."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) % 5:
        raise ValueError(f"{path.name}: {len(lines)} lines, not a multiple of 5 (header + 4x4 per frame)")
    return [
        np.array([[float(x) for x in row.split()[:4]] for row in lines[i + 1 : i + 5]]) for i in range(0, len(lines), 5)
    ]


def read_objects(path: Path, category: str) -> list[ObjectInstance]:
    """The boxes of ``objpose/<frame>.json`` in the camera frame (README.md:97-123 ``read_rtd``)."""
    text = path.read_text()
    try:
        content = json.loads(text)
    except json.JSONDecodeError:
        content = ast.literal_eval(text)  # the official reader eval()s the file; literals only here
    objects = []
    for i, anno in enumerate(content["dataList"] if "dataList" in content else content["objects"]):
        c, r, d = anno["center"], anno["rotation"], anno["dimensions"]
        R = Rotation.from_euler("XYZ", [r["x"], r["y"], r["z"]]).as_matrix()
        T = make_transform(R, np.array([c["x"], c["y"], c["z"]], dtype=np.float64))
        size = np.array([d["length"], d["width"], d["height"]], dtype=np.float64)
        objects.append(ObjectInstance(category, str(anno.get("label", i)), T, size))
    return objects


class Hoi4dConverter:
    name = "hoi4d"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: Hoi4dOptions):
        self.entry, self.source, self.options = entry, source, options
        self.sequences = sorted(p.parent.parent for p in source.glob("ZY*/H*/C*/N*/S*/s*/T*/align_rgb/image.mp4"))
        if not self.sequences:
            raise FileNotFoundError(f"{source}: no HOI4D sequences (ZY*/H*/C*/N*/S*/s*/T*/align_rgb/image.mp4)")
        self.mano = mano_hands(
            require_mano_dir(options.mano_dir, entry.name), flat_hand_mean=True, tips="manopth", center_root=False
        )
        self.fps = options.fps
        self.quality = options.jpeg_quality
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)

    def _episode(self, seq: Path) -> str:
        return seq.relative_to(self.source).as_posix()

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        seqs = self.sequences[:limit_episodes] if limit_episodes is not None else self.sequences
        return [WorkUnit(self._episode(s).replace("/", "-"), "train", {"episode": self._episode(s)}) for s in seqs]

    def source_info(self) -> dict:
        files = []
        for seq in self.sequences:
            episode = self._episode(seq)
            files += [seq / "align_rgb" / "image.mp4", seq / "3Dseg" / "output.log"]
            files += [p for side in SIDES for p in (self._hands(side) / episode).glob("*.pickle")]
        return source_record(self.source, "HOI4D", [p for p in files if p.is_file()])

    def dataset_metadata(self) -> dict:
        return {
            "fps": self.fps,
            "views": ["camera"],
            "hands": "manopth MANO (flat hand mean, not centred) from camera-frame parameters",
            "objects": "objpose boxes (centre, Euler XYZ, dimensions)",
            "image_encoding": f"JPEG quality {self.quality} from align_rgb/image.mp4",
        }

    def _hands(self, side: str) -> Path:
        return self.source / "handpose" / f"refinehandpose_{side}"

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        episode = unit.payload["episode"]
        seq = self.source / episode
        try:
            K = np.asarray(np.load(self.source / "camera_params" / episode.split("/")[0] / "intrin.npy"), float)
            T_world_cam = read_log(seq / "3Dseg" / "output.log")
            frames = decode_frames(seq / "align_rgb" / "image.mp4")
            n = len(frames)
            if len(T_world_cam) < n:
                raise ValueError(f"output.log has {len(T_world_cam)} camera poses for {n} video frames")
            tracks = [self._track(side, episode, n).in_frame(T_world_cam[:n]) for side in SIDES]
        except pickle.UnpicklingError as e:
            yield Rejected(episode, "security", str(e))
            return
        except (OSError, KeyError, ValueError) as e:
            yield Rejected(episode, "read", f"{type(e).__name__}: {e}")
            return
        category = CLASSES[int(episode.split("/")[2][1:])]
        images = []
        for i, frame in enumerate(frames):
            h, w = frame.shape[:2]
            T_cam_world = invert_transform(T_world_cam[i])
            pose = seq / "objpose" / f"{i}.json"
            try:
                objects = read_objects(pose, category) if pose.is_file() else []
                images.append(
                    ImageInput(
                        self.entry.name,
                        unit.split,
                        "hands",
                        episode,
                        i,
                        "camera",
                        encode_jpeg(frame, self.quality),
                        w,
                        h,
                        K,
                        objects,
                        hands_in_camera(tracks, i, T_cam_world, self.offsets, self.fps),
                        timestamp_s=i / self.fps,
                        T_ref_cam=T_world_cam[i],
                        ref_frame="world",
                    )
                )
            except (InvalidInput, KeyError, ValueError, SyntaxError) as e:
                yield Rejected(f"{episode} frame {i}", "convert", f"{type(e).__name__}: {e}")
        stats.notes["frames"] += len(images)
        if images:
            yield EpisodeRows(episode, image_rows(images, codebook, stats.clipped_tokens))

    def _track(self, side: str, episode: str, n: int) -> HandTrack:
        """One side's camera-frame hand per video frame (None where no pickle)."""
        folder = self._hands(side) / episode
        frames = [i for i in range(n) if (folder / f"{i}.pickle").is_file()]
        wrists, joints = [None] * n, [None] * n
        if frames:
            data = [load_torch_pickle(folder / f"{i}.pickle") for i in frames]
            theta = np.stack([to_numpy(d["poseCoeff"]).reshape(48) for d in data])
            betas = np.stack([to_numpy(d["beta"]).reshape(10) for d in data])
            trans = np.stack([to_numpy(d["trans"]).reshape(3) for d in data])
            out = self.mano[side](theta[:, :3], theta[:, 3:], betas, trans)
            for k, i in enumerate(frames):
                wrists[i], joints[i] = out.T_wrist[k], out.joints[k]
        return HandTrack(f"{side}_hand", wrists, joints)
