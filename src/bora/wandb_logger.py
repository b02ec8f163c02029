"""W&B for ``logger=wandb``: config at start, Trainer curves during training, final metrics and the run's record
at the end.

We open the run ourselves (the Trainer's W&B callback then logs into it) so that ``finish`` always runs, also on
errors, with the exit code of the run. A run W&B refuses to start (``WANDB_MODE=online`` without a login, a
malformed key) is a one-line ``BoraError`` before training.

As users of Lightning / HF Trainer expect in the W&B UI: the group is the configuration without its seed (so the
seeds of one cell aggregate; ``logger.group`` overrides it), the job type the experiment (so methods and tables
filter apart), the config our resolved config with HF's own arguments nested under ``hf`` (not 158 flat keys mixed
with ours), and the result.json, with the predictions where a task writes them, an artifact of the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bora.errors import BoraError


def default_group(cfg, config: dict[str, Any]) -> str:
    """``<model>/<task>/<method tag>-<group identity>``: one W&B group per table cell, whatever its seeds."""
    from bora.config.identity import DIR_LENGTH, group_identity
    from bora.config.resolvers import method_tag

    return f"{cfg.model.name}/{cfg.task.name}/{method_tag(cfg.method)}-{group_identity(config)[:DIR_LENGTH]}"


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
                group=lg.group or default_group(cfg, config),
                job_type=cfg.experiment_name,
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

    def log_record(self, work_dir: Path) -> None:
        """The run's result.json and its predictions (where the task writes them) as a ``run-result`` artifact."""
        artifact = self._wandb.Artifact(f"result-{self.run.id}", type="run-result")
        artifact.add_file(str(work_dir / "result.json"))
        predictions = work_dir / "predictions"
        if predictions.is_dir():
            artifact.add_dir(str(predictions), name="predictions")
        self.run.log_artifact(artifact)

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
