"""tools/compare_methods.py: the bisection to a target, and a comparison of a tiny TimeSformer
that writes its table, rows and plot."""

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image
from test_sweep import data_dir, tiny  # noqa: F401  (the fixture and the tiny config)

import ats_video  # noqa: F401  (before timm)

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("compare_methods", ROOT / "tools" / "compare_methods.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


@pytest.mark.parametrize("rising", [True, False])
def test_the_bisection_finds_the_closest_knob_in_few_tries(rising):
    costs = {k: (k if rising else 40 - k) * 1.5 for k in range(0, 41)}
    tried = []

    def gflops(k):
        tried.append(k)
        return costs[k]

    for target in (0.0, 7.4, 8.0, 31.1, 100.0):
        tried.clear()
        knob = compare.closest_knob(gflops, target, 0, 40, rising)
        assert abs(costs[knob] - target) == min(abs(c - target) for c in costs.values())
        assert len(set(tried)) <= 9
    assert compare.closest_knob(lambda k: float(k), 2.5, 0, 10, True) == 2  # a tie: the cheaper


def test_a_comparison_writes_its_table_rows_and_plot(data_dir, tmp_path):  # noqa: F811
    out = tmp_path / "compare"
    code = compare.main(["--cfg", "", "--checkpoint", str(data_dir / "tiny.pyth"), "--fractions", "0.8",
                         "--repeats", "1", "--out", str(out), *tiny(data_dir)])  # fmt: skip
    assert code == 0
    rows = json.loads((out / "compare.json").read_text())
    assert [r["method"] for r in rows] == ["no reduction", "ATS (sampling)", "ATS top-K", "random K", "ToMe"]
    plain, *reduced = rows
    target = 0.8 * plain["gflops_per_view"]
    assert plain["target_gflops"] is None and plain["kept_tokens"] == {}
    for r in reduced:
        assert r["target_gflops"] == pytest.approx(target)
        assert r["gflops_per_view"] < plain["gflops_per_view"] and r["clips_per_s"] > 0
        assert set(r["kept_tokens"]) == {"2", "3"}  # the config's blocks
    for r in rows[2:4]:  # top-K and random keep exactly K of every frame's 16 tokens: 4 frames x K a clip
        k = int(r["setting"].removeprefix("K="))
        assert r["kept_tokens"] == {"2": 4.0 * min(k, 16), "3": 4.0 * min(k, 16)}
    assert rows[4]["setting"].startswith("r=")
    table = (out / "compare.md").read_text().splitlines()
    assert table[2].startswith("| - | no reduction | - | ") and len(table) == 2 + len(rows)
    with Image.open(out / "compare.png") as plot:
        assert plot.width >= 1000 and plot.height >= 450


def test_unknown_methods_and_checkpoints_are_named(data_dir):  # noqa: F811
    opts = ["--cfg", "", "--checkpoint", str(data_dir / "tiny.pyth")]
    with pytest.raises(SystemExit, match=r"--methods: unknown \['merge'\]"):
        compare.main([*opts, "--methods", "sample", "merge", *tiny(data_dir)])
    with pytest.raises(SystemExit, match="--method-checkpoint: expected METHOD=FILE"):
        compare.main([*opts, "--method-checkpoint", "ats=x.pyth", *tiny(data_dir)])
    for bad in ("tome=two", "merge=2", "tome", "sample=0"):
        with pytest.raises(SystemExit, match="--knobs: expected METHOD=INTEGER"):
            compare.main([*opts, "--knobs", bad, *tiny(data_dir)])


def test_a_given_knob_is_tested_as_it_is(data_dir, tmp_path):  # noqa: F811
    out = tmp_path / "given"
    code = compare.main(["--cfg", "", "--checkpoint", str(data_dir / "tiny.pyth"), "--methods", "tome",
                         "--method-checkpoint", f"tome={data_dir / 'tiny.pyth'}", "--knobs", "tome=3",
                         "--repeats", "1", "--out", str(out), *tiny(data_dir)])  # fmt: skip
    assert code == 0
    rows = json.loads((out / "compare.json").read_text())
    assert [(r["method"], r["setting"], r["target_gflops"]) for r in rows] == [
        ("no reduction", "-", None), ("ToMe", "r=3", None)
    ]
    assert rows[1]["kept_tokens"] == {"2": 4.0 * 13, "3": 4.0 * 10}
