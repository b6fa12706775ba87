"""Writes a checkpoint of this project in the official release's layout, for the official code
(TimeSformer, XViT) to load:

    python tools/export_official.py runs/tsf/checkpoints/checkpoint_epoch_00015.pyth \\
        -o TimeSformer_ours_K400.pyth

The output is SlowFast's container, ``{"model_state", "epoch"}``, with the release's key names:
TimeSformer's under the ``model.`` prefix of its wrapper; XViT's backbone under
``base_model.``, its temporal head as ``consensus``, and the release's unused ``new_fc``
classifier as zeros. ATS adds no weights, so a model fine-tuned with ATS exports the same way
(the official code runs it without ATS). The file is written atomically and reads with
``torch.load(weights_only=True)``.
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import sys

import torch

from ats_video.checkpoint import FORMAT, read_checkpoint, split_checkpoint, write_atomically
from ats_video.families import FAMILIES


def export(path: str, output: str) -> str:
    """Writes ``output``; returns what was written, in words."""
    state_dict, extra = split_checkpoint(read_checkpoint(path))
    if extra.get("format") != FORMAT:
        raise ValueError(f"{path}: not a checkpoint of this project (no 'format': {FORMAT!r})")
    family = next((f for f in FAMILIES if f.model_type.__name__ == extra.get("arch")), None)
    if family is None or family.to_official is None:
        raise ValueError(
            f"{path}: holds a {extra.get('arch')}; the official layouts are TimeSformer's and "
            "XViT's (timm reads this project's ViT / DeiT state dicts as they are)"
        )
    official = family.to_official(state_dict)
    contents = {"model_state": official, "epoch": int(extra.get("epoch", 0))}
    write_atomically(output, lambda f: torch.save(contents, f))
    return f"wrote {output}: {len(official)} tensors of the {extra['arch']} in the official layout"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="a checkpoint of this project (.pyth)")
    parser.add_argument("-o", "--output", required=True, help="the file to write")
    args = parser.parse_args(argv)
    print(export(args.checkpoint, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
