"""The config keys of PySlowFast, TimeSformer and XViT, and what they are here.

Their YAML files share most keys with this project (TRAIN.*, DATA.*, SOLVER.*, TEST.*), but not
all: some keys have another name here (``TRAIN.DATASET`` is ``DATA.DATASET``), some say what the
engine does anyway (``TRAIN.FINETUNE``, ``LOSS_FUNC: cross_entropy``), some belong to the
launcher (``NUM_GPUS`` is torchrun's ``--nproc_per_node``), and some name what is not
named otherwise here (``DATA.AUTOAUGMENT``, ``LOSS_FUNC: smooth_cross_entropy``). :data:`FOREIGN_KEYS` says which is which, and serves
twice:

- :func:`unknown_keys_message`: ``load_config`` reports every unknown key of a file at once,
  each with what to use instead;
- :func:`port_config`: ``tools/port_config.py`` turns an official YAML into this project's
  (the one step before it runs), refusing, all at once, the values it cannot honour.

The architecture is the one translation that reads several keys: TimeSformer's ``MODEL.ARCH:
vit`` with ``TIMESFORMER.ATTENTION_TYPE: divided_space_time`` is ``timesformer`` here, and
XViT's ``MODEL.ARCH: xvit`` with its ``XVIT.NUM_SEGMENTS`` and ``XVIT.SHIFT_DIV`` is the preset
of the released model with those settings.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

ANY = "any"


@dataclass(frozen=True)
class ForeignKey:
    """A key of PySlowFast, TimeSformer or XViT.

    key: its name there.
    ours: the key with the same meaning here (the value carries over), or "" when none.
    accepts: where ``ours`` is "": the values that ask for what this engine does anyway (the
        key is then dropped), as a predicate; any other value cannot be honoured.
    accepted: those values in words, for messages and the docs' table.
    instead: what to use here instead, or what the engine does.
    """

    key: str
    ours: str = ""
    accepts: Callable[[Any], bool] = lambda value: True
    accepted: str = ANY
    instead: str = ""


def _one_of(*values: Any) -> Callable[[Any], bool]:
    return lambda value: value in values


def _covers_blocks(value: Any) -> bool:
    return isinstance(value, list) and set(range(12)) <= set(value)


_LAUNCHER = "torchrun starts the processes: "
FOREIGN_KEYS: Tuple[ForeignKey, ...] = (
    ForeignKey("TRAIN.DATASET", ours="DATA.DATASET"),
    ForeignKey("TEST.DATASET", ours="DATA.DATASET"),
    ForeignKey("TIMESFORMER.PRETRAINED_MODEL", ours="TRAIN.CHECKPOINT_FILE_PATH"),
    ForeignKey(
        "NUM_GPUS", instead=_LAUNCHER + "`torchrun --nproc_per_node N` (one process per GPU)"
    ),
    ForeignKey("NUM_SHARDS", instead=_LAUNCHER + "`torchrun --nnodes N`"),
    ForeignKey("SHARD_ID", instead=_LAUNCHER + "`torchrun --node_rank I`"),
    ForeignKey("INIT_METHOD", instead=_LAUNCHER + "`torchrun --rdzv_endpoint HOST:PORT`"),
    ForeignKey("DIST_BACKEND", instead="NCCL on GPUs, gloo on CPUs, chosen by the device"),
    ForeignKey(
        "TRAIN.FINETUNE",
        instead="`TRAIN.CHECKPOINT_FILE_PATH` fine-tunes: a classifier of another class count "
        "is re-initialised, every other weight loads strictly",
    ),
    ForeignKey(
        "TRAIN.CHECKPOINT_EPOCH_RESET",
        accepts=_one_of(True),
        accepted="True",
        instead="training from `TRAIN.CHECKPOINT_FILE_PATH` starts at epoch 1; only resuming "
        "(`TRAIN.AUTO_RESUME`) continues a run's epochs",
    ),
    ForeignKey(
        "TRAIN.CHECKPOINT_TYPE",
        accepts=_one_of("pytorch"),
        accepted="pytorch",
        instead="checkpoints are PyTorch files (Caffe2 ones are not read)",
    ),
    ForeignKey(
        "TRAIN.CHECKPOINT_INFLATE",
        accepts=_one_of(False),
        accepted="False",
        instead="an ImageNet ViT in `TRAIN.CHECKPOINT_FILE_PATH` initialises a video model as "
        "the releases do (docs/ENGINE.md); 3-D convolutions are not inflated",
    ),
    ForeignKey(
        "TEST.SAVE_RESULTS_PATH",
        instead="the test always writes `OUTPUT_DIR/test_scores.npz` (scores, labels, paths; "
        "`TEST.SAVE_VIEW_SCORES` for every view's)",
    ),
    ForeignKey(
        "DATA.INPUT_CHANNEL_NUM",
        accepts=_one_of([3]),
        accepted="[3]",
        instead="RGB input, one pathway",
    ),
    ForeignKey(
        "DATA.AUTOAUGMENT",
        accepts=_one_of(False),
        accepted="False",
        instead="`DATA.AUTO_AUGMENT v0` for the XViT release's AutoAugment (timm's policy)",
    ),
    ForeignKey(
        "DATA.RANDAUGMENT", accepts=_one_of(False), accepted="False", instead="no RandAugment"
    ),
    ForeignKey(
        "DATA.COLORAUGMENT", accepts=_one_of(False), accepted="False", instead="no colour jitter"
    ),
    ForeignKey(
        "MODEL.LOSS_FUNC",
        accepts=_one_of("cross_entropy"),
        accepted="cross_entropy",
        instead="cross-entropy training; the XViT release's `smooth_cross_entropy` is "
        "`TRAIN.LABEL_SMOOTHING 0.3`",
    ),
    ForeignKey(
        "MODEL.DROPOUT_RATE",
        accepts=_one_of(0.5),
        accepted="0.5",
        instead="TimeSformer's model does not read it (its drop rate is 0); the XViT presets "
        "hold the release's 0.5",
    ),
    ForeignKey(
        "MODEL.MODEL_NAME",
        accepts=_one_of("vit_base_patch16_224", "XVIT"),
        accepted="vit_base_patch16_224, XVIT",
        instead="`MODEL.ARCH` names the model (tools/port_config.py reads it with `MODEL.ARCH` "
        "and the TIMESFORMER / XVIT keys)",
    ),
    ForeignKey(
        "TIMESFORMER.ATTENTION_TYPE",
        accepts=_one_of("divided_space_time"),
        accepted="divided_space_time",
        instead="`MODEL.ARCH timesformer` (divided space-time attention, the only one here)",
    ),
    ForeignKey(
        "XVIT.BASE_MODEL",
        instead="the ImageNet ViT to start from: its file as `TRAIN.CHECKPOINT_FILE_PATH`",
    ),
    ForeignKey(
        "XVIT.CONSENSUS_TYPE",
        accepts=_one_of("vit"),
        accepted="vit",
        instead="the temporal transformer head of the released models",
    ),
    ForeignKey(
        "XVIT.USE_XVIT", accepts=_one_of(True), accepted="True", instead="space-time mixing"
    ),
    ForeignKey(
        "XVIT.LOCATIONS_LIST",
        accepts=_covers_blocks,
        accepted="every block 0-11",
        instead="every block mixes space and time",
    ),
    ForeignKey("XVIT.NUM_SEGMENTS", instead="read with `XVIT.SHIFT_DIV` into `MODEL.ARCH`"),
    ForeignKey("XVIT.SHIFT_DIV", instead="read with `XVIT.NUM_SEGMENTS` into `MODEL.ARCH`"),
    ForeignKey(
        "BN.USE_PRECISE_STATS",
        accepts=_one_of(False),
        accepted="False",
        instead="transformers have no batch norm",
    ),
)
BY_KEY: Dict[str, ForeignKey] = {entry.key: entry for entry in FOREIGN_KEYS}

# (XVIT.NUM_SEGMENTS, XVIT.SHIFT_DIV) -> the preset of the released XViT with those settings
XVIT_PRESETS = {(8, 8): "xvit_base_16x224_k600", (16, 4): "xvit_base_16x224_ssv2"}
PORT_STEP = "tools/port_config.py FILE -o OURS.yaml translates a PySlowFast/TimeSformer/XViT file"


def advice(key: str) -> str:
    """What ``key`` (unknown here) is, and what to use instead."""
    entry = BY_KEY.get(key)
    if entry is None:
        return f"{key}: not a key of this project"
    if entry.ours:
        return f"{key}: here `{entry.ours}`, same meaning"
    if entry.accepted == ANY:
        return f"{key}: {entry.instead}"
    return f"{key}: {entry.instead} (values other than {entry.accepted}: not supported)"


def unknown_keys_message(keys: List[str], source: str) -> str:
    """The error for every unknown key of ``source`` at once, each with :func:`advice`."""
    lines = [f"{source}: {len(keys)} unknown config key(s):"]
    lines += [f"  {advice(key)}" for key in keys]
    if any(key in BY_KEY for key in keys):
        lines.append(f"  ({PORT_STEP}; see docs/ENGINE.md)")
    return "\n".join(lines)


def _decoded(value: Any) -> Any:
    """A YAML string as fvcore reads it: a Python literal where it is one (PyYAML reads
    ``1e-4`` as a string, fvcore as a float)."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _architecture(flat: Dict[str, Any]) -> Optional[str]:
    """Our MODEL.ARCH for a foreign file's architecture keys (None: not a foreign one)."""
    arch = flat.get("MODEL.ARCH")
    if arch == "vit":
        return "timesformer"
    if arch == "xvit":
        shift = (flat.get("XVIT.NUM_SEGMENTS", 8), flat.get("XVIT.SHIFT_DIV", 8))
        if shift not in XVIT_PRESETS:
            raise ValueError(
                f"XVIT.NUM_SEGMENTS {shift[0]}, XVIT.SHIFT_DIV {shift[1]}: no preset has these; "
                f"the released models have {sorted(XVIT_PRESETS)}"
            )
        return XVIT_PRESETS[shift]
    return None


