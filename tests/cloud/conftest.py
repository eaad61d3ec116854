"""A GCS emulator for the session: `gs://` without a cloud (REFERENCE.md section 5).

The `gcs` fixture starts tests/cloud/emulator.py (gcp-storage-emulator, in memory) on a free
loopback port, makes the bucket `bucket`, and stops the emulator at the end of the session. Its
`env` runs `coclabel` in a subprocess against the emulator exactly as a user would: anonymous
credentials through fsspec's `FSSPEC_GCS_*` variables, never on the command line. The tests skip,
saying why, only when the emulator cannot start.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUCKET = "bucket"
START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Gcs:
    """The running emulator: `env` for subprocesses, `fs` (gcsfs) for setting up and checking."""

    endpoint: str
    env: dict
    fs: object

    def coclabel(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run `coclabel ARGS` against the emulator; the completed process (text output)."""
        return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(endpoint: str, proc: subprocess.Popen, log: Path) -> str | None:
    """None once the emulator answers its health check, else why it did not."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            return f"it exited with code {proc.returncode}: {last}"
        try:
            with urllib.request.urlopen(endpoint + "/", timeout=1):
                return None
        except OSError:
            time.sleep(0.1)
    return f"no answer on {endpoint} within {START_TIMEOUT_S:.0f} s"


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
    endpoint = f"http://127.0.0.1:{free_port()}"
    emulator_env = {
        "STORAGE_EMULATOR_HOST": endpoint,
        # otherwise recent gcsfs first tries gRPC bucket detection and stalls for 60 s
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "FSSPEC_GCS_TOKEN": "anon",
        "FSSPEC_GCS_PROJECT": "test",
    }
    command = [sys.executable, "-m", "tests.cloud.emulator", "start", "--host", "127.0.0.1",
               "--port", endpoint.rsplit(":", 1)[1], "--in-memory", "--quiet"]
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    except OSError as e:
        pytest.skip(f"the GCS emulator cannot start: {e}")
    why = wait_until_up(endpoint, proc, log)
    if why is not None:
        proc.kill()
        proc.wait()
        pytest.skip(f"the GCS emulator (gcp-storage-emulator, a dev extra) cannot start: {why}")
    env = {**os.environ, **emulator_env}
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in emulator_env.items():
                mp.setenv(key, value)
            from gcsfs.core import GCSFileSystem  # the core class: no gRPC bucket-type probe

            fs = GCSFileSystem(token="anon", project="test", skip_instance_cache=True)
            fs.mkdir(BUCKET)
            yield Gcs(endpoint, env, fs)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
