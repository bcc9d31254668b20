"""The checkpoints of an experiment's stacks: DIR/checkpoints/<first run id>.pt (engine/checkpoint.py's format).

Which stack a checkpoint belongs to is read from its header alone; the process that trains the stack reads the
whole file once, when it resumes it. A checkpoint another plan left (another --stack-size or device) is resumed as
the stack it was saved from. One that cannot be read, or that is not of exactly these runs (their resolved configs,
the groklab version: its fingerprint) or is past their budget, is removed with a warning, and its runs start again.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from groklab.config import RunConfig, Runs
from groklab.engine.checkpoint import Checkpoint, DamagedCheckpoint, Header, fingerprint, load, read_header, save
from groklab.store.layout import CHECKPOINT_DIR, directory


class Checkpoints:
    """DIR/checkpoints/: one file per unfinished stack, named after its first run."""

    def __init__(self, root: Path) -> None:
        self.root, self.directory = root, root / CHECKPOINT_DIR

    def path(self, runs: Runs) -> Path:
        return self.directory / f"{runs[0][0]}.pt"

    def save(self, runs: Runs, checkpoint: Checkpoint) -> None:
        """Save the checkpoint of a stack that started as `runs` (one file for its whole life, though runs leave)."""
        directory(self.root, CHECKPOINT_DIR)  # (never through a link)
        save(self.path(runs), checkpoint)

    def remove(self, runs: Runs) -> None:
        """The stack is done: every run is on disk."""
        self.path(runs).unlink(missing_ok=True)

    def left_by_other_plans(self, configs: dict[str, RunConfig], finished: set[str], planned: set[str]) -> list[Runs]:
        """Stacks whose checkpoints another plan left (their names are not the first run of a planned stack:
        `planned`), to resume as they were saved. One whose runs are all finished (killed between the last write
        and its removal) or not all in this experiment is removed."""
        stacks = []
        for path in sorted(self.directory.glob("*.pt")):
            if path.stem in planned or (header := self._header(path, configs)) is None:
                continue
            if all(run_id in finished for run_id in header.ids):
                path.unlink(missing_ok=True)
                continue
            os.replace(path, path.with_name(f"{header.ids[0]}.pt"))  # named after its first run, as it resumes
            stacks.append([(run_id, configs[run_id]) for run_id in header.ids])
        return stacks

    def resume(self, runs: Runs, finished: set[str]) -> tuple[Runs, Checkpoint | None]:
        """The runs of a leased stack to train now, and the checkpoint they resume from (read here, once): the
        checkpoint's runs as they were saved, else the whole stack from step 0, finished runs included (they are
        not written again): a stack of other runs would round differently in float32 than the uninterrupted one,
        and they finished before the stack's first checkpoint, so little is trained twice. A checkpoint of
        finished runs, or of runs outside the stack, is removed; a damaged one too, with a warning."""
        path, configs = self.path(runs), dict(runs)
        if path.is_file() and (header := self._header(path, configs)) is not None:
            if not all(run_id in finished for run_id in header.ids):
                try:
                    checkpoint = load(path)
                except DamagedCheckpoint as error:
                    self._discard(path, error)
                else:
                    os.replace(path, path.with_name(f"{header.ids[0]}.pt"))  # named after its first run, as it resumes
                    return [(run_id, configs[run_id]) for run_id in header.ids], checkpoint
            path.unlink(missing_ok=True)
        return list(runs), None

    def _header(self, path: Path, configs: dict[str, RunConfig]) -> Header | None:
        """The header of a checkpoint of exactly these runs, or None: the file is removed, with a warning when it is
        damaged, of other settings or past the runs' budget (a checkpoint of runs outside `configs` silently: it is
        another stack's, and its runs are in this experiment no longer)."""
        try:
            header = read_header(path)
        except DamagedCheckpoint as error:  # cut short or not ours: never resume from it
            self._discard(path, error)
            return None
        if any(run_id not in configs for run_id in header.ids):
            path.unlink(missing_ok=True)
            return None
        runs = [(run_id, configs[run_id]) for run_id in header.ids]
        if header.fingerprint != fingerprint(runs):
            self._discard(path, DamagedCheckpoint(f"{path}: saved from runs with other settings or by another "
                                                  "groklab version"))  # fmt: skip
            return None
        if header.step > max(config.train.steps for _, config in runs):
            self._discard(path, DamagedCheckpoint(f"{path}: at step {header.step}, past its runs' budget"))
            return None
        return header

    @staticmethod
    def _discard(path: Path, error: DamagedCheckpoint) -> None:
        if path.is_file():  # (not removed meanwhile by the process that finished its stack)
            warnings.warn(f"{error}; its runs start again from step 0", stacklevel=3)
            path.unlink(missing_ok=True)