def port_config(
    flat: Mapping[str, Any], known: Mapping[str, Any]
) -> Tuple[Dict[str, Any], List[str]]:
    """A foreign YAML's keys -> (this project's config tree, what was done, a line each).

    Args:
        flat: the file's contents, flattened (``{"TRAIN.DATASET": "kinetics", ...}``).
        known: this project's flattened default config (which keys exist here).
    Raises:
        ValueError listing every value that cannot be honoured, and every key unknown to both.
    """
    flat = {key: _decoded(value) for key, value in flat.items()}
    out: Dict[str, Any] = {}
    notes: List[str] = []
    refused: List[str] = []
    arch = _architecture(flat)
    if arch:
        notes.append(f"MODEL.ARCH {flat['MODEL.ARCH']!r} -> {arch!r}")
    for key, value in flat.items():
        entry = BY_KEY.get(key)
        if key == "MODEL.ARCH" and arch:
            out[key] = arch
        elif key in known:
            out[key] = value
        elif entry is None:
            refused.append(advice(key))
        elif entry.ours:
            if entry.ours in out and out[entry.ours] != value:
                refused.append(f"{key} {value!r}: {entry.ours} is already {out[entry.ours]!r}")
            out[entry.ours] = value
            notes.append(f"{key} -> {entry.ours}")
        elif entry.accepts(value):
            notes.append(f"dropped {key} {value!r}: {entry.instead}")
        else:
            refused.append(f"{key} {value!r}: {entry.instead} (supported: {entry.accepted})")
    if out.get("SOLVER.LR_POLICY", known["SOLVER.LR_POLICY"]) == "cosine":
        for key in ("SOLVER.STEPS", "SOLVER.LRS"):
            if out.pop(key, None) is not None:
                notes.append(f"dropped {key}: the cosine policy does not read it")
    if refused:
        raise ValueError("cannot port these keys:\n  " + "\n  ".join(refused))
    if arch and "ATS.ENABLE" not in out:
        out["ATS.ENABLE"] = False
        notes.append("ATS.ENABLE False: the official model has no ATS (True adds it)")
    nested: Dict[str, Any] = {}
    for key, value in out.items():
        *sections, name = key.split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = value
    return nested, notes


def key_table() -> str:
    """The markdown table of :data:`FOREIGN_KEYS` that docs/ENGINE.md shows (a test checks
    that it does)."""
    lines = ["| their key | here | values honoured |", "|---|---|---|"]
    for entry in FOREIGN_KEYS:
        here = f"`{entry.ours}`" if entry.ours else entry.instead
        lines.append(f"| `{entry.key}` | {here} | {entry.accepted} |")
    return "\n".join(lines)
