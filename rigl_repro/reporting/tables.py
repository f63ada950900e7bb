"""The report's Tables 1-5 rebuilt from runs: mean +/- std over seeds, FLOP columns, the best accuracy of
each group in bold, the report's value and our difference side by side, and missing runs shown as missing
cells with their seed count, never dropped or invented. Written as Markdown, LaTeX and CSV.

A table whose experiments train another dataset or model than the report's (``scale=smoke``: small_cnn on
digits) says so in its title and leaves the report's values and our differences out: they would compare
different experiments. Runs of the report's dataset and model give the report's comparison as before."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from rigl_repro.reporting import published
from rigl_repro.reporting.runs import Cell, Provenance, RunIndex, Setting, provenance
from rigl_repro.results import atomic_file


@dataclass(frozen=True)
class Column:
    """One dataset's column block: the experiment that runs it, and the dataset and model the report ran."""

    label: str
    experiment: str
    dataset: str  # as in published.csv and conf/dataset
    model: str  # as in conf/model

    @property
    def design(self) -> Setting:
        return Setting(self.dataset, self.model)


@dataclass(frozen=True)
class TableSpec:
    number: str
    title: str
    columns: tuple[Column, ...]
    groups: tuple[tuple[str, ...], ...]  # variants, grouped as the report groups them (best is bold per group)
    densities: tuple[float, ...]
    flops: bool = True
    dense_row: bool = True
    published: bool = True  # the report has this table: show its value and our difference
    heading: str = ""  # how a title names the table (default "Table <number>")
    subject: str = ""  # what it shows besides its dataset and model, for the title of runs of another setting

    @property
    def name(self) -> str:
        return self.heading or f"Table {self.number}"


TABLES = {
    "table1": TableSpec(
        "1", "Test accuracy on CIFAR-10 with all 50k training images (no validation set)",
        (Column("CIFAR-10", "table1", "cifar10", "wrn22_2"),),
        (("static_erk", "pruning", "rigl_erk"),), (0.1, 0.2, 0.5), flops=False,
        subject="test accuracy with all training images (no validation set)",
    ),
    "table2": TableSpec(
        "2", "WRN-22-2 on CIFAR-10", (Column("CIFAR-10", "table2", "cifar10", "wrn22_2"),),
        (("small_dense", "static", "set", "rigl"), ("set_erk", "rigl_erk"),
         ("static_2x", "lottery", "set_2x", "snfs", "snfs_erk", "snfs_2x", "rigl_2x", "pruning", "rigl_erk_2x")),
        (0.1, 0.2),
    ),
    "table3": TableSpec(
        "3", "ResNet-50 on CIFAR-100", (Column("CIFAR-100", "table3", "cifar100", "resnet50"),),
        (("static", "small_dense", "set", "rigl"), ("static_erk", "set_erk", "rigl_erk"),
         ("snfs", "snfs_erk", "pruning", "rigl_2x", "lottery", "rigl_3x", "rigl_erk_2x")),
        (0.1, 0.2),
    ),
    "table5": TableSpec(
        "5", "Effect of redistribution during RigL updates",
        (Column("CIFAR-10", "table5_cifar10", "cifar10", "wrn22_2"),
         Column("CIFAR-100", "table5_cifar100", "cifar100", "resnet50")),
        (("rigl", "rigl_sg", "rigl_sm"), ("rigl_erk", "rigl_sg_erk", "rigl_sm_erk"),
         ("rigl_reinit", "rigl_reinit_erk")),
        (0.1, 0.2), dense_row=False, subject="effect of redistribution during RigL updates",
    ),
    "fmnist": TableSpec(
        "FM", "LeNet-5 on Fashion-MNIST (beyond the report)",
        (Column("Fashion-MNIST", "fmnist", "fashion_mnist", "lenet5"),),
        (("small_dense", "static", "set", "snfs", "rigl"), ("static_erk", "set_erk", "snfs_erk", "rigl_erk")),
        (0.05, 0.1, 0.2), published=False, heading="The Fashion-MNIST table (beyond the report)",
    ),
}  # fmt: skip


# Row names for variants the report does not name (tables beyond it), in the report's style.
VARIANT_NAMES = {
    "dense": "Dense Baseline", "small_dense": "Small Dense", "static": "Static", "set": "SET", "snfs": "SNFS",
    "rigl": "RigL", "static_erk": "Static (ERK)", "set_erk": "SET (ERK)", "snfs_erk": "SNFS (ERK)",
    "rigl_erk": "RigL (ERK)",
}  # fmt: skip


# The last line of a report table built from runs of another dataset or model than the report's.
STAND_IN_NOTE = "No report column: these runs are not of the report's dataset and model, so its numbers do not compare."


