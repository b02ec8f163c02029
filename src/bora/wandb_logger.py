"""W&B for ``logger=wandb``: config at start, Trainer curves during training, final metrics at the end.

We open the run ourselves (the Trainer's W&B callback then logs into it) so that ``finish`` always runs, also on
errors, with the exit code of the run.
"""

from __future__ import annotations

from typing import Any


class WandbRun:
    def __init__(self, cfg, config: dict[str, Any], name: str, run_id: str, run_dir: str):
        import wandb

        self._wandb = wandb
        lg = cfg.logger
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

    def log_final(self, summary: dict[str, float]) -> None:
        """Final metrics into the run's summary, once each (logging them as well would store every key twice)."""
        self.run.summary.update(summary)

    def finish(self, ok: bool) -> None:
        self._wandb.finish(exit_code=0 if ok else 1)
