"""Render evaluation results as a Markdown report with bar charts.

The input is the JSON that ``shopfusion evaluate`` writes::

    {"dataset": "s3rec", "protocol": "s3rec-loo", "split": "test", "n_users": 22363, ...,
     "results": {"popularity": {"HR@10": 0.014, "NDCG@10": 0.006, "fit_seconds": 0.1,
                                "ci95": {"NDCG@10": [0.005, 0.007]}, ...}, ...},
     "command": "shopfusion evaluate rec ..."}

Any models and any metric keys are accepted: ``name@k`` keys are metrics at cut-off ``k``,
``*_seconds`` keys are timings, other numbers are shown as they are, ``ci95`` holds optional 95%
intervals. Several result files (say a recommendation and a search benchmark) become one report
with a section and a chart each.

>>> render_report(Path("runs/s3rec.json"), Path("reports/s3rec"))  # doctest: +SKIP
PosixPath('reports/s3rec/report.md')
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shopfusion.errors import DataError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["EvaluationRun", "ModelResult", "load_results", "render_report"]

ResultsSource = Path | Mapping[str, Any]

#: Metric families in the order the tables list them; the first group is charted.
ACCURACY = ("HR", "Hit", "Precision", "Recall", "NDCG", "MRR", "MAP")
BEYOND_ACCURACY = ("coverage", "diversity", "novelty")
CHART_CUTOFF = 10
_METRIC = re.compile(r"^(?P<family>.+)@(?P<k>\d+)$")
_RUN_KEYS = ("dataset", "protocol", "split", "results", "command")


@dataclass(frozen=True)
class ModelResult:
    """One model's numbers from a results file."""

    name: str
    metrics: dict[str, float]  # "NDCG@10" and any other number that is not a timing
    ci95: dict[str, tuple[float, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # "fit_seconds" -> 0.1
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvaluationRun:
    """One results file: what was evaluated, how, and each model's numbers."""

    source: str
    dataset: str
    protocol: str
    split: str
    models: tuple[ModelResult, ...]
    facts: dict[str, Any] = field(default_factory=dict)  # other top-level numbers and strings
    command: str = ""

    @property
    def title(self) -> str:
        return " · ".join(x for x in (self.dataset, self.protocol, self.split) if x) or self.source

    @property
    def metric_keys(self) -> list[str]:
        """Every metric any model reports, in table order: by cut-off, then by family."""
        keys = {k for m in self.models for k in m.metrics}
        return sorted(keys, key=_metric_order)


# --------------------------------------------------------------------------- reading


def load_results(source: ResultsSource, name: str = "") -> EvaluationRun:
    """Read and check one results file (or its already parsed dict); ``name`` labels a dict in errors.

    Raises :class:`DataError` naming the file when it is missing, not JSON, or not shaped like
    the output of ``shopfusion evaluate``.
    """
    if isinstance(source, Path):
        label = str(source)
        data = _read_json(source)
    else:
        label, data = name or "results dict", source
    if not isinstance(data, Mapping) or not isinstance(data.get("results"), Mapping) or not data["results"]:
        raise DataError(
            f"{label}: expected a JSON object whose 'results' maps each model name to its metrics, "
            "as `shopfusion evaluate` writes"
        )
    models = tuple(_model(label, str(model), values) for model, values in data["results"].items())
    facts = {k: v for k, v in data.items() if k not in _RUN_KEYS and _is_scalar(v)}
    return EvaluationRun(
        source=label,
        dataset=str(data.get("dataset", "")),
        protocol=str(data.get("protocol", "")),
        split=str(data.get("split", "")),
        models=models,
        facts=facts,
        command=str(data.get("command", "")),
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{path}: results file not found; pass the JSON that `shopfusion evaluate` wrote"
        ) from None
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "pass the JSON that `shopfusion evaluate` wrote"
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; pass the JSON that `shopfusion evaluate` wrote") from None


def _model(label: str, name: str, values: Any) -> ModelResult:
    if not isinstance(values, Mapping):
        raise DataError(f"{label}: results[{name!r}] must be an object of metric name -> number")
    numbers = {str(k): float(v) for k, v in values.items() if _is_number(v)}
    params = values.get("params", {})
    return ModelResult(
        name=name,
        metrics={k: v for k, v in numbers.items() if not k.endswith("_seconds")},
        ci95=_intervals(label, name, values.get("ci95", {})),
        seconds={k: v for k, v in numbers.items() if k.endswith("_seconds")},
        params=dict(params) if isinstance(params, Mapping) else {},
    )


def _intervals(label: str, model: str, raw: Any) -> dict[str, tuple[float, float]]:
    if not isinstance(raw, Mapping):
        raise DataError(f"{label}: results[{model!r}]['ci95'] must map metric names to [low, high]")
    intervals: dict[str, tuple[float, float]] = {}
    for metric, bounds in raw.items():
        if not (isinstance(bounds, Sequence) and len(bounds) == 2 and all(_is_number(b) for b in bounds)):
            raise DataError(
                f"{label}: results[{model!r}]['ci95'][{metric!r}] must be [low, high], got {bounds!r}"
            )
        intervals[str(metric)] = (float(bounds[0]), float(bounds[1]))
    return intervals


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _split_metric(key: str) -> tuple[str, int | None]:
    match = _METRIC.match(key)
    return (match["family"], int(match["k"])) if match else (key, None)


def _metric_order(key: str) -> tuple[int, int, str]:
    family, k = _split_metric(key)
    known = ACCURACY + BEYOND_ACCURACY
    return (k if k is not None else 1 << 30, known.index(family) if family in known else len(known), key)


# --------------------------------------------------------------------------- Markdown


def render_report(results: ResultsSource | Sequence[ResultsSource], out_dir: Path) -> Path:
    """Write ``report.md`` and one chart per results file into ``out_dir``; return the report's path.

    ``results`` is one results file (a path or its parsed dict) or several; each gets its own
    section. The first chart is ``metrics.png``, later ones ``metrics-2.png``, ``metrics-3.png``...
    """
    sources = [results] if isinstance(results, Path | Mapping) else list(results)
    if not sources:
        raise DataError("no results to report: pass at least one results JSON file")
    runs = [load_results(s, name=f"results #{i}") for i, s in enumerate(sources, start=1)]
    out_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    if len(runs) > 1:
        lines += ["# Evaluation report", "", f"{len(runs)} result files, one section each.", ""]
    for i, run in enumerate(runs, start=1):
        chart = "metrics.png" if i == 1 else f"metrics-{i}.png"
        drawn = _plot(run, out_dir / chart)
        heading = f"{i}. {run.title}" if len(runs) > 1 else f"Evaluation report: {run.title}"
        lines += _section(run, heading, level=2 if len(runs) > 1 else 1, chart=chart if drawn else "")
    path = out_dir / "report.md"
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8", newline="\n")
    return path


def _section(run: EvaluationRun, heading: str, level: int, chart: str) -> list[str]:
    sub = "#" * (level + 1)
    lines = ["#" * level + " " + heading, "", f"- source: `{run.source}`"]
    lines += [f"- {key}: {_fact(value)}" for key, value in run.facts.items()]
    lines.append("")
    if chart:
        lines += [f"![{run.title}: metrics @{_chart_cutoff(run)}]({chart})", ""]
    notes = [
        "Best value of each accuracy metric in bold." if len(run.models) > 1 else "",
        "95% confidence intervals in brackets where the evaluation computed them."
        if any(m.ci95 for m in run.models)
        else "",
    ]
    if any(notes):
        lines += [" ".join(x for x in notes if x), ""]
    by_cutoff: dict[int | None, list[str]] = {}
    for key in run.metric_keys:
        by_cutoff.setdefault(_split_metric(key)[1], []).append(key)
    for k, keys in by_cutoff.items():
        lines += [f"{sub} {'Metrics @' + str(k) if k is not None else 'Other numbers'}", ""]
        lines += _metric_table(run, keys)
    lines += _timing_table(run, sub) + _params_table(run, sub)
    if run.command:
        lines += [f"{sub} Command", "", "```console", run.command, "```", ""]
    return lines


def _metric_table(run: EvaluationRun, keys: Sequence[str]) -> list[str]:
    best = {key: _best(run, key) for key in keys}
    rows = [_row(["model", *keys]), _row(["---", *["---:"] * len(keys)])]
    for m in run.models:
        cells = []
        for key in keys:
            value = m.metrics.get(key)
            text = "–" if value is None or math.isnan(value) else _number(value)
            if value is not None and value == best[key]:
                text = f"**{text}**"
            if key in m.ci95:
                text += " [{}, {}]".format(*(_number(b) for b in m.ci95[key]))
            cells.append(text)
        rows.append(_row([_escape(m.name), *cells]))
    return [*rows, ""]


def _best(run: EvaluationRun, key: str) -> float | None:
    """The best value of an accuracy metric over models (None for other metrics or a single model)."""
    values = [m.metrics[key] for m in run.models if key in m.metrics and not math.isnan(m.metrics[key])]
    return max(values) if _split_metric(key)[0] in ACCURACY and len(values) > 1 else None


def _timing_table(run: EvaluationRun, sub: str) -> list[str]:
    keys = list(dict.fromkeys(k for m in run.models for k in m.seconds))
    if not keys:
        return []
    header = [k.removesuffix("_seconds").replace("_", " ") + " (s)" for k in keys]
    rows = [f"{sub} Timings", "", _row(["model", *header]), _row(["---", *["---:"] * len(keys)])]
    for m in run.models:
        rows.append(
            _row([_escape(m.name), *(f"{m.seconds[k]:.2f}" if k in m.seconds else "–" for k in keys)])
        )
    return [*rows, ""]


def _params_table(run: EvaluationRun, sub: str) -> list[str]:
    if not any(m.params for m in run.models):
        return []
    rows = [f"{sub} Parameters", "", _row(["model", "parameters"]), _row(["---", "---"])]
    for m in run.models:
        text = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in m.params.items())
        rows.append(_row([_escape(m.name), f"`{text}`" if text else "defaults"]))
    return [*rows, ""]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _number(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if abs(value) < 1:
        return f"{value:.4f}"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.3f}"


def _fact(value: Any) -> str:
    return _number(float(value)) if _is_number(value) else _escape(str(value))


# --------------------------------------------------------------------------- chart


def _chart_cutoff(run: EvaluationRun) -> int | None:
    """@10 if any accuracy metric is there, else the smallest cut-off that has one."""
    cutoffs = {k for key in run.metric_keys for family, k in [_split_metric(key)] if family in ACCURACY and k}
    return CHART_CUTOFF if CHART_CUTOFF in cutoffs else min(cutoffs, default=None)


def _plot(run: EvaluationRun, path: Path) -> bool:
    """A grouped bar chart of the accuracy metrics at the chart cut-off; False if there are none."""
    k = _chart_cutoff(run)
    keys = [key for key in run.metric_keys if _split_metric(key) in {(f, k) for f in ACCURACY}]
    if not keys:
        return False
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("charts need matplotlib: pip install 'shopfusion[report]'") from exc

    size = (min(16.0, max(6.5, 1.5 + len(keys) * (0.5 + 0.3 * len(run.models)))), 4.8)
    fig = Figure(figsize=size, dpi=150, layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg whatever pyplot's backend is; no global state is touched
    ax = fig.add_subplot()
    top = _bars(ax, run, keys)
    ax.set_xticks(np.arange(len(keys)), labels=keys)
    ax.set_ylim(0, top * 1.25 or 1.0)
    ax.set_ylabel("score (higher is better)")
    note = ", error bars: 95% CI" if any(m.ci95 for m in run.models) else ""
    ax.set_title(f"{run.title}: metrics @{k}{note}", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    fig.legend(loc="outside lower center", ncols=min(len(run.models), 5), frameon=False)
    fig.savefig(path)
    return True


def _bars(ax: Axes, run: EvaluationRun, keys: Sequence[str]) -> float:
    """One bar per model in each metric's group, CI error bars, value labels; returns the top y."""
    n, top = len(run.models), 0.0
    width = 0.8 / n
    for j, model in enumerate(run.models):
        values = np.array([model.metrics.get(key, np.nan) for key in keys])
        low = np.array([model.ci95.get(key, (v, v))[0] for key, v in zip(keys, values, strict=True)])
        high = np.array([model.ci95.get(key, (v, v))[1] for key, v in zip(keys, values, strict=True)])
        shown = ~np.isnan(values)
        x = np.flatnonzero(shown) + (j - (n - 1) / 2) * width
        err = np.vstack([values - low, high - values])[:, shown].clip(min=0)
        ax.bar(
            x,
            values[shown],
            width * 0.92,
            label=model.name,
            color=_colour(j, n),
            yerr=err if model.ci95 else None,
            capsize=2.5,
            error_kw={"elinewidth": 0.8, "ecolor": "0.3"},
        )
        if len(keys) * n <= 48:  # beyond that the labels would overlap
            for xi, yi, value in zip(x, np.fmax(values, high)[shown], values[shown], strict=True):
                ax.annotate(
                    f"{value:.3g}",
                    (xi, yi),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    rotation=90,
                    fontsize=7,
                )
        top = max(top, float(np.nanmax(np.fmax(values, high), initial=0.0)))
    return top


def _colour(j: int, n: int) -> tuple[float, float, float, float]:
    """tab10 for up to 10 models; beyond, tab20 with its dark shades first so neighbours differ."""
    from matplotlib import colormaps

    if n <= 10:
        return colormaps["tab10"](j)
    return colormaps["tab20"]((2 * j) % 20 + (2 * j) // 20 % 2)
