"""How tasks behave when things go wrong: retries for storage, time limits for long work.

Storage (the curated store, the registry, the BentoML store, a server behind them) fails transiently: a busy
database, a full disk being cleaned, a server restarting. Those tasks retry with exponential backoff. A user's
error (an unknown dataset, a bad configuration) fails at once: a second try cannot fix it.
"""

from __future__ import annotations

from prefect.tasks import exponential_backoff

from affectflow.errors import UserError

PREPROCESS_TIMEOUT_S = 6 * 3600  # a CREMA-D-sized corpus takes ~20 min on one core; a stuck decoder must end
TRAINING_TIMEOUT_S = 12 * 3600


def _transient(task, task_run, state) -> bool:
    """Retry unless the failure is a ``UserError``."""
    try:
        state.result()
    except UserError:
        return False
    except Exception:  # noqa: BLE001 - anything else may pass on a second try
        return True
    return False


# retries, then delays of about 5, 10 and 20 s (jittered so that workers retrying together spread out)
STORAGE_RETRIES = {"retries": 3, "retry_delay_seconds": exponential_backoff(backoff_factor=5),
                   "retry_jitter_factor": 0.5, "retry_condition_fn": _transient}
