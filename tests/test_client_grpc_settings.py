"""The client's grpc settings: the EventEngine client endpoints are off in a process whose first
grpc user is the client (one thread hop less per call), and a user's own choice always wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SHOW = "import os; {first}import jupyter_deploy.client; print(os.environ.get('GRPC_EXPERIMENTS'))"


def _experiments(first: str = "", **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"} | env
    out = subprocess.run([sys.executable, "-c", SHOW.format(first=first)], capture_output=True, text=True,
                         env=environ, timeout=120, check=True)
    return out.stdout.strip()


def test_the_client_turns_grpcs_event_engine_client_off():
    assert _experiments() == "-event_engine_client"


@pytest.mark.parametrize("mine", ["", "event_engine_client"])
def test_a_users_grpc_experiments_win(mine):
    assert _experiments(GRPC_EXPERIMENTS=mine) == mine


def test_a_process_that_loaded_grpc_first_keeps_its_settings():
    # grpc read its settings already: changing the variable now would only mislead the children.
    assert _experiments(first="import grpc; ") == "None"