def report_rows(table: str) -> dict[tuple[str, str, float], dict[str, str]]:
    """The report's rows of a table by (dataset, variant, density)."""
    return {
        (row["dataset"], row["variant"], float(row["density"])): row for row in published() if row["table"] == table
    }


def fmt(mean: float, std: float, digits: int = 1) -> str:
    if math.isnan(mean):
        return ""
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def table_provenance(index: RunIndex, spec: TableSpec) -> Provenance:
    """What the table's experiments train at the index's scale, against the report's dataset and model of
    each column (the design's, for a table beyond the report)."""
    designs = [(column.experiment, column.design) for column in spec.columns]
    return provenance(index, designs, published=spec.published)


def compares(spec: TableSpec, origin: Provenance | None) -> bool:
    """Whether the table shows the report's values and our differences: a table of the report's, built from
    runs of the report's datasets and models (``origin`` None: taken to be)."""
    return spec.published and (origin is None or origin.faithful)


def column_labels(spec: TableSpec, origin: Provenance | None) -> list[str]:
    """The label of each column block: the report's dataset, or for runs of another setting what ran and whose
    column it stands for (``digits for CIFAR-10``)."""
    if origin is None or origin.faithful:
        return [column.label for column in spec.columns]
    return [f"{ran.dataset} for {column.label}" for ran, column in zip(origin.ran, spec.columns)]


def build_table(index: RunIndex, spec: TableSpec, origin: Provenance | None = None) -> pd.DataFrame:
    """One row per (group, variant, column, density) with our statistics and the report's values (Tables 1,
    2, 3 and 5 of the report, and the Fashion-MNIST table beyond it). ``origin`` (default: the index's, see
    ``table_provenance``) decides the column labels and whether the report's values are filled in: runs of
    another dataset or model keep the report's row names and leave its numbers and our differences empty."""
    origin = origin or table_provenance(index, spec)
    published_rows = report_rows(spec.number)
    labels = column_labels(spec, origin)
    rows = []
    groups = list(spec.groups) + ([("dense",)] if spec.dense_row else [])
    for group_index, group in enumerate(groups):
        for variant in group:
            for column, label in zip(spec.columns, labels):
                densities = (1.0,) if variant == "dense" else spec.densities
                for density in densities:
                    cell = index.cell(column.experiment, [f"variant={variant}", f"masking.density={density}"])
                    report = published_rows.get((column.dataset, variant, density), {})
                    if not compares(spec, origin):
                        report = {"row": report["row"]} if "row" in report else {}
                    shown = replace(column, label=label)
                    rows.append(row_of(spec, group_index, variant, shown, density, cell, report))
    return pd.DataFrame(rows)


def row_of(
    spec: TableSpec, group: int, variant: str, column: Column, density: float, cell: Cell, report: dict
) -> dict:
    acc, std = cell.mean("test_acc"), cell.std("test_acc")
    report_acc = float(report["accuracy"]) if report.get("accuracy") else math.nan
    return {
        "table": spec.number,
        "group": group,
        "row": report.get("row") or VARIANT_NAMES.get(variant, variant),
        "variant": variant,
        "dataset": column.label,
        "density": density,
        "seeds": cell.seeds,
        "expected_seeds": cell.expected,
        "acc_mean": acc,
        "acc_std": std,
        "train_flops": cell.mean("train_relative") if cell.seeds else math.nan,
        "test_flops": cell.mean("inference_relative") if cell.seeds else math.nan,
        "report_acc": report_acc,
        "report_std": float(report["std"]) if report.get("std") else math.nan,
        "report_train_flops": report.get("train_flops", ""),
        "report_test_flops": report.get("test_flops", ""),
        "report_reference_acc": float(report["reference_accuracy"]) if report.get("reference_accuracy") else math.nan,
        "acc_diff": acc - report_acc,
    }


def best_in_group(frame: pd.DataFrame) -> pd.Series:
    """True where a row has the highest mean accuracy of its group, column and density."""
    keys = ["group", "dataset", "density"]
    best = frame.groupby(keys)["acc_mean"].transform("max")
    return frame["acc_mean"].notna() & (frame["acc_mean"] == best) & (frame["variant"] != "dense")


