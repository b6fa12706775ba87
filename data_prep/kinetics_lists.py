"""Writes Kinetics video lists and the class map from the official annotation CSVs.

Reads the annotation CSVs (columns label, youtube_id, time_start, time_end, split, and maybe
is_cc; Kinetics-400/600/700 all use them) and finds each clip on disk under --videos by its
name `<youtube_id>_<start:06d>_<end:06d>.<ext>`, in a flat folder or in class (and split)
folders. Writes into --out:

    train.csv, val.csv, test.csv   `relative/path label` per line (space-separated; the label,
                                   a class index, is the last field), paths relative to --videos;
                                   test.csv only where the test annotations carry labels
    classids.json                  {class name: index}, names sorted (or as --classes gives them)
    missing_<split>.txt            clips listed in the annotations but not found on disk

One class map numbers every list in --out, on every run: a classids.json already there is kept
as it is (a run on part of the annotations leaves the other lists' indices right), classes it
lacks are refused unless --extend-classes appends them, and --classes must agree with it.

Then train with DATA.PATH_TO_DATA_DIR <out> DATA.PATH_PREFIX <videos>. Safe to run again: the
outputs are rewritten only where they change, each written whole or not at all.
"""

from __future__ import annotations

# ruff: noqa: I001
import ats_video  # noqa: F401  (first: it repairs torchvision imports where needed)

import argparse
import csv
import io
import itertools
import json
import os
import sys
from collections import defaultdict

from tqdm import tqdm

from ats_video.data.files import walk_videos, write_text_atomic
from ats_video.data.lists import read_class_names, read_utf8

SPLIT_NAMES = {
    "train": "train",
    "val": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
}
REQUIRED_COLUMNS = ("youtube_id", "time_start", "time_end", "split")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--annotations", nargs="+", required=True, help="official annotation CSVs")
    parser.add_argument("--videos", required=True, help="directory holding the clips")
    parser.add_argument("--out", required=True, help="directory for the lists and class map")
    parser.add_argument(
        "--classes",
        help="class map (JSON list or {name: index}) to use instead of the sorted labels; "
        "must equal the classids.json already in --out, if there is one",
    )
    parser.add_argument(
        "--extend-classes",
        action="store_true",
        help="append classes that the class map lacks after its last index (without it, "
        "such classes are an error)",
    )
    return parser.parse_args(argv)


def read_annotations(paths: list[str]) -> list[dict]:
    """Rows of all CSVs, with their ``clip`` name, ``split`` in SPLIT_NAMES and source line."""
    rows = []
    for path in paths:
        try:
            text = read_utf8(path)  # drops a BOM (Excel), which would hide the "label" column
        except ValueError as error:
            raise SystemExit(str(error)) from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{path}: no column {', '.join(missing)} (found {reader.fieldnames})")
        for row in reader:
            where = f"{os.path.basename(path)} line {reader.line_num}"
            if None in row.values():
                raise SystemExit(f"{where}: fewer fields than columns: {row}")
            split = SPLIT_NAMES.get(row["split"].strip().lower())
            if split is None:
                raise SystemExit(f"{where}: unknown split {row['split']!r}")
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except ValueError:
                raise SystemExit(f"{where}: time_start/time_end are not numbers: {row}") from None
            rows.append(
                {
                    "clip": f"{row['youtube_id']}_{start:06d}_{end:06d}",
                    "label": (row.get("label") or "").strip(),
                    "split": split,
                    "where": where,
                }
            )
    return rows


def find_clips(root: str) -> tuple[dict[str, str], list[str]]:
    """Maps each clip name (file name without extension) under ``root`` to its relative path;
    also returns the names found more than once (the first in sorted order is kept).

    Folders are searched as datasets read them (:func:`ats_video.data.files.walk_videos`):
    linked folders followed, "__MACOSX" and other system folders and hidden files skipped.
    """
    clips, duplicates = {}, []
    for path in tqdm(walk_videos(root), desc=f"scanning {root}", unit=" videos"):
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in clips:
            duplicates.append(stem)
        else:
            clips[stem] = os.path.relpath(path, root)
    return clips, duplicates


