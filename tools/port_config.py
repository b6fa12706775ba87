"""Turns a PySlowFast, TimeSformer or XViT YAML config into this project's, the one step before
an official config runs here:

    python tools/port_config.py TimeSformer_divST_8x32_224.yaml -o tsf_8x32.yaml
    python tools/run_net.py --cfg tsf_8x32.yaml DATA.PATH_TO_DATA_DIR /data/k400 ...

Keys with another name here are renamed (TRAIN.DATASET -> DATA.DATASET), keys that ask for what
the engine does anyway are dropped (TRAIN.FINETUNE, LOSS_FUNC cross_entropy, NUM_GPUS: torchrun
starts the processes), the architecture keys become MODEL.ARCH, and every value that cannot be
honoured (mixup, label smoothing, another attention type) is refused, all at once. What was
done is printed and written at the top of the new file; the new file is checked as run_net.py
reads it. The table of keys is in docs/ENGINE.md (ats_video/legacy_keys.py).
"""

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import sys

import yaml

from ats_video.config import flatten, get_cfg, load_config
from ats_video.legacy_keys import port_config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("config", help="the PySlowFast / TimeSformer / XViT YAML file")
    parser.add_argument("-o", "--output", required=True, help="the YAML file to write")
    args = parser.parse_args(argv)
    with open(args.config) as f:
        content = yaml.safe_load(f)
    if not isinstance(content, dict):
        raise ValueError(f"config file {args.config} does not hold a mapping")
    try:
        ported, notes = port_config(flatten(content), flatten(get_cfg()))
    except ValueError as err:
        print(f"{args.config}: {err}", file=sys.stderr)
        return 2
    header = [f"# ported from {args.config} by tools/port_config.py:"]
    header += [f"#   {note}" for note in notes]
    with open(args.output, "w") as f:
        f.write("\n".join(header) + "\n")
        yaml.safe_dump(ported, f, sort_keys=False)
    load_config(args.output)  # the checks run_net.py makes, naming any key that fails
    print("\n".join(header + [f"wrote {args.output}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
