"""The README opens with the two commands, and CI runs them verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_readme_opens_with_a_main_and_a_test_command() -> None:
    main, tests = readme_commands()
    assert "run-locally" in main
    assert "pytest" in tests


def test_ci_runs_both_readme_commands_verbatim() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in readme_commands():
        assert command in lines, f".ci/run does not run the README command {command!r}"
