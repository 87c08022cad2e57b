"""Typed ``options`` of every converter: what a catalog entry's ``options:`` (and ``--set KEY=VALUE``)
may hold, with types, defaults and units. Unknown keys are refused.

Building blocks shared by many converters: :class:`FrameRate` (``fps``), :class:`Waypoints`
(``waypoint_horizon``; the catalog entry's own ``fps`` and ``waypoint_horizon`` fill them),
:class:`Jpeg` (``jpeg_quality`` of images the converter encodes) and :class:`Mano` (``mano_dir``).
Nested mappings (camera tables, column maps) are ``TypedDict`` s: validated here, handed to the
converter as plain dicts.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from schemas.pose_layouts import LAYOUTS

_FORBID = ConfigDict(extra="forbid")


def _pose_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown pose layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    return layout


PoseLayout = Annotated[str, AfterValidator(_pose_layout)]  # a schemas/pose_layouts.py layout name
Vec3 = Annotated[list[float], Field(min_length=3, max_length=3)]
Quat = Annotated[list[float], Field(min_length=4, max_length=4)]  # w, x, y, z
Matrix3 = Annotated[list[Vec3], Field(min_length=3, max_length=3)]
Matrix4 = Annotated[list[Annotated[list[float], Field(min_length=4, max_length=4)]], Field(min_length=4, max_length=4)]


class ConverterOptions(BaseModel):
    """Root of every converter's options: frozen, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WaypointHorizon(BaseModel):
    """Future ego poses per row: ``count`` waypoints ``spacing_s`` seconds apart (Pose-VLA: 5 x 1.0 s)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(5, ge=0, le=100)
    spacing_s: float = Field(1.0, gt=0)


class FrameRate(ConverterOptions):
    fps: float = Field(30.0, gt=0, description="source frame rate [Hz] where the data does not state it; "
                                               "the catalog entry's `fps` fills it")


class Waypoints(ConverterOptions):
    waypoint_horizon: WaypointHorizon = Field(
        WaypointHorizon(), description="waypoints per row (count, spacing_s [s]); the entry's `waypoint_horizon`"
    )


class Trajectory(FrameRate, Waypoints):
    """A timed source with future waypoints: ``fps`` and ``waypoint_horizon``."""


class Jpeg(ConverterOptions):
    jpeg_quality: int = Field(95, ge=1, le=100, description="JPEG quality (1..100) of images the converter encodes")


class Mano(ConverterOptions):
    mano_dir: str | None = Field(None, description="folder with the licensed MANO_RIGHT.pkl / MANO_LEFT.pkl "
                                                   "(https://mano.is.tue.mpg.de), chumpy-free")


# ------------------------------------------------------------------------------------ robots
class DroidOptions(Trajectory):
    fps: float = Field(15.0, gt=0, description="DROID control rate [Hz]")
    calibration_dir: str | None = Field(None, description="KarlP/droid calibration JSONs; null = <source>/calibration")
    calibration_wh: tuple[int, int] = Field((1280, 720), description="sensor size [px] intrinsics.json describes")
    use_keep_ranges: bool = Field(False, description="keep only keep_ranges_1_0_1.json step ranges")


class AgentviewPose(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    pos: Vec3  # [m], MuJoCo world
    quat: Quat  # w, x, y, z


class LiberoOptions(Trajectory, Jpeg):
    fps: float = Field(20.0, gt=0, description="LIBERO control rate [Hz]")
    agentview_by_problem: dict[str, AgentviewPose] = Field(
        {}, description="problem_name -> agentview {pos [m], quat wxyz}, for demos without model_file"
    )
    agentview_fovy: float = Field(45.0, gt=0, lt=180, description="agentview vertical field of view [deg]")
    gripper_max_width_m: float = Field(0.08, gt=0, description="finger opening [m] that counts as fully open")


class RobotwinOptions(Trajectory, Jpeg):
    fps: float = Field(15.0, gt=0, description="RoboTwin 2.0 save rate [Hz]")


class AgibotOptions(Trajectory, Jpeg):
    tip_offset_m: float = Field(0.23, description="gripper tip along the flange +z [m]")
    gripper_open: float = Field(35.0, description="raw state/effector/position reading when fully open")
    gripper_closed: float = Field(120.0, description="raw reading when fully closed")
    depth_max_m: float = Field(4.0, gt=0, description="head depth above this [m] -> 0 (no reading)")


class LerobotGripper(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    column: str
    open: float  # raw value when open (-> 0)
    closed: float  # raw value when closed (-> 1)


class LerobotArm(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    column: str
    layout: PoseLayout
    name: NotRequired[str]  # default "arm"
    gripper: NotRequired[LerobotGripper | None]


class LerobotCamera(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    video: str
    intrinsics: NotRequired[str | None]
    extrinsics: NotRequired[str | None]  # camera-to-robot pose column
    extrinsics_layout: NotRequired[PoseLayout]  # default xyz_qxyzw
    depth: NotRequired[str | None]


class LerobotOptions(Trajectory, Jpeg):
    fps: float = Field(30.0, gt=0, description="frame rate [Hz] when meta/info.json has none")
    state_column: str | None = Field(None, description="state column; null = observation.state when present")
    action_column: str | None = Field(None, description="action column; null = action when present")
    ee_pose: LerobotArm | list[LerobotArm] | None = Field(
        None, description="end-effector pose column(s) {column, layout, name, gripper}; a list for several arms"
    )
    gripper: LerobotGripper | None = Field(None, description="gripper of a single ee_pose {column, open, closed}")
    cameras: dict[str, LerobotCamera] | None = Field(
        None, description="view -> {video, intrinsics, extrinsics, extrinsics_layout, depth}; null = every video"
    )
    intrinsics_layout: Literal["fx_fy_cx_cy", "matrix9"] = Field("fx_fy_cx_cy", description="intrinsics columns")


class OxeEe(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    layout: PoseLayout
    start: NotRequired[int]  # first state column of the pose
    rotation_offset: NotRequired[Matrix3]  # 3x3: R_ee = R_state @ rotation_offset


class OxeGripper(TypedDict, total=False):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    key: str  # observation key holding the reading
    index: int
    open: float
    closed: float
    finger_qpos: list[int]  # or: two finger joint columns of the state ...
    max_width_m: float  # ... and their opening [m] when fully open


class OxeState(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    key: str
    ee: NotRequired[OxeEe | None]
    gripper: NotRequired[OxeGripper | None]


class OxeAction(TypedDict):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    keys: list[str]


class OxeCamera(TypedDict, total=False):
    __pydantic_config__ = _FORBID  # type: ignore[misc]
    T_base_cam: list[float]  # 16, row-major
    intrinsics: list[float]  # fx, fy, cx, cy [px]
    mujoco_pos: Vec3  # or a MuJoCo camera: position [m] ...
    mujoco_quat: Quat  # ... orientation w, x, y, z (OpenGL axes) ...
    fovy: float  # ... and vertical field of view [deg]


class OxeRldsOptions(Trajectory, Jpeg):
    fps: float = Field(10.0, gt=0, description="control rate [Hz] (the RLDS steps carry none)")
    images: dict[str, str] = Field(description="view -> steps/observation image key")
    image_fix: Literal["none", "flipud", "fliplr", "rot180"] = Field(
        "none", description="undo a flip of the stored images (then re-encoded as JPEG)"
    )
    language: str = Field("language_instruction", description="steps key (or observation/<key>) of the instruction")
    state: OxeState = Field(description="{key, ee: {layout, start, rotation_offset}, gripper: {...}}")
    action: OxeAction = Field(description="{keys: [...]}, concatenated")
    cameras: dict[str, OxeCamera | None] = Field({}, description="view -> camera pose and intrinsics; none = no poses")
    ref_frame: str = Field("robot_base", description="name of the frame the poses are in")


# ----------------------------------------------------------------------------------- objects
class Omni3dOptions(ConverterOptions):
    # defaults: facebookresearch/omni3d cubercnn/config/config.py:23-26 (get_filter_settings_from_cfg(None))
    json_glob: str = Field("Omni3D/*.json", description="annotation JSONs, relative to the source")
    image_root: str | None = Field(None, description="folder the JSONs' file_path are relative to; null = source")
    truncation_thres: float = Field(0.99, description="drop boxes with truncation >= this")
    visibility_thres: float = Field(0.01, description="drop boxes with visibility <= this (-1 = unknown kept)")
    min_height_thres: float = Field(0.0, description="drop boxes lower than this fraction of the image height")
    max_height_thres: float = Field(1.5, description="drop boxes at least this fraction of the image height")
    max_depth_m: float = Field(1e8, gt=0, description="drop boxes farther than this [m]")
    ignore_names: list[str] = Field([], description="categories to drop")


class BopOptions(Jpeg):
    object_names: dict[int, str] = Field({}, description="BOP obj_id -> category name")
    focal_scale: float = Field(1.0, gt=0, description="rectified pinhole focal = focal_scale x fisheye focal")
    streams: list[str] | None = Field(None, description="scene_gt_<stream> streams to convert; null = all")


class GraspClutter6dOptions(Jpeg):
    object_names: dict[int, str] = Field({}, description="obj_id -> name; empty = graspclutter6d_object_id.csv")
    cameras: list[Literal["realsense_d415", "realsense_d435", "azure_kinect", "zivid"]] | None = Field(
        None, description="cameras to convert; null = all four"
    )


class ObjectronOptions(ConverterOptions):
    records_glob: str = Field("**/*-of-*", description="annotation record files, relative to the source")
    max_fit_px: float = Field(1.0, gt=0, description="largest box-fit residual [px] a frame may have")


class Omni6dOptions(ConverterOptions):
    subset: Literal["ROPE", "SOPE"] = Field("ROPE", description="ROPE (real) or SOPE (simulated)")


# ------------------------------------------------------------------------------------- hands
class Ho3dOptions(Trajectory):
    """HO-3D states no frame rate: ``fps`` [Hz] is the one assumed for waypoint spacing."""


class DexycbOptions(Trajectory):
    """DexYCB: ``fps`` [Hz] as recorded (30)."""


class EgodexOptions(Trajectory, Jpeg):
    min_confidence: float = Field(0.5, ge=0, le=1, description="joints less confident than this are left out")


class Hot3dClipsOptions(Trajectory, Jpeg, Mano):
    models_info: str = Field("object_models_eval/models_info.json", description="models_info.json, source-relative")
    object_names: dict[int, str] = Field({}, description="BOP id -> category name")
    streams: list[str] = Field(["214-1"], description="camera streams (214-1 Aria RGB; 1201-1/-2 Quest3 gray)")
    focal_scale: float = Field(1.0, gt=0, description="rectified pinhole focal = focal_scale x fisheye focal")


class H2oOptions(Trajectory):
    cams: list[str] | None = Field(None, description="cam folders to convert; null = every one present")


class ArcticOptions(Trajectory, Mano):
    views: list[int] = Field(list(range(9)), description="camera views to convert (0 = egocentric)")


class FphaOptions(FrameRate):
    cam_extr: Matrix4 = Field(description="4x4 world -> colour camera, translation [mm] "
                                          "(guiggh/hand_pose_action load_example.py:113-119)")
    cam_intr: Matrix3 = Field(description="3x3 colour intrinsics [px]")


class TacoOptions(Trajectory, Jpeg, Mano):
    split_file: str | None = Field(None, description="train/test split list; null = all train")


class Hoi4dOptions(Trajectory, Jpeg, Mano):
    fps: float = Field(15.0, gt=0, description="HOI4D video rate [Hz]")


class Oakink2Options(Waypoints, Mano):
    anno_dir: str = Field("anno_preview", description="annotation folder, relative to the source")
    cams: list[str] | None = Field(None, description="cameras to convert; null = the annotation's cam_selection")
