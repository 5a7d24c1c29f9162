"""The human-readable report ``gpu_check.md``: the run's header, then one block per section."""
from __future__ import annotations


def markdown(report: dict) -> str:
    """Header (device, versions, wall time), then per section its status, setting, tables and figures."""
    lines = ["# GPU check", "", f"- device: **{report['device']}**", f"- torch {report['torch']}, CUDA "
             f"{report['cuda']}, cuDNN {report['cudnn']}, Python {report['python']}, {report['host_cpus']} host CPUs",
             f"- started {report['started']}; wall {report.get('wall_seconds', 0)} s; tiny: {report['tiny']}"]
    if "gpu_memory_gib" in report:
        lines.append(f"- {report['gpu_memory_gib']} GiB, {report['multiprocessors']} multiprocessors")
    lines.append("")
    for sec in report["sections"].values():
        lines += [f"## {sec['title']}", "", f"status: **{sec['status']}** ({sec.get('seconds', 0)} s, cap "
                  f"{sec['cap_s']} s)", ""]
        if sec.get("setting"):
            lines += [f"setting: {sec['setting']}", ""]
        for name, table in sec.get("tables", {}).items():
            lines += table_lines(name, table)
        lines += [f"- {k}: {v}" for k, v in sec.get("figures", {}).items()]
        lines.append("")
    return "\n".join(lines)


def table_lines(name: str, table: dict) -> list[str]:
    """A markdown table of ``row -> {column: value}`` (or ``row -> value``), columns sorted; none when empty."""
    if not table:
        return []
    rows = [(row, values if isinstance(values, dict) else {"value": values}) for row, values in table.items()]
    cols = sorted({c for _, values in rows for c in values})
    lines = [f"**{name}**", "", "| | " + " | ".join(cell(c) for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row, values in rows:
        lines.append("| " + " | ".join(cell(v) for v in [row, *(values.get(c, "") for c in cols)]) + " |")
    return lines + [""]


def cell(value: object) -> str:
    """A table cell: ``|`` escaped, so that a status quoting a log line keeps the table's columns."""
    return str(value).replace("|", "\\|")