def class_map(
    existing: list[str] | None,
    requested: list[str] | None,
    labels: set[str],
    *,
    extend: bool,
    existing_name: str = "the class map in --out",
    requested_name: str = "--classes",
) -> list[str]:
    """The class names in index order: one numbering for every list in --out, on every run.

    A map already in --out (``existing``) is kept as it is, since the lists written with it
    hold its indices; ``requested`` (--classes) must then equal it. Classes of ``labels`` that
    the map lacks are appended after its last index with ``extend``, else refused. Without
    either map the classes are the sorted labels.

    Raises:
        ValueError: naming the classes that differ or are missing.
    """
    if existing is not None and requested is not None and existing != requested:
        raise ValueError(
            f"{existing_name} and {requested_name} differ: "
            f"{_differences(existing, requested, existing_name, requested_name)}; delete "
            f"{existing_name} (and the lists written with it) to number the classes anew"
        )
    base = existing if existing is not None else requested
    if base is None:
        return sorted(labels)
    new = sorted(labels - set(base))
    if new and not extend:
        source = existing_name if existing is not None else requested_name
        raise ValueError(
            f"{len(new)} classes not in {source}: {new[:5]}; --extend-classes appends them "
            "after its last index, keeping every index it has"
        )
    return base + new


def _differences(a: list[str], b: list[str], name_a: str, name_b: str) -> str:
    """The first few indices where two class lists differ, as text."""
    pairs = itertools.zip_longest(a, b, fillvalue="(none)")
    differ = [(i, x, y) for i, (x, y) in enumerate(pairs) if x != y]
    text = "; ".join(f"index {i}: {x!r} in {name_a}, {y!r} in {name_b}" for i, x, y in differ[:3])
    return text + (f" (and {len(differ) - 3} more)" if len(differ) > 3 else "")


def write_if_changed(path: str, text: str) -> str:
    """Writes ``text`` to ``path`` atomically unless it already holds it; says which."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return "unchanged"
    write_text_atomic(path, text)
    return "written"


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = read_annotations(args.annotations)
    classids_path = os.path.join(args.out, "classids.json")
    try:
        names = class_map(
            read_class_names(classids_path) if os.path.exists(classids_path) else None,
            read_class_names(args.classes) if args.classes else None,
            {r["label"] for r in rows if r["label"]},
            extend=args.extend_classes,
            existing_name=classids_path,
            requested_name=args.classes or "--classes",
        )
    except ValueError as error:
        raise SystemExit(str(error)) from None
    class_index = {name: i for i, name in enumerate(names)}
    clips, duplicates = find_clips(args.videos)
    if duplicates:
        print(f"{len(duplicates)} clips found more than once, e.g. {duplicates[0]}; kept the first")

    os.makedirs(args.out, exist_ok=True)
    lines, missing, unlabelled = defaultdict(list), defaultdict(list), defaultdict(int)
    for row in tqdm(rows, desc="matching clips", unit=" clips"):
        if not row["label"]:
            unlabelled[row["split"]] += 1
        elif row["clip"] in clips:
            lines[row["split"]].append(f"{clips[row['clip']]} {class_index[row['label']]}\n")
        else:
            missing[row["split"]].append(f"{row['clip']}\t{row['label']}\n")

    # Before the lists: a kill between the two leaves lists whose indices the map holds.
    status = write_if_changed(
        classids_path, json.dumps(class_index, indent=1, ensure_ascii=False) + "\n"
    )
    print(f"classids.json: {len(names)} classes ({status})")
    for split in ("train", "val", "test"):
        if unlabelled[split]:
            print(f"{split}: {unlabelled[split]} annotations without labels, not listed")
        if not lines[split] and not missing[split]:
            continue
        status = write_if_changed(os.path.join(args.out, f"{split}.csv"), "".join(lines[split]))
        print(f"{split}.csv: {len(lines[split])} clips ({status})", end="")
        missing_path = os.path.join(args.out, f"missing_{split}.txt")
        if missing[split]:
            write_if_changed(missing_path, "".join(missing[split]))
            example = missing[split][0].split("\t")[0]
            print(
                f"; {len(missing[split])} missing on disk, e.g. {example}, listed in {missing_path}"
            )
        else:
            if os.path.exists(missing_path):
                os.remove(missing_path)
            print("; none missing")
    print(f"use: DATA.PATH_TO_DATA_DIR {args.out} DATA.PATH_PREFIX {args.videos}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
