"""W&B for ``logger=wandb``: config at start, Trainer curves during training, final metrics at the end.

We open the run ourselves (the Trainer's W&B callback then logs into it) so that ``finish`` always runs, also on
errors, with the exit code of the run. A run W&B refuses to start (``WANDB_MODE=online`` without a login, a
malformed key) is a one-line ``BoraError`` before training.
"""

from __future__ import annotations

import os
from typing import Any

from bora.errors import BoraError


class WandbRun:
    def __init__(self, cfg, config: dict[str, Any], name: str, run_id: str, run_dir: str):
        import wandb
        from wandb.errors import AuthenticationError, UsageError

        self._wandb = wandb
        lg = cfg.logger
        try:
            self.run = wandb.init(
                project=lg.project,
                entity=lg.entity,
                mode=lg.mode,
                group=lg.group,
                tags=list(lg.tags) + [cfg.model.name, cfg.method.name, cfg.task.name],
                name=name,
                id=run_id,
                resume="allow",  # a resumed (killed and rerun) run continues the same curves
                config=config,
                dir=run_dir,
            )
        except (UsageError, AuthenticationError) as error:
            raise BoraError(_start_error(str(lg.mode), error, isinstance(error, AuthenticationError))) from None

    def log_final(self, summary: dict[str, float]) -> None:
        """Final metrics into the run's summary, once each (logging them as well would store every key twice)."""
        self.run.summary.update(summary)

    def finish(self, ok: bool) -> None:
        self._wandb.finish(exit_code=0 if ok else 1)


def _start_error(mode: str, error: Exception, rejected: bool) -> str:
    """``wandb.init``'s refusal (no login, a malformed key, a bad setting) as one line naming the setting and the
    fixes. ``rejected``: credentials were found but are malformed."""
    key = "WANDB_MODE" if os.environ.get("WANDB_MODE") == mode else "logger.mode"  # logger.mode: ${WANDB_MODE}
    where = f"{key}={mode}"
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    fixes = (
        f"run `wandb login` or set WANDB_API_KEY, or log offline with {key}=offline (upload later with "
        "`wandb sync`), or not at all with logger=none"
    )
    if rejected:
        return f"logger=wandb with {where}: W&B rejected the credentials it found ({first}); {fixes}"
    if "api key" in first.lower():
        return f"logger=wandb with {where}: no W&B login found (no WANDB_API_KEY, no `wandb login`); {fixes}"
    return f"logger=wandb with {where}: W&B refused to start the run ({first}); {fixes}"
