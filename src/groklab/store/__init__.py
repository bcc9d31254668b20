"""The run store: one directory per experiment (layout.py), one sub-directory per run.

Reading (reader.py: ExperimentResult, load) needs neither torch nor the engine until weights are asked for, so a
table or a query of stored experiments answers at once; writing is writer.py (ExperimentStore).
"""

from groklab.store.reader import ExperimentResult, load

__all__ = ["ExperimentResult", "load"]
