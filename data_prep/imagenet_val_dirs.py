"""Sorts the flat ImageNet validation images into class folders (val/nXXXXXXXX/*.JPEG).

The ImageNet-1k validation release is one folder of 50,000 images; the ImageNet dataset of
ats_video (like torchvision's ImageFolder) needs one folder per class. --labels gives each
image's class (WordNet id), in either form:

    LOC_val_solution.csv (Kaggle):  ImageId,PredictionString
                                    ILSVRC2012_val_00008726,n02119789 255 142 454 329 ...
    a two-column text file:         ILSVRC2012_val_00000001.JPEG n01751748
                                    (space- or comma-separated; extension optional)

(The devkit's ILSVRC2012_validation_ground_truth.txt holds devkit ids, not WordNet ids; its
meta.mat maps them, and torchvision's ImageNet class can do that conversion.)

Images are moved (or copied with --copy). Safe to run again: images already in their class
folder are skipped (a copy is made under a partial name and renamed, so a killed run leaves no
half image there); images without a label are reported and left where they are.
"""

import argparse
import csv
import os
import re
import shutil
import sys

from tqdm import tqdm

from ats_video.data.files import replacing
from ats_video.data.lists import read_utf8

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
SYNSET = re.compile(r"^n\d{8}$")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--val", required=True, help="the validation image folder (sorted in place)"
    )
    parser.add_argument(
        "--labels", required=True, help="LOC_val_solution.csv or `image synset` lines"
    )
    parser.add_argument(
        "--copy", action="store_true", help="copy the images instead of moving them"
    )
    return parser.parse_args(argv)


def read_labels(path: str) -> dict[str, str]:
    """Maps an image's name without extension to its WordNet id."""
    try:
        lines = read_utf8(path).splitlines()  # drops a BOM (Excel)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if lines and "," in lines[0]:
        rows = list(enumerate(csv.reader(lines), start=1))
    else:
        rows = [(number, line.split()) for number, line in enumerate(lines, start=1)]
    kaggle = bool(rows) and rows[0][1][:1] == ["ImageId"]
    labels = {}
    for number, row in rows[1:] if kaggle else rows:
        if not row:
            continue
        if kaggle and len(row) == 2:  # the prediction string starts with the class
            row = [row[0], *row[1].split()[:1]]
        if len(row) < 2 or not SYNSET.match(row[1].strip()):
            raise SystemExit(f"{path} line {number}: expected 'image nXXXXXXXX', got {row}")
        labels[os.path.splitext(row[0].strip())[0]] = row[1].strip()
    return labels


def main(argv=None) -> int:
    args = parse_args(argv)
    labels = read_labels(args.labels)
    images = sorted(
        e.name
        for e in os.scandir(args.val)
        if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)
    )
    unlabelled, moved = [], 0
    for name in tqdm(images, desc="sorting", unit="image"):
        synset = labels.get(os.path.splitext(name)[0])
        if synset is None:
            unlabelled.append(name)
            continue
        os.makedirs(os.path.join(args.val, synset), exist_ok=True)
        target = os.path.join(args.val, synset, name)
        if not os.path.exists(target):
            if args.copy:  # under a partial name: a kill mid-copy leaves no image that looks done
                with replacing(target) as partial:
                    shutil.copy2(os.path.join(args.val, name), partial)
            else:  # within one file system: a rename, whole or not at all
                os.replace(os.path.join(args.val, name), target)
            moved += 1
    in_folders = sum(
        1
        for e in os.scandir(args.val)
        if e.is_dir() and SYNSET.match(e.name)
        for f in os.scandir(e.path)
        if f.name.lower().endswith(IMAGE_EXTENSIONS)
    )
    verb = "copied" if args.copy else "moved"
    print(f"{moved} images {verb}; {in_folders} images in class folders")
    if unlabelled:
        print(f"{len(unlabelled)} images have no label in {args.labels}, e.g. {unlabelled[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
