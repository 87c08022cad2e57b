"""Write synthetic hand sequences as DexYCB (formats.md 9.1).

``<out>/<YYYYMMDD-subject-01>/<YYYYMMDD_HHMMSS>/<serial>/{color_%06d.jpg, labels_%06d.npz}`` with
``labels``: ``pose_y`` (objects, 3, 4) camera-frame ``[R | t]`` in metres, ``joint_3d`` (1, 21, 3)
camera metres, ``pose_m`` (1, 51) = MANO global rotation (3) + PCA pose (45) + translation (3);
``<seq>/meta.yml`` (``serials``, ``num_frames``, ``ycb_ids``, ``mano_sides``);
``calibration/intrinsics/<serial>_640x480.yml`` (``color: {fx, fy, ppx, ppy}``) and
``models/<ycb name>/textured_simple.obj`` (the box, origin offset from its centre as YCB models are).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from converters.object_rows import box_corners
from pipelines.synthetic_world import HandSequence, make_hand_sequence
from schemas.geometry import make_transform, matrix_to_axis_angle

YCB_MODELS = {1: "002_master_chef_can", 2: "003_cracker_box", 3: "004_sugar_box", 4: "005_tomato_soup_can"}
MODEL_ORIGIN_OFFSET_M = np.array([0.004, -0.003, 0.01])  # model origin = box centre + this (object frame)


def write_dexycb_sample(
    out: str | Path,
    *,
    seed: int = 0,
    num_episodes: int = 2,
    num_steps: int = 40,
    episodes_per_shard: int = 0,
    sequences: list[HandSequence] | None = None,
) -> list[HandSequence]:
    del episodes_per_shard
    root = Path(out)
    sequences = sequences or [make_hand_sequence(seed, i, num_steps) for i in range(num_episodes)]
    for seq in sequences:
        serial = f"8{seq.index:02d}112345"
        folder = root / "20200709-subject-01" / f"20200709_1411{seq.index:02d}"
        (folder / serial).mkdir(parents=True, exist_ok=True)
        obj = seq.scene.episode.objects[0]
        ycb_id = 1 + seq.index % len(YCB_MODELS)
        model_dir = root / "models" / YCB_MODELS[ycb_id]
        model_dir.mkdir(parents=True, exist_ok=True)
        corners = box_corners(make_transform(np.eye(3), -MODEL_ORIGIN_OFFSET_M), np.array(obj.size))
        (model_dir / "textured_simple.obj").write_text(
            "".join(f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in corners) + "f 1 2 3\n"
        )
        K = seq.camera.K
        intr = root / "calibration" / "intrinsics" / f"{serial}_640x480.yml"
        intr.parent.mkdir(parents=True, exist_ok=True)
        intr.write_text(
            yaml.safe_dump(
                {"color": {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "ppx": float(K[0, 2]), "ppy": float(K[1, 2])}}
            )
        )
        (folder / "meta.yml").write_text(
            yaml.safe_dump(
                {
                    "serials": [serial],
                    "num_frames": len(seq.flex),
                    "ycb_ids": [ycb_id],
                    "ycb_grasp_ind": 0,
                    "mano_sides": ["right"],
                    "mano_calib": ["mano_20200709"],
                }
            )
        )
        T_cam_origin = seq.scene.T_cam_object(0, 0) @ make_transform(np.eye(3), MODEL_ORIGIN_OFFSET_M)
        for t in range(len(seq.flex)):
            cv2.imwrite(str(folder / serial / f"color_{t:06d}.jpg"), seq.image(t)[:, :, ::-1])
            joints = (seq.joints(t) - seq.camera.T_base_cam[:3, 3]) @ seq.camera.T_base_cam[:3, :3]
            wrist = seq.T_cam_wrist(t)
            pose_m = np.concatenate([matrix_to_axis_angle(wrist[:3, :3]), np.zeros(45), wrist[:3, 3]])[None]
            np.savez(
                folder / serial / f"labels_{t:06d}.npz",
                seg=np.zeros((2, 2), np.uint8),
                pose_y=T_cam_origin[None, :3, :].astype(np.float32),
                pose_m=pose_m.astype(np.float32),
                joint_3d=joints[None].astype(np.float32),
                joint_2d=np.zeros((1, 21, 2), np.float32),
            )
    return sequences