def cell_text(row: pd.Series, bold: bool, latex: bool) -> tuple[str, str, str]:
    """Our accuracy, our FLOPs and the report's accuracy (with the difference) as display strings."""
    seeds = f" ({row.seeds}/{row.expected_seeds} seeds)" if row.seeds < row.expected_seeds else ""
    ours = fmt(row.acc_mean, row.acc_std)
    if latex:
        ours = ours.replace("±", r"$\pm$")
    if ours and bold:
        ours = rf"\textbf{{{ours}}}" if latex else f"**{ours}**"
    ours = (ours or "–") + seeds
    flops = "" if math.isnan(row.train_flops) else f"{row.train_flops:.2f}x, {row.test_flops:.2f}x"
    if row.variant == "dense" and not math.isnan(row.train_flops):
        flops = "1.00x, 1.00x"
    report = fmt(row.report_acc, row.report_std)
    if report and not math.isnan(row.acc_diff):
        report += f" ({row.acc_diff:+.1f})"
    if latex:
        report = report.replace("±", r"$\pm$")
    return ours, flops, report


def render(frame: pd.DataFrame, spec: TableSpec, latex: bool, origin: Provenance | None = None) -> str:
    """The table as Markdown or LaTeX: a row per variant, a column block per (dataset, density). Built from
    runs of another dataset or model than the report's (``origin``, as ``build_table`` took it), its title
    says what ran and it has no report column."""
    bold = best_in_group(frame)
    compare = compares(spec, origin)
    blocks = [(label, density) for label in column_labels(spec, origin) for density in spec.densities]
    header = ["Method"]
    for label, density in blocks:
        prefix = f"{label} " if len(spec.columns) > 1 else ""
        header += [f"{prefix}1-s={density}: ours"]
        header += [f"{prefix}1-s={density}: FLOPs (train, test)"] if spec.flops else []
        header += [f"{prefix}1-s={density}: report (ours - report)"] if compare else []
    lines = []
    for (group, _variant), rows in frame.groupby(["group", "variant"], sort=False):
        cells = [str(rows.iloc[0]["row"])]
        for label, density in blocks:
            match = rows[(rows["dataset"] == label) & ((rows["density"] == density) | (rows["variant"] == "dense"))]
            if match.empty:
                cells += [""] + ([""] if spec.flops else []) + ([""] if compare else [])
                continue
            row = match.iloc[0]
            ours, flops, report = cell_text(row, bool(bold[row.name]), latex)
            if row.variant == "dense" and density != spec.densities[0]:
                ours, flops, report = "", "", ""
            cells += [ours] + ([flops] if spec.flops else []) + ([report] if compare else [])
        lines.append((group, cells))
    faithful_caption = f"Table {spec.number}: {spec.title}" if spec.published else spec.title
    caption = origin.title(faithful_caption, spec.name, spec.subject) if origin else faithful_caption
    if latex:
        body = [" & ".join(header) + r" \\ \hline"]
        previous = None
        for group, cells in lines:
            if previous is not None and group != previous:
                body.append(r"\hline")
            body.append(" & ".join(cells) + r" \\")
            previous = group
        spec_cols = "l" + "c" * (len(header) - 1)
        title = [] if caption == faithful_caption else [f"% {caption}"]  # a stand-in says so in the file too
        return "\n".join([*title, rf"\begin{{tabular}}{{{spec_cols}}}", *body, r"\end{tabular}", ""])
    out = [caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for _, cells in lines]
    out += ["", "Test accuracy (%), mean ± sample std over seeds; FLOPs relative to the dense 1x run; "
            "best of each group in bold; missing runs show their seed count."]  # fmt: skip
    if spec.published and not compare:
        out += [STAND_IN_NOTE]
    return "\n".join(out) + "\n"



# Table 4's experiments (the reference runs and the Optuna studies) and the report's dataset and model.
TABLE4_DESIGN = (("table4_reference", Setting("cifar10", "wrn22_2")), ("sweep_alpha_dt", Setting("cifar10", "wrn22_2")))
TABLE4_TITLE = "Table 4: reference vs optimal (alpha, delta_t) on CIFAR-10 (Optuna TPE)"


