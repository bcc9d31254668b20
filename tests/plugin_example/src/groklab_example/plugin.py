"""What the package adds to groklab: a measure, a claims check and a figure, through the public decorators."""

from __future__ import annotations

from matplotlib.figure import Figure

import groklab


@groklab.measure(
    "max_logit",
    "the largest logit on the training set, per run",
    "max_{i,c} f(x_i)_c over the training inputs",
    source="tests/plugin_example",
)
def max_logit(probe):  # type: ignore[no-untyped-def]
    return {"max_logit": probe.train_logits.amax(dim=(1, 2))}


@groklab.check("max_logit_below", "median final max_logit < {limit:g}")
def max_logit_below(result, limit: float):  # type: ignore[no-untyped-def]
    """The runs' largest training logit stays below a limit."""
    values = result.last_measured("max_logit")
    if values.empty:
        return "no max_logit measured", None
    median = float(values.median())
    return f"median final max_logit {median:.3g}", median < limit


@groklab.figure(
    "max_logit", "the largest training logit over steps", needs=lambda stored: stored.has("final_train_acc")
)
def max_logit_figure(result):  # type: ignore[no-untyped-def]
    figure = Figure(figsize=(4, 3))
    axes = figure.subplots()
    metrics = result.metrics.dropna(subset=["max_logit"])
    for run_id, frame in metrics.groupby("run_id"):
        axes.plot(frame["step"], frame["max_logit"], label=run_id)
    axes.set_xlabel("step")
    axes.set_ylabel("max logit")
    return figure
