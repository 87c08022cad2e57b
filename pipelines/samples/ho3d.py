"""Write synthetic hand sequences as HO-3D v3 (formats.md 9.2), in OpenGL camera coordinates.

``<out>/train/<SEQ>/rgb/<id:04d>.jpg``, ``depth/<id:04d>.png`` (HO-3D's encoding: metres =
``(R + 256 G) * 0.00012498664727900177``, stored in the red/green channels) and
``meta/<id:04d>.pkl`` (a Python pickle of numpy arrays): ``handJoints3D`` (21, 3), ``handPose``
(48, global rotation first), ``objRot`` (3, 1) axis-angle + ``objTrans`` (3,), ``objCorners3DRest``
(8, 3) in the object frame (origin at the bottom face, NOT the box centre), ``camMat`` (3, 3).
All 3D values use the OpenGL camera axes (y up, object at -z), as HO-3D does.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np

from converters.object_rows import box_corners
from pipelines.synthetic_world import HandSequence, make_hand_sequence, render_depth
from schemas.geometry import OPENGL_TO_OPENCV, compose, make_transform, matrix_to_axis_angle

DEPTH_UNIT_M = 0.00012498664727900177


def encode_depth(depth_m: np.ndarray) -> np.ndarray:
    """HO-3D depth PNG (BGR order for cv2): value = R + 256 G in units of DEPTH_UNIT_M."""
    value = np.round(depth_m / DEPTH_UNIT_M).astype(np.int64)
    out = np.zeros(depth_m.shape + (3,), np.uint8)
    out[..., 2] = value % 256  # red (cv2 channel 2)
    out[..., 1] = value // 256  # green (cv2 channel 1)
    return out


def write_ho3d_sample(
    out: str | Path,
    *,
    seed: int = 0,
    num_episodes: int = 2,
    num_steps: int = 45,
    episodes_per_shard: int = 0,
    sequences: list[HandSequence] | None = None,
) -> list[HandSequence]:
    """``num_episodes`` sequences of ``num_steps`` frames under ``<out>/train``."""
    del episodes_per_shard
    sequences = sequences or [make_hand_sequence(seed, i, num_steps) for i in range(num_episodes)]
    F = OPENGL_TO_OPENCV  # its own inverse: OpenCV <-> OpenGL camera axes
    for seq in sequences:
        folder = Path(out) / "train" / f"SYN{seq.index:02d}"
        for sub in ("rgb", "depth", "meta"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        obj = seq.scene.episode.objects[0]
        origin_offset = make_transform(np.eye(3), [0.0, 0.0, -obj.size[2] / 2])  # origin at the bottom face
        rest = box_corners(make_transform(np.eye(3), [0.0, 0.0, obj.size[2] / 2]), np.array(obj.size))
        for t in range(len(seq.flex)):
            cv2.imwrite(str(folder / "rgb" / f"{t:04d}.jpg"), seq.image(t)[:, :, ::-1])
            depth = render_depth(seq.scene.episode, seq.camera, 0, draw_robot=False)
            cv2.imwrite(str(folder / "depth" / f"{t:04d}.png"), encode_depth(depth))
            T_cam_origin = compose(seq.scene.T_cam_object(0, 0), origin_offset)
            joints_cv = (seq.joints(t) - seq.camera.T_base_cam[:3, 3]) @ seq.camera.T_base_cam[:3, :3]
            R_wrist_gl = F @ seq.T_cam_wrist(t)[:3, :3]
            meta = {
                "handJoints3D": joints_cv @ F,
                "handPose": np.concatenate([matrix_to_axis_angle(R_wrist_gl), np.zeros(45)]),
                "handTrans": (F @ seq.T_cam_wrist(t)[:3, 3]),
                "handBeta": np.zeros(10),
                "objRot": matrix_to_axis_angle(F @ T_cam_origin[:3, :3]).reshape(3, 1),
                "objTrans": F @ T_cam_origin[:3, 3],
                "objName": obj.category,
                "objLabel": 1,
                "camMat": seq.camera.K,
                "objCorners3DRest": rest,
                "objCorners3D": (rest @ T_cam_origin[:3, :3].T + T_cam_origin[:3, 3]) @ F,
            }
            with open(folder / "meta" / f"{t:04d}.pkl", "wb") as f:
                pickle.dump(meta, f, protocol=2)
    return sequences
