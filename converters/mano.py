"""The MANO hand model, run through smplx (vchoutas/smplx 0.1.28, ``smplx.MANO``) on the user's own model files.

MANO's model files are licensed (register at https://mano.is.tue.mpg.de): posetok cannot ship them. A source
that publishes MANO parameters only (ARCTIC, OakInk2, TACO, HOI4D) needs ``MANO_RIGHT.pkl`` and
``MANO_LEFT.pkl`` in the folder its catalog option ``mano_dir`` names (or ``--set mano_dir=...``);
:func:`require_mano_dir` refuses such a source up front, naming the files and where to get them. The
pickles must be chumpy-free (the original release holds chumpy objects: convert them once with
vchoutas/smplx ``tools/clean_ch.py``); they are read with :class:`converters.base.RestrictedUnpickler`
(numpy arrays, a scipy sparse ``J_regressor`` and builtins only), never with ``pickle.load``.

:class:`ManoHand` gives, per frame, 21 joints in posetok's order (:data:`schemas.hand_joints.HAND_JOINTS`:
MANO's 16 joints plus 5 fingertip VERTICES, reordered with :func:`schemas.hand_joints.from_mano_order`)
and the wrist pose ``[R(global_orient) | joint 0]``, in the frame the parameters live in, metres. Where the
official loaders differ, the difference is a constructor argument, so each converter states its loader:

* fingertip vertices :data:`TIPS`: smplx ``vertex_ids['mano']`` (ARCTIC's patched smplx,
  zc-alexfan/arctic docs/setup.md:65-72) or manopth's (hassony2/manopth manopth/manolayer.py:250-253, the
  left hand's middle tip is vertex 445, the right's 444; used by TACO, HOI4D, H2O);
* ``flat_hand_mean``: whether ``hand_pose = 0`` is the flat hand (manopth default) or MANO's mean pose
  (smplx default; ARCTIC's ground truth, common/body_models.py:128-135);
* ``center_root``: manopth / manotorch ``center_idx=0`` subtract the posed wrist before ``transl`` is
  added, so the wrist sits AT ``transl`` (manolayer.py:262-266, TACO dataset_utils/hand_pose_loader.py:33,
  61-65); smplx puts it at ``J0(beta) + transl`` (smplx/lbs.py ``lbs``: the global rotation turns about J0);
* ``fix_left_shapedirs``: the MANO release's left model has the right model's x shape directions
  (vchoutas/smplx issue 48); hand_tracking_toolkit negates them (hand_models/mano_hand_model.py:117-127),
  smplx, manopth and ARCTIC do not.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

from converters.base import RestrictedUnpickler
from schemas.geometry import axis_angle_to_matrix, make_transform
from schemas.hand_joints import from_mano_order

MANO_URL = "https://mano.is.tue.mpg.de"
MANO_FILES = {"right": "MANO_RIGHT.pkl", "left": "MANO_LEFT.pkl"}
MANOPTH_TIPS = {"right": (745, 317, 444, 556, 673), "left": (745, 317, 445, 556, 673)}  # manolayer.py:250-253


def smplx_tips() -> tuple[int, ...]:
    """smplx's MANO fingertip vertices thumb, index, middle, ring, little (smplx/vertex_ids.py ``'mano'``)."""
    from smplx.vertex_ids import vertex_ids

    return tuple(int(v) for v in vertex_ids["mano"].values())


class MissingManoModel(FileNotFoundError):
    """The licensed MANO model files are not where the ``mano_dir`` option points."""


def require_mano_dir(folder: str | None, dataset: str) -> Path:
    """``folder`` (the ``mano_dir`` option) as a folder holding both MANO pickles, or
    :class:`MissingManoModel` saying exactly what is missing and where to get it."""
    missing = [name for name in MANO_FILES.values() if not folder or not (Path(folder) / name).is_file()]
    if missing:
        where = f"in {folder}" if folder else "(option mano_dir is not set)"
        raise MissingManoModel(
            f"{dataset} publishes MANO parameters, not joints: it needs the licensed MANO model files "
            f"{' and '.join(MANO_FILES.values())} (missing: {', '.join(missing)} {where}). Register and download "
            f"'Models & Code' at {MANO_URL}, convert the pickles to plain arrays once (vchoutas/smplx "
            f"tools/clean_ch.py) and pass the folder: catalog option mano_dir or --set mano_dir=/path/to/mano"
        )
    return Path(folder)


