"""The README opens with the two commands, and CI runs the test command verbatim."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())[:2]


def test_readme_opens_with_a_main_and_a_test_command() -> None:
    main, tests = readme_commands()
    assert "jupyter lab" in main and "notebooks/quickstart.ipynb" in main
    assert "pytest" in tests


def test_ci_runs_the_test_command_verbatim_and_the_main_job_headless() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    _, tests = readme_commands()
    assert tests in lines, f".ci/run does not run the README test command {tests!r}"
    assert "pip install . && jupyter-deploy demo" in lines
