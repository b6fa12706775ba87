"""README.md says what CI runs, and its quick start runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def code_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_commands():
    test_command = next(b.strip() for b in code_blocks("bash") if "pytest" in b)
    minimum_lane = next(b.strip() for b in code_blocks("bash") if "minimum_versions" in b)
    ci_commands = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_commands == [test_command, minimum_lane]


def test_quick_start_runs(capsys):
    quick_start = code_blocks("python")[0]
    exec(compile(quick_start, "README quick start", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in printed] == [str(i) for i in range(3, 12)]
