"""Every converter, registered in one place: its catalog name, the class that converts, its typed
options model (schemas/converter_options.py) and the catalog datasets whose bundled sample
(``pipelines.samples.SAMPLES``) it converts.

A catalog entry's ``converter_status`` follows from it: ``available`` exactly when its converter
is registered here (``schemas.catalog`` refuses a file that says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas import converter_options as o


@dataclass(frozen=True)
class Registration:
    target: str  # "module:Class" in converters/, imported only when a conversion starts
    options: type[o.ConverterOptions]
    samples: tuple[str, ...]  # catalog datasets with a bundled sample writer for this converter


CONVERTERS: dict[str, Registration] = {
    "droid": Registration("converters.droid:DroidConverter", o.DroidOptions, ("droid",)),
    "libero": Registration("converters.libero:LiberoConverter", o.LiberoOptions, ("libero_spatial",)),
    "robotwin": Registration("converters.robotwin:RobotwinConverter", o.RobotwinOptions, ("robotwin2",)),
    "lerobot": Registration(
        "converters.lerobot:LerobotConverter", o.LerobotOptions, ("lerobot_demo", "lerobot_demo_v21", "interndata_a1")
    ),
    "oxe_rlds": Registration(
        "converters.oxe_rlds:OxeRldsConverter",
        o.OxeRldsOptions,
        ("bridge", "bridge_orig", "fractal", "libero_spatial_no_noops"),
    ),
    "omni3d": Registration("converters.omni3d:Omni3dConverter", o.Omni3dOptions, ("omni3d_sunrgbd",)),
    "bop": Registration("converters.bop:BopConverter", o.BopOptions, ("bop_ycbv", "bop_hot3d")),
    "objectron": Registration("converters.objectron:ObjectronConverter", o.ObjectronOptions, ("objectron",)),
    "ho3d": Registration("converters.ho3d:Ho3dConverter", o.Ho3dOptions, ("ho3d",)),
    "dexycb": Registration("converters.dexycb:DexycbConverter", o.DexycbOptions, ("dexycb",)),
    "egodex": Registration("converters.egodex:EgodexConverter", o.EgodexOptions, ("egodex",)),
    "hot3d_clips": Registration("converters.hot3d_clips:Hot3dClipsConverter", o.Hot3dClipsOptions, ("hot3d_clips",)),
    "h2o": Registration("converters.h2o:H2oConverter", o.H2oOptions, ("h2o",)),
    "arctic": Registration("converters.arctic:ArcticConverter", o.ArcticOptions, ("arctic",)),
    "fpha": Registration("converters.fpha:FphaConverter", o.FphaOptions, ("fpha",)),
    "taco": Registration("converters.taco:TacoConverter", o.TacoOptions, ("taco",)),
    "hoi4d": Registration("converters.hoi4d:Hoi4dConverter", o.Hoi4dOptions, ("hoi4d",)),
    "oakink2": Registration("converters.oakink2:Oakink2Converter", o.Oakink2Options, ("oakink2",)),
    "agibot": Registration("converters.agibot:AgibotConverter", o.AgibotOptions, ("agibot_world_beta",)),
    "omni6d": Registration("converters.omni6d:Omni6dConverter", o.Omni6dOptions, ("omni6d_rope", "omni6d_sope")),
    "graspclutter6d": Registration(
        "converters.graspclutter6d:GraspClutter6dConverter", o.GraspClutter6dOptions, ("graspclutter6d",)
    ),
}

# entry-level catalog fields that fill the options of the same name, when the model has them
ENTRY_FIELDS = ("fps", "waypoint_horizon")


def options_data(entry: Any, overrides: dict | None = None) -> dict:
    """What a converter's options model is validated from: the entry's ``fps`` /
    ``waypoint_horizon`` (where the model has them), then its ``options``, then ``overrides``."""
    fields = CONVERTERS[entry.converter].options.model_fields
    inherited = {k: getattr(entry, k) for k in ENTRY_FIELDS if k in fields and getattr(entry, k) is not None}
    return {**inherited, **entry.options, **(overrides or {})}


def resolve_options(entry: Any, overrides: dict | None = None) -> o.ConverterOptions:
    """The typed options of a catalog ``entry`` (a ``DatasetEntry``) with ``overrides`` (``--set``)
    on top; ``ValueError`` naming the dataset, each bad key and what is wrong with it."""
    try:
        return CONVERTERS[entry.converter].options.model_validate(options_data(entry, overrides))
    except ValidationError as e:
        problems = "; ".join(f"options.{'.'.join(map(str, err['loc']))}: {describe(err)}" for err in e.errors())
        raise ValueError(f"dataset {entry.name!r}: {problems}") from None


def describe(err: dict) -> str:
    """A pydantic error as ``<message> (got <value>)``; the value only for a scalar input."""
    value = err.get("input")
    scalar = isinstance(value, str | int | float | bool) and err["type"] != "missing"
    return f"{err['msg']} (got {value!r})" if scalar else err["msg"]
