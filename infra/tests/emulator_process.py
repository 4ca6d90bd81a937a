"""A fresh emulator (infra/emulator.py) for a test script, on a free
loopback port, stopped when the script exits (the emulator exits when its
standard input closes)."""
import atexit
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start():
    """The new emulator's port."""
    emulator = subprocess.Popen(
        [sys.executable, str(ROOT / "infra/emulator.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    def stop():
        emulator.stdin.close()
        emulator.wait()

    atexit.register(stop)
    return int(emulator.stdout.readline().split()[1])
