"""``dyna-stream experiments``: run a suite end to end and write results.md, results.json and plots."""
from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from ..atomic import write_text
from .lab import Lab
from .render import markdown, pareto_figure
from .suite import Suite
from .tables import Combo, ablation_table, combo_models, main_table, robustness_table, sensitivity_table

log = logging.getLogger(__name__)
BEGIN, END = "<!-- experiments:begin -->", "<!-- experiments:end -->"
THREADS = 2   # DESIGN §7: speed is measured at 2 torch threads


def run_suite(suite: Suite, *, runs: str | Path, out: str | Path, data_root: str | Path | None = None,
              publish: str | Path | None = None, command: str = "", progress: bool = False) -> Path:
    """Train what is missing, measure every table; returns the path of ``<out>/results.md``.
    ``publish``: also splice the Markdown into that file between the experiments markers."""
    torch.set_num_threads(THREADS)
    started, clock = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    lab, out = Lab(suite, runs=runs, data_root=data_root, progress=progress), Path(out)
    results = {"suite": suite.name, "started": started.isoformat(timespec="seconds"), "command": command,
               "machine": f"{platform.machine()} {platform.processor() or ''}, {torch.get_num_threads()} threads",
               "torch": torch.__version__, "point": suite.point, "latency_runs": suite.latency_runs,
               "table1": [], "table2": [], "units": {}}
    trained_seconds = 0.0
    for dataset in suite.datasets:
        results["units"][dataset] = lab.series(dataset).units
        for backbone in suite.backbones:
            combo = Combo(dataset, backbone)
            models = combo_models(lab, combo)
            trained_seconds += sum(t.train_seconds for t in (models.dense, models.dyna, models.mp))
            results["table1"].append(main_table(lab, combo, models))
            results["table2"].append(robustness_table(lab, combo, models))
            for study, key, build in ((suite.sensitivity, "table3", sensitivity_table),
                                      (suite.ablation, "table4", ablation_table)):
                if study is not None and (study.dataset, study.backbone) == (dataset, backbone):
                    results[key] = build(lab, combo, models)
    results["train_seconds"] = trained_seconds + sum(
        r["fixed"]["train_seconds"] for r in results.get("table3", {}).get("rows", []))
    results["wall_seconds"] = time.perf_counter() - clock
    figures = {}
    for dataset in suite.datasets:
        name = f"pareto_{dataset}.png"
        pareto_figure(results, dataset, out / name)
        figures[dataset] = name
    text = markdown(results, figures)
    write_text(out / "results.json", json.dumps(results, indent=2))
    write_text(out / "results.md", text)
    if publish is not None:
        splice(Path(publish), text, relative_to=out)
    log.info("suite %s done in %.1f min: %s", suite.name, results["wall_seconds"] / 60, out / "results.md")
    return out / "results.md"


def splice(path: Path, text: str, *, relative_to: Path) -> None:
    """Replace the experiments section of ``path`` (between the markers; appended when absent),
    with image links rewritten relative to ``path``."""
    prefix = Path(os.path.relpath(Path(relative_to).resolve(), path.parent.resolve())).as_posix()
    body = text.replace("](pareto_", f"]({prefix}/pareto_").replace("# Experiments", "## Experiments", 1)
    body = body.replace("\n## ", "\n### ")
    section = f"{BEGIN}\n{body}\n{END}"
    current = path.read_text() if path.is_file() else ""
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        updated = head + section + rest.split(END, 1)[1]
    else:
        updated = current.rstrip("\n") + "\n\n" + section + "\n"
    write_text(path, updated)
