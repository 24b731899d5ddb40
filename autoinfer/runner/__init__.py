"""One job's life, wherever it runs: stage in → run → stage out, with its log and status.

- `life`: `Runner`, the state walk of one attempt (waiting_download → running → uploading →
  finished, or failed/stopped/handed back) and how each failure becomes one line of reason;
- `staging`: input and model fetched into the attempt's scratch folder, output uploaded;
- `commands`: worker commands as sandboxed process groups, their output into the log;
- `log`: `JobLog`, the buffered, batched job log;
- `context`: `RunnerContext` and the seams a runner calls through (`JobReporter`,
  `Predictors`), `Cancellation`.
"""

from __future__ import annotations

from autoinfer.runner.commands import KILL_GRACE_S, kill_process_group
from autoinfer.runner.context import (
    GIB,
    Cancellation,
    JobReporter,
    LogLine,
    Predictors,
    RunnerContext,
    runs_in_predictor_pool,
)
from autoinfer.runner.life import PROGRESS_EVERY_S, Runner
from autoinfer.runner.log import LOG_FLUSH_S, JobLog
from autoinfer.runner.staging import count_files, tree_size
from autoinfer.text import one_line

__all__ = [
    "GIB",
    "KILL_GRACE_S",
    "LOG_FLUSH_S",
    "PROGRESS_EVERY_S",
    "Cancellation",
    "JobLog",
    "JobReporter",
    "LogLine",
    "Predictors",
    "Runner",
    "RunnerContext",
    "count_files",
    "kill_process_group",
    "one_line",
    "runs_in_predictor_pool",
    "tree_size",
]
