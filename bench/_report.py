"""The targets and the one table bench/serve.py prints."""

from __future__ import annotations

import statistics
from typing import Any

from _workloads import CONNECTIONS, WORKLOADS

T_FLOOR = 0.40  # tiny and MLP at 32 connections, fraction of the HTTP floor's req/s
T_EMBED = 0.85  # embedding at 32 connections, fraction of raw sentences/s at batch 32
T_TAIL = 4.0  # p99 / p50 at 32 connections
T_MEMORY = 1.3  # server PSS / plain-process PSS
T_COLD = 3.0  # seconds from spawn to the first iris answer


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what it is, what we measured, and whether it holds."""
    rows = []
    server = results["server"]
    for w in WORKLOADS:
        s32 = server[w.key]["32"]
        if w.kind in ("tiny", "mlp"):
            ratio, pairs = vs_floor(results, w.key, "32")
            row = _target(f"{w.key} c=32 req/s vs HTTP floor", ratio, T_FLOOR, "ge")
            row["pairs"] = pairs
            rows.append(row)
        else:
            ratio = s32["rps"] / raw_b32(results, w.key)
            rows.append(_target(f"{w.key} c=32 sentences/s vs raw batch 32", ratio, T_EMBED, "ge"))
        tail = s32["p99_ms"] / s32["p50_ms"]
        rows.append(_target(f"{w.key} c=32 p99/p50", tail, T_TAIL, "lt"))
    mem = results["memory"]
    ratio = mem["server_idle"]["pss_kb"] / mem["plain_loaded"]["pss_kb"]
    rows.append(_target("idle PSS server / plain aimass.load", ratio, T_MEMORY, "lt"))
    cold = results["cold_start_s"]["median"]
    rows.append(_target("cold start iris, spawn to first answer (s)", cold, T_COLD, "lt"))
    return rows


def vs_floor(results: dict[str, Any], key: str, connections: str) -> tuple[float, list[float]]:
    """The server's req/s over the floor's: the median of run-by-run ratios, and those ratios.

    Each server run is divided by the floor run just before it, so both
    figures of a ratio come from the same minute of a machine whose speed drifts.
    """
    floor = results["floor"][key][connections]["runs"]
    server = results["server"][key][connections]["runs"]
    pairs = [s["rps"] / f["rps"] for f, s in zip(floor, server, strict=True)]
    return statistics.median(pairs), pairs


def raw_b32(results: dict[str, Any], key: str) -> float:
    """The raw model's rows/s at batch 32: measured between the server's runs when it was."""
    between = results.get("raw_b32_between_runs", {}).get(key)
    return float(between or results["raw"][key]["rows_per_s_by_batch"]["32"])


def _target(name: str, value: float, target: float, op: str) -> dict[str, Any]:
    ok = value >= target if op == "ge" else value < target
    return {"name": name, "value": value, "target": target, "op": op, "ok": ok}


def report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    raw, floor, server = results["raw"], results["floor"], results["server"]
    n = meta["repeats"]
    lines = [
        f"aimass serving benchmark: {meta['loadgen_note']}",
        f"{meta['duration_s']} s per load run, median of {n} runs for every figure (floor and "
        f"server runs interleaved); server on core {meta['server_core']}, load generator on "
        f"core {meta['load_core']}; uvicorn {meta['uvicorn']}; "
        f"torch threads {raw.get('torch_threads', '-')}",
        f"load average (1 min) at start {meta['loadavg_1m_start_end'][0]:.1f}, at end "
        f"{meta['loadavg_1m_start_end'][1]:.1f} on {meta['cpus']} CPUs"
        + (f"; server env {' '.join(meta['server_env'])}" if meta["server_env"] else ""),
        "",
        "Limits",
        f"  {'workload':11}{'raw 1 row/call':>16}{'p50':>9}{'p99':>9}"
        f"{'best batch rows/s':>20}{'batch 32 rows/s':>17}{'floor c=1':>11}{'floor c=32':>12}",
    ]
    for w in WORKLOADS:
        r = raw[w.key]
        lines.append(
            f"  {w.key:11}{r['one_row']['calls_per_s']:>12.0f}/s  "
            f"{r['one_row']['p50_ms']:>7.2f}ms{r['one_row']['p99_ms']:>7.2f}ms"
            f"{r['best_rows_per_s']:>14.0f} (b{r['best_batch']:<2})"
            f"{r['rows_per_s_by_batch']['32']:>17.0f}"
            f"{floor[w.key]['1']['rps']:>11.0f}{floor[w.key]['32']['rps']:>12.0f}"
        )
    for key, rows_per_s in results.get("raw_b32_between_runs", {}).items():
        lines.append(
            f"  {key}: raw batch 32 timed between the server's runs {rows_per_s:.0f} rows/s "
            "(the embedding target divides by this)"
        )
    lines += [
        "",
        "aimass serve (req/s = rows/s: one row or sentence per request)",
        f"  {'workload':11}{'conn':>5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99/p50':>9}"
        f"{'/floor':>8}{'/raw 1-row':>11}{'/raw best':>10}{'/raw b32':>9}{'err':>5}  target",
    ]
    for w in WORKLOADS:
        r = raw[w.key]
        for c in CONNECTIONS:
            s = server[w.key][str(c)]
            tail = s["p99_ms"] / s["p50_ms"]
            to_floor = vs_floor(results, w.key, str(c))[0]
            vs_b32 = s["rps"] / raw_b32(results, w.key)
            target = ""
            if c == 32:
                tail_ok = "ok" if tail < T_TAIL else "MISS"
                if w.kind == "embedding":
                    ok = "ok" if vs_b32 >= T_EMBED else "MISS"
                    target = f">= {T_EMBED:.0%} of raw b32 {ok}; p99/p50 < {T_TAIL:g} {tail_ok}"
                else:
                    ok = "ok" if to_floor >= T_FLOOR else "MISS"
                    target = f">= {T_FLOOR:.0%} of floor {ok}; p99/p50 < {T_TAIL:g} {tail_ok}"
            lines.append(
                f"  {w.key:11}{c:>5}{s['rps']:>9.0f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}"
                f"{tail:>9.2f}{to_floor:>8.2f}{s['rps'] / r['one_row']['calls_per_s']:>11.2f}"
                f"{s['rps'] / r['best_rows_per_s']:>10.2f}{vs_b32:>9.2f}{s['errors']:>5}  {target}"
            )
    mem = results["memory"]
    mb = {k: v["pss_kb"] / 1024 for k, v in mem.items()}
    rss = {k: v["rss_kb"] / 1024 for k, v in mem.items()}
    cold = results["cold_start_s"]
    lines += [
        "",
        f"Memory (PSS, MiB; RSS in brackets): server idle after loading {mb['server_idle']:.0f} "
        f"[{rss['server_idle']:.0f}], after the load runs {mb['server_after_load']:.0f} "
        f"[{rss['server_after_load']:.0f}]; plain aimass.load {mb['plain_loaded']:.0f} "
        f"[{rss['plain_loaded']:.0f}], after one predict each {mb['plain_after_predict']:.0f} "
        f"[{rss['plain_after_predict']:.0f}]",
        f"Cold start iris (spawn to first 200; median of {len(cold['runs'])}): "
        f"{cold['median']:.2f} s  runs {', '.join(f'{x:.2f}' for x in cold['runs'])}; "
        f"address line printed at {cold['to_address_line_median']:.2f} s (the rest is "
        "start-up and model load)",
        f"Server shutdown after SIGTERM: {_fmt_seconds(results.get('server_shutdown_s'))}",
        "",
        "Targets",
    ]
    for t in results["targets"]:
        op = ">=" if t["op"] == "ge" else "<"
        pairs = t.get("pairs")
        lines.append(
            f"  {'ok  ' if t['ok'] else 'MISS'} {t['name']:48} {t['value']:8.2f}  "
            f"(target {op} {t['target']:g})"
            + ("" if not pairs else f"  run by run {', '.join(f'{p:.2f}' for p in pairs)}")
        )
    return "\n".join(lines)


def _fmt_seconds(value: float | None) -> str:
    return "killed after 30 s" if value is None else f"{value:.2f} s"
