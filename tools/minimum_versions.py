"""Prints pip constraints that pin every requirement of setup.py to its declared minimum.

CI's second lane (.ci/run) installs the project with these constraints in a fresh environment
and runs a fast subset of the tests there, so a lower bound that the code has outgrown fails CI
rather than a user's install. Requirements without a lower bound are left free; ``--skip``
leaves out packages installed beforehand (the CPU torch pair that tools/setup.sh pins, since the
registry's older torch wheels are CUDA builds of several GB).

    python tools/minimum_versions.py --skip torch torchvision > minimum.txt
    pip install -c minimum.txt -e .
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

SETUP = Path(__file__).resolve().parents[1] / "setup.py"


def install_requires(setup_py: Path = SETUP) -> list[str]:
    """The ``install_requires`` list of setup.py, read without running it."""
    for node in ast.walk(ast.parse(setup_py.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            return ast.literal_eval(node.value)
    raise ValueError(f"{setup_py}: no install_requires list")


def minimum_pins(requirements: list[str], skip: set[str] = frozenset()) -> list[str]:
    """``name==version`` for each ``name>=version`` requirement whose name is not in ``skip``."""
    pins = []
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(?:>=\s*([^,;\s]+))?\s*(?:;.*)?", requirement)
        if match is None:
            raise ValueError(f"cannot read the requirement {requirement!r} (expected name>=version)")
        name, minimum = match.groups()
        if minimum and name not in skip:
            pins.append(f"{name}=={minimum}")
    return pins


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip", nargs="*", default=[], help="packages to leave out")
    args = parser.parse_args(argv)
    print("\n".join(minimum_pins(install_requires(), set(args.skip))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
