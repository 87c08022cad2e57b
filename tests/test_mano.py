"""The MANO layer (converters/mano.py) runs smplx's own MANO class on a generated model with MANO's exact
array names and shapes; its joint order and fingertip vertices are checked against the libraries' own."""

from __future__ import annotations

import numpy as np
import pytest
import smplx
import torch
from smplx.vertex_ids import vertex_ids

from converters.mano import MANOPTH_TIPS, ManoHand, MissingManoModel, require_mano_dir
from pipelines.samples.mano import mano_like_model, save_mano_like_model
from schemas.hand_joints import MANO_TO_HAND_JOINTS, to_mano_order

SHAPES = {
    "v_template": (778, 3),
    "shapedirs": (778, 3, 10),
    "posedirs": (778, 3, 135),
    "J_regressor": (16, 778),
    "weights": (778, 16),
    "kintree_table": (2, 16),
    "f": (1538, 3),
    "hands_components": (45, 45),
    "hands_mean": (45,),
}


@pytest.fixture(scope="module")
def mano_dir(tmp_path_factory):
    return save_mano_like_model(tmp_path_factory.mktemp("mano"))


def _params(n=3, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.5, (n, 3)), rng.normal(0, 0.3, (n, 45)), rng.normal(0, 1, 10), rng.normal(0, 0.3, (n, 3))


def test_generated_model_has_manos_array_names_and_shapes():
    model = mano_like_model()
    assert {k: tuple(np.shape(v)) for k, v in model.items()} == SHAPES


def test_smplx_tips_and_joint_order_are_arctics_patched_smplx(mano_dir):
    """zc-alexfan/arctic docs/setup.md:65-72: smplx's MANO + ``vertex_joint_selector`` = 21 joints, MANO order."""
    go, pose, betas, transl = _params()
    layer = ManoHand(mano_dir, "right", flat_hand_mean=False, tips="smplx")
    assert layer.tips == list(vertex_ids["mano"].values())
    ours = layer(go, pose, betas, transl)
    official = smplx.MANO(str(mano_dir), is_rhand=True, use_pca=False, flat_hand_mean=False, dtype=torch.float64)
    with torch.no_grad():
        t = torch.as_tensor
        out = official(betas=t(np.tile(betas, (3, 1))), global_orient=t(go), hand_pose=t(pose), transl=t(transl))
        joints21 = official.vertex_joint_selector(out.vertices, out.joints).numpy()  # the patched line
    np.testing.assert_allclose(np.stack([to_mano_order(j) for j in ours.joints]), joints21, atol=1e-9)
    # wrist = joint 0 = J0(beta) + transl (rotation about J0), orientation = global_orient
    np.testing.assert_allclose(ours.T_wrist[:, :3, 3], joints21[:, 0], atol=1e-9)


def test_manopth_conventions(mano_dir):
    """hassony2/manopth manopth/manolayer.py:250-266: tips per side, OpenPose reorder, center_idx=0."""
    assert list(MANO_TO_HAND_JOINTS) == [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
    assert MANOPTH_TIPS == {"right": (745, 317, 444, 556, 673), "left": (745, 317, 445, 556, 673)}
    go, pose, betas, transl = _params()
    for side in ("right", "left"):
        layer = ManoHand(mano_dir, side, flat_hand_mean=True, tips="manopth", center_root=True)
        out = layer(go, pose, betas, transl)
        np.testing.assert_allclose(out.joints[:, 0], transl, atol=1e-12)  # the wrist sits AT transl
        raw = ManoHand(mano_dir, side, flat_hand_mean=True, tips="manopth")(go, pose, betas, np.zeros((3, 3)))
        verts = layer.model(
            betas=torch.as_tensor(np.tile(betas, (3, 1))),
            global_orient=torch.as_tensor(go),
            hand_pose=torch.as_tensor(pose),
        ).vertices.detach().numpy()
        np.testing.assert_allclose(raw.joints[:, [4, 8, 12, 16, 20]], verts[:, list(MANOPTH_TIPS[side])], atol=1e-12)


def test_missing_model_names_the_files_and_where_to_register(tmp_path):
    with pytest.raises(MissingManoModel, match=r"MANO_RIGHT\.pkl.*MANO_LEFT\.pkl.*https://mano\.is\.tue\.mpg\.de"):
        require_mano_dir(None, "arctic")
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(b"")
    with pytest.raises(MissingManoModel, match=r"missing: MANO_LEFT\.pkl in"):
        require_mano_dir(str(tmp_path), "arctic")
