"""Write the synthetic world as LIBERO's original robomimic-style HDF5 (formats.md 3.1-3.2).

``<out>/libero_spatial/<TASK>_demo.hdf5``, one file per task, ``/data/demo_<i>`` per episode:
``obs/agentview_rgb`` and ``obs/eye_in_hand_rgb`` stored bottom-up (robosuite "opengl"
convention), ``obs/ee_pos`` + ``obs/ee_ori`` (axis-angle) in the MuJoCo world, finger
``obs/gripper_states``, ``actions`` with the gripper as -1 open / +1 close, the language in
``/data`` attr ``problem_info``, and the scene XML in each demo's ``model_file`` attr, from which
the converter reads the cameras (agentview in the world, eye-in-hand on the hand).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.synthetic_world import Episode, ideal_cameras, make_episode, render
from schemas.geometry import (
    OPENGL_TO_OPENCV,
    compose,
    invert_transform,
    make_transform,
    matrix_to_axis_angle,
    matrix_to_quat,
)

FINGER_MAX_WIDTH_M = 0.08
# hand body -> gripper body -> grip site: fixed offsets of the (synthetic) Panda hand
T_HAND_GRIPPER = make_transform(np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), [0.0, 0.0, 0.107])
T_GRIPPER_SITE = make_transform(np.eye(3), [0.0, 0.0, 0.097])
CV_TO_GL = make_transform(OPENGL_TO_OPENCV, np.zeros(3))  # the axis flip is its own inverse


@dataclass
class LiberoSample:
    root: Path
    files: list[Path]
    episodes: list[Episode] = field(repr=False)
    episode_ids: list[str] = field(repr=False)


def _fmt(values) -> str:
    return " ".join(f"{float(v):.17g}" for v in values)


def model_xml(ep: Episode) -> str:
    """A MuJoCo scene with the agentview camera in the world and the eye-in-hand camera on the
    hand, placed so that they reproduce the world's cameras exactly (MuJoCo cameras: OpenGL axes)."""
    agent, _, wrist = ep.cameras
    fovy = np.degrees(2 * np.arctan(0.5 * agent.height / agent.K[1, 1]))
    T_world_agent_gl = compose(agent.T_base_cam, CV_TO_GL)
    T_hand_site = compose(T_HAND_GRIPPER, T_GRIPPER_SITE)
    T_hand_wrist_gl = compose(T_hand_site, wrist.T_ee_cam, CV_TO_GL)
    T_world_hand0 = compose(ep.T_base_ee[0], invert_transform(T_hand_site))
    wrist_fovy = np.degrees(2 * np.arctan(0.5 * wrist.height / wrist.K[1, 1]))

    def pose(T: np.ndarray) -> str:
        return f'pos="{_fmt(T[:3, 3])}" quat="{_fmt(matrix_to_quat(T[:3, :3]))}"'

    return f"""<mujoco model="posetok_synthetic">
  <worldbody>
    <camera name="agentview" mode="fixed" {pose(T_world_agent_gl)} fovy="{fovy:.17g}"/>
    <body name="robot0_base" pos="0 0 0">
      <body name="robot0_right_hand" {pose(T_world_hand0)}>
        <camera name="robot0_eye_in_hand" mode="fixed" {pose(T_hand_wrist_gl)} fovy="{wrist_fovy:.17g}"/>
        <body name="gripper0_right_gripper" {pose(T_HAND_GRIPPER)}>
          <site name="gripper0_grip_site" {pose(T_GRIPPER_SITE)}/>
        </body>
      </body>
    </body>
  </worldbody>
</mujoco>"""


def write_demo(group, ep: Episode) -> None:
    """One ``/data/demo_<i>`` group of an episode (opengl-flipped images, axis-angle EE)."""
    T = ep.num_steps
    agent, _, wrist = ep.cameras
    pos = ep.T_base_ee[:, :3, 3]
    ori = matrix_to_axis_angle(ep.T_base_ee[:, :3, :3])
    width = FINGER_MAX_WIDTH_M * (1 - ep.gripper)
    fingers = np.stack([width / 2, -width / 2], axis=1)
    quat_xyzw = matrix_to_quat(ep.T_base_ee[:, :3, :3])[:, [1, 2, 3, 0]]
    delta = np.clip(
        np.diff(np.concatenate([pos, ori], 1), axis=0, append=np.concatenate([pos, ori], 1)[-1:]) * 20, -1, 1
    )
    actions = np.concatenate([delta, np.where(ep.gripper > 0.5, 1.0, -1.0)[:, None]], axis=1)
    group.attrs["num_samples"] = T
    group.attrs["model_file"] = model_xml(ep)
    group.attrs["init_state"] = np.zeros(10)
    group["actions"] = actions
    group["states"] = np.zeros((T, 10))
    group["robot_states"] = np.concatenate([fingers, pos, quat_xyzw], axis=1)
    group["rewards"] = np.eye(1, T, T - 1, dtype=np.uint8)[0]
    group["dones"] = np.eye(1, T, T - 1, dtype=np.uint8)[0]
    obs = group.create_group("obs")
    obs["agentview_rgb"] = np.stack([render(ep, agent, t)[::-1] for t in range(T)])  # bottom-up
    obs["eye_in_hand_rgb"] = np.stack([render(ep, wrist, t)[::-1] for t in range(T)])
    obs["ee_pos"] = pos
    obs["ee_ori"] = ori
    obs["ee_states"] = np.concatenate([pos, ori], axis=1)
    obs["gripper_states"] = fingers
    obs["joint_states"] = np.tanh(np.concatenate([pos, ori, pos[:, :1]], axis=1))


def write_libero_sample(
    out: str | Path,
    *,
    seed: int = 0,
    num_episodes: int = 4,
    num_steps: int = 80,
    episodes_per_shard: int = 2,
    episodes: list[Episode] | None = None,
    suite: str = "libero_spatial",
) -> LiberoSample:
    """Write episodes (the world's, or ``episodes`` given) as LIBERO HDF5, ``episodes_per_shard`` per task file."""
    import h5py

    root = Path(out)
    folder = root / suite
    folder.mkdir(parents=True, exist_ok=True)
    if episodes is None:
        episodes = [
            make_episode(seed, i, num_steps, ideal_cameras(np.random.default_rng([seed, 10_000 + i]), 128, 128))
            for i in range(num_episodes)
        ]
    files, ids = [], []
    for start in range(0, len(episodes), episodes_per_shard):
        group = episodes[start : start + episodes_per_shard]
        task = group[0].instructions[0].replace(" ", "_")
        path = folder / f"TASK{start // episodes_per_shard:02d}_{task}_demo.hdf5"
        with h5py.File(path, "w") as f:
            data = f.create_group("data")
            data.attrs["env_name"] = "Libero_Tabletop_Manipulation"
            data.attrs["problem_info"] = json.dumps(
                {
                    "problem_name": "libero_tabletop_manipulation",
                    "domain_name": "robosuite",
                    "language_instruction": group[0].instructions[0],
                }
            )
            data.attrs["macros_image_convention"] = "opengl"
            data.attrs["env_args"] = json.dumps({"type": 1, "env_name": "Libero_Tabletop_Manipulation"})
            data.attrs["num_demos"] = len(group)
            data.attrs["total"] = sum(ep.num_steps for ep in group)
            for i, ep in enumerate(group):
                write_demo(data.create_group(f"demo_{i}"), ep)
                ids.append(f"{path.stem}/demo_{i}")
        files.append(path)
    return LiberoSample(root, files, episodes, ids)
