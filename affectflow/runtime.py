"""TensorFlow started once per process, without the start-up lines a CPU machine's user mistakes for failure.

On a machine without a GPU, TensorFlow's C++ runtime writes straight to the process's stderr:
``Could not find cuda drivers``, ``failed call to cuInit: ... UNKNOWN ERROR (303)``, a oneDNN notice.
None is a problem (training runs on the CPU), and ``TF_CPP_MIN_LOG_LEVEL`` cannot hide the ones written
before its logging starts. ``gpus()`` imports TensorFlow and looks for GPUs with file descriptor 2
captured, then passes on every captured line that is not one of these notices.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile

# Start-up notices of TensorFlow's CPU/GPU probing; anything else it prints is passed on.
NOTICES = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
           "Could not find cuda drivers", "failed call to cuInit", "Unable to register cu", "TF-TRT Warning",
           "computation placer already registered", "This TensorFlow binary is optimized to use available CPU")


def _is_notice(line: str) -> bool:
    return any(notice in line for notice in NOTICES)


@functools.cache
def gpus() -> tuple[str, ...]:
    """The GPUs TensorFlow sees (names; empty on a CPU machine), imported quietly on the first call."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            found = tuple(device.name for device in tf.config.list_physical_devices("GPU"))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        kept = [line for line in captured.read().decode(errors="replace").splitlines() if not _is_notice(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr, flush=True)
    return found