def build_table4(index: RunIndex, origin: Provenance | None = None) -> pd.DataFrame:
    """Table 4: the reference (alpha, delta_t) = (0.3, 100) against the best trial of each Optuna study, with
    the report's values, left empty for runs of another dataset or model (``origin``, default the index's)."""
    origin = origin or provenance(index, TABLE4_DESIGN)
    published_rows = {(r["row"], r["variant"], float(r["density"])): r for r in published() if r["table"] == "4"}
    if not origin.faithful:
        published_rows = {}
    rows = []
    for variant, init in (("rigl", "Random"), ("rigl_erk", "ERK")):
        for density in (0.1, 0.2, 0.5):
            reference = index.cell("table4_reference", [f"variant={variant}", f"masking.density={density}"])
            dataset = index.compose("sweep_alpha_dt", [f"variant={variant}"]).dataset.name
            trials = index.sweep_trials(dataset, variant, density)
            best = trials.loc[trials["val_acc"].idxmax()] if not trials.empty else None
            report_ref = published_rows.get((f"{init} reference", variant, density))
            report_opt = published_rows.get((f"{init} optimal", variant, density))
            rows.append(
                {
                    "initialization": init,
                    "density": density,
                    "reference_acc": reference.mean("test_acc"),
                    "reference_std": reference.std("test_acc"),
                    "reference_seeds": f"{reference.seeds}/{reference.expected}",
                    "trials": len(trials),
                    "optimal_alpha": math.nan if best is None else best["alpha"],
                    "optimal_delta_t": math.nan if best is None else best["delta_t"],
                    "optimal_acc": math.nan if best is None else best["test_acc"],
                    "optimal_std": math.nan if best is None else best["test_std"],
                    "report_reference_acc": float(report_ref["accuracy"]) if report_ref else math.nan,
                    "report_reference_std": float(report_ref["std"]) if report_ref else math.nan,
                    "report_optimal": f"{report_opt['alpha']}, {report_opt['delta_t']}" if report_opt else "",
                    "report_optimal_acc": float(report_opt["accuracy"]) if report_opt else math.nan,
                    "report_optimal_std": float(report_opt["std"]) if report_opt else math.nan,
                }
            )
    return pd.DataFrame(rows)


def render_table4(frame: pd.DataFrame, latex: bool, origin: Provenance | None = None) -> str:
    """Table 4 as Markdown or LaTeX; built from runs of another dataset or model than the report's
    (``origin``), its title says what ran and it has no report columns."""
    compare = origin is None or origin.faithful
    header = ["Initialization", "Density", "Reference (0.3, 100): ours", "report", "Optimal (alpha, dT): ours",
              "accuracy", "report", "report accuracy"]  # fmt: skip
    reported = (3, 6, 7)  # the report's columns in ``header``
    lines = []
    for row in frame.itertuples():
        optimal = "" if math.isnan(row.optimal_alpha) else f"{row.optimal_alpha:.3f}, {row.optimal_delta_t:.0f}"
        lines.append([
            row.initialization, f"{row.density}",
            (fmt(row.reference_acc, row.reference_std) or "–") + f" ({row.reference_seeds} seeds)",
            fmt(row.report_reference_acc, row.report_reference_std),
            (optimal or "–") + f" ({row.trials} trials)", fmt(row.optimal_acc, row.optimal_std),
            row.report_optimal, fmt(row.report_optimal_acc, row.report_optimal_std),
        ])  # fmt: skip
    if not compare:
        header = [cell for i, cell in enumerate(header) if i not in reported]
        lines = [[cell for i, cell in enumerate(cells) if i not in reported] for cells in lines]
    subject = "reference vs optimal (alpha, delta_t) (Optuna TPE)"
    caption = origin.title(TABLE4_TITLE, "Table 4", subject) if origin else TABLE4_TITLE
    if latex:
        body = [" & ".join(header) + r" \\ \hline"] + [" & ".join(cells) + r" \\" for cells in lines]
        title = [] if compare else [f"% {caption}"]
        columns = "ll" + "c" * (len(header) - 2)
        text = "\n".join([*title, rf"\begin{{tabular}}{{{columns}}}", *body, r"\end{tabular}", ""])
        return text.replace("±", r"$\pm$")
    out = [caption, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in lines]
    if not compare:
        out += ["", STAND_IN_NOTE]
    return "\n".join(out) + "\n"


def write_table(name: str, index: RunIndex, out_dir: Path) -> list[Path]:
    """Build table ``name`` (table1 ... table5, fmnist) and write it as .md, .tex and .csv under ``out_dir``,
    each file whole or not at all (an OutputError if it cannot be written)."""
    if name == "table4":
        origin = provenance(index, TABLE4_DESIGN)
        frame = build_table4(index, origin)
        texts = {"md": render_table4(frame, False, origin), "tex": render_table4(frame, True, origin)}
    else:
        spec = TABLES[name]
        origin = table_provenance(index, spec)
        frame = build_table(index, spec, origin)
        texts = {"md": render(frame, spec, False, origin), "tex": render(frame, spec, True, origin)}
    paths = []
    for suffix, text in texts.items():
        path = out_dir / f"{name}.{suffix}"
        with atomic_file(path) as temporary:
            temporary.write_text(text)
        paths.append(path)
    csv_path = out_dir / f"{name}.csv"
    with atomic_file(csv_path) as temporary:
        frame.to_csv(temporary, index=False)
    return [*paths, csv_path]


TABLE_NAMES: Sequence[str] = ("table1", "table2", "table3", "table4", "table5", "fmnist")