class _ManoUnpickler(RestrictedUnpickler):
    """:class:`RestrictedUnpickler` that also rebuilds the scipy sparse ``J_regressor`` of a MANO pickle;
    chumpy objects (the original MANO release) are refused with how to convert them."""

    SPARSE = {("scipy.sparse._csc", "csc_matrix"), ("scipy.sparse.csc", "csc_matrix")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.SPARSE:
            return scipy.sparse.csc_matrix
        if module.split(".")[0] == "chumpy":
            raise pickle.UnpicklingError(
                "MANO pickle holds chumpy objects: convert it to plain arrays first (vchoutas/smplx tools/clean_ch.py)"
            )
        return super().find_class(module, name)


def load_mano_arrays(mano_dir: str | Path, side: str, fix_left_shapedirs: bool = False) -> dict:
    """The arrays of ``MANO_{RIGHT,LEFT}.pkl``; with ``fix_left_shapedirs`` the left model's x shape
    directions are negated when they equal the right model's (mano_hand_model.py:117-127)."""
    with open(Path(mano_dir) / MANO_FILES[side], "rb") as f:
        model = dict(_ManoUnpickler(f, encoding="latin1").load())
    if side == "left" and fix_left_shapedirs:
        right = load_mano_arrays(mano_dir, "right")
        left = np.array(model["shapedirs"], dtype=np.float64)
        if np.abs(left[:, 0, :] - np.asarray(right["shapedirs"], float)[:, 0, :]).sum() < 1:
            left[:, 0, :] *= -1
        model["shapedirs"] = left
    return model


@dataclass(frozen=True)
class ManoRoot:
    """Where smplx's MANO puts the wrist (root joint) without running the full model: ``J0(beta) =
    J_regressor[0] @ (v_template + shapedirs @ beta)`` [m], stored as ``template`` (3,) + ``dirs`` (3, n_betas)
    (smplx/lbs.py ``lbs``: ``v_shaped``, ``vertices2joints``)."""

    template: np.ndarray
    dirs: np.ndarray

    @classmethod
    def from_arrays(cls, v_template, shapedirs, J_regressor) -> ManoRoot:
        j0 = np.asarray(J_regressor.toarray() if scipy.sparse.issparse(J_regressor) else J_regressor, float)[0]
        return cls(j0 @ np.asarray(v_template, float), np.einsum("v,vck->ck", j0, np.asarray(shapedirs, float)))

    def wrist(self, wrist_xform, betas) -> np.ndarray:
        """``T_ref_wrist`` (4x4, m) of ``[axis-angle(3), transl(3)]`` in smplx's sense and ``betas``."""
        xform, betas = np.asarray(wrist_xform, float), np.asarray(betas, float)
        j0 = self.template + self.dirs[:, : betas.size] @ betas
        return make_transform(axis_angle_to_matrix(xform[:3]), j0 + xform[3:6])


def load_mano_roots(mano_dir: str | Path, fix_left_shapedirs: bool = True) -> dict[str, ManoRoot]:
    """:class:`ManoRoot` per side (hand_tracking_toolkit's reading: left shape directions fixed)."""
    models = {side: load_mano_arrays(mano_dir, side, fix_left_shapedirs) for side in MANO_FILES}
    return {side: ManoRoot.from_arrays(m["v_template"], m["shapedirs"], m["J_regressor"]) for side, m in models.items()}


@dataclass
class ManoOutput:
    """Per frame: ``joints`` (N, 21, 3) in :data:`schemas.hand_joints.HAND_JOINTS` order and ``T_wrist``
    (N, 4, 4) = ``[R(global_orient) | joint 0]``, both in the parameters' frame, metres."""

    joints: np.ndarray
    T_wrist: np.ndarray


class ManoHand:
    """One side's MANO layer (``smplx.MANO`` with ``use_pca=False``, float64) with a source's conventions
    (see the module docstring); ``tips`` is ``"smplx"`` or ``"manopth"``."""

    def __init__(
        self,
        mano_dir: str | Path,
        side: str,
        *,
        flat_hand_mean: bool,
        tips: str,
        center_root: bool = False,
        fix_left_shapedirs: bool = False,
    ):
        import smplx
        import torch
        from smplx.utils import Struct

        if tips not in ("smplx", "manopth"):
            raise ValueError(f"tips must be 'smplx' or 'manopth', not {tips!r}")
        self.side, self.center_root = side, center_root
        self.tips = list(smplx_tips() if tips == "smplx" else MANOPTH_TIPS[side])
        arrays = load_mano_arrays(mano_dir, side, fix_left_shapedirs)
        self._torch = torch
        self.model = smplx.MANO(
            str(mano_dir),
            is_rhand=side == "right",
            data_struct=Struct(**arrays),
            use_pca=False,
            flat_hand_mean=flat_hand_mean,
            dtype=torch.float64,
            create_global_orient=False,
            create_hand_pose=False,
            create_betas=False,
            create_transl=False,
        )

    def __call__(self, global_orient, hand_pose, betas, transl) -> ManoOutput:
        """``global_orient`` (N, 3) and ``hand_pose`` (N, 45) axis-angle [rad], ``betas`` (N, 10) or (10,),
        ``transl`` (N, 3) [m] -> :class:`ManoOutput`."""
        torch = self._torch
        go = np.asarray(global_orient, dtype=np.float64).reshape(-1, 3)
        n = len(go)

        def tensor(x, width):
            return torch.tensor(np.broadcast_to(np.asarray(x, dtype=np.float64).reshape(-1, width), (n, width)))

        betas, transl = tensor(betas, 10), np.asarray(transl, dtype=np.float64).reshape(n, 3)
        with torch.no_grad():
            out = self.model(betas=betas, global_orient=tensor(go, 3), hand_pose=tensor(hand_pose, 45))
        vertices, joints16 = out.vertices.numpy(), out.joints.numpy()
        mano = np.concatenate([joints16, vertices[:, self.tips]], axis=1)  # MANO order: 16 joints + 5 tips
        if self.center_root:
            mano = mano - mano[:, :1]
        mano = mano + transl[:, None]
        joints = np.stack([from_mano_order(j) for j in mano])
        T = np.stack([make_transform(axis_angle_to_matrix(r), j[0]) for r, j in zip(go, joints, strict=True)])
        return ManoOutput(joints, T)


def mano_hands(mano_dir: str | Path, **conventions) -> dict[str, ManoHand]:
    """:class:`ManoHand` for both sides with the same conventions."""
    return {side: ManoHand(mano_dir, side, **conventions) for side in MANO_FILES}
