"""Reports of a parity run: JSON (everything), JUnit XML (one test case per corpus case) and a
self-contained HTML page (summary, then each mismatch with a side-by-side diff and a curl line)."""

from __future__ import annotations

import difflib
import html
import json
import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from parity.diff import Observation
from parity.runner import CaseResult, RunConfig

STATUSES = ("match", "mismatch", "error", "skipped")


@dataclass(frozen=True, slots=True)
class RouteSummary:
    route: str
    requests: int
    match: int
    mismatch: int
    noise: int
    errors: int
    skipped: int


def summarise(results: Sequence[CaseResult]) -> list[RouteSummary]:
    routes: dict[str, Counter[str]] = {}
    for result in results:
        counts = routes.setdefault(result.case.route, Counter())
        counts[result.status] += 1
        counts["noise"] += bool(result.noise)
    return [
        RouteSummary(
            route,
            sum(c[s] for s in STATUSES),
            c["match"],
            c["mismatch"],
            c["noise"],
            c["error"],
            c["skipped"],
        )
        for route, c in sorted(routes.items())
    ]


def curl_line(result: CaseResult, config: RunConfig) -> str:
    request = result.case.request
    base = config.gateway or config.control or ""
    parts = ["curl", "-i", "-X", request.method, f"{base}{request.target}"]
    if request.content_type:
        parts += ["-H", f"Content-Type: {request.content_type}"]
    body = request.body.decode("utf-8", "replace")[:2000] if request.body else None
    if body is not None:
        parts += ["--data-binary", body]
    line = shlex.join(parts)
    if request.persona.startswith("demo"):
        if config.gateway:
            line += f'  -H "Authorization: Bearer $(token {request.persona})"'
        else:
            # The assertion signs the query and the body too: give the signer exactly what curl sends.
            signer = shlex.join(["python", "-m", "identity", request.method, request.target])
            if body is not None:
                signer += " " + shlex.join(["--data-binary", body])
            signer += f" --user <id of {request.persona}>"
            line += f"  -H @<({signer})"
    return line


def _body_text(observation: Observation | None) -> list[str]:
    if observation is None:
        return []
    try:
        return json.dumps(json.loads(observation.body), indent=2, ensure_ascii=False).splitlines()
    except ValueError:
        return observation.body.decode("utf-8", "replace").splitlines()


def _observation_json(observation: Observation | None) -> dict[str, Any] | None:
    if observation is None:
        return None
    return {
        "status": observation.status,
        "headers": dict(observation.headers),
        "body": observation.body.decode("utf-8", "replace"),
    }


def write_json(path: Path, results: Sequence[CaseResult], config: RunConfig) -> None:
    document = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "routes": [vars_of(summary) for summary in summarise(results)],
        "cases": [
            {
                "id": r.case.id,
                "route": r.case.route,
                "method": r.case.request.method,
                "target": r.case.request.target,
                "persona": r.case.request.persona,
                "status": r.status,
                "error": r.error,
                "differences": [
                    {"where": d.where, "control": d.control, "candidate": d.candidate} for d in r.differences
                ],
                "noise": [d.where for d in r.noise],
                "ignored": [{"where": d.where, "reason": reason} for d, reason in r.ignored],
                "control": _observation_json(r.control) if r.status == "mismatch" else None,
                "candidate": _observation_json(r.candidate) if r.status == "mismatch" else None,
                "curl": curl_line(r, config),
                "seconds": round(r.seconds, 4),
            }
            for r in results
        ],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")


def vars_of(summary: RouteSummary) -> dict[str, Any]:
    return {name: getattr(summary, name) for name in RouteSummary.__slots__}


def write_junit(path: Path, results: Sequence[CaseResult]) -> None:
    counts = Counter(r.status for r in results)
    suite = ET.Element(
        "testsuite",
        name="parity",
        tests=str(len(results)),
        failures=str(counts["mismatch"]),
        errors=str(counts["error"]),
        skipped=str(counts["skipped"]),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    for result in results:
        case = ET.SubElement(
            suite, "testcase", classname=result.case.route, name=result.case.id, time=f"{result.seconds:.4f}"
        )
        if result.status == "mismatch":
            failure = ET.SubElement(case, "failure", message=f"{len(result.differences)} difference(s)")
            failure.text = "\n".join(str(d) for d in result.differences)
        elif result.status == "error":
            ET.SubElement(case, "error", message=result.error or "error")
        elif result.status == "skipped":
            ET.SubElement(case, "skipped", message=result.error or "skipped")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1b1f24;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px} .meta{color:#57606a}
table.summary{border-collapse:collapse;margin:12px 0}
.summary th,.summary td{border:1px solid #d0d7de;padding:4px 10px;text-align:right}
.summary th:first-child,.summary td:first-child{text-align:left} .summary thead th{background:#f6f8fa}
.bad{color:#a40e26;font-weight:600} .ok{color:#116329;font-weight:600}
.case{border:1px solid #d0d7de;border-radius:6px;margin:16px 0;padding:12px 16px}
.case h3{margin:0 0 6px;font-size:15px} code,pre{font:12px/1.4 ui-monospace,monospace}
pre.curl{background:#f6f8fa;padding:8px;overflow-x:auto;white-space:pre-wrap}
ul.diffs{margin:6px 0 10px;padding-left:20px} ul.diffs li{margin:2px 0}
table.diff{border-collapse:collapse;width:100%;font:12px/1.35 ui-monospace,monospace}
table.diff td{vertical-align:top;padding:0 6px;white-space:pre-wrap;word-break:break-all}
table.diff .diff_header{color:#57606a;text-align:right} table.diff .diff_next{display:none}
.diff_add{background:#dafbe1} .diff_chg{background:#fff8c5} .diff_sub{background:#ffebe9}
"""


def write_html(path: Path, results: Sequence[CaseResult], config: RunConfig) -> None:
    counts = Counter(r.status for r in results)
    verdict = "all match" if counts["mismatch"] == 0 and counts["error"] == 0 else "differences found"
    rows = "".join(
        f"<tr><td>{html.escape(s.route)}</td><td>{s.requests}</td><td class='ok'>{s.match}</td>"
        f"<td class='{'bad' if s.mismatch else ''}'>{s.mismatch}</td><td>{s.noise}</td>"
        f"<td class='{'bad' if s.errors else ''}'>{s.errors}</td><td>{s.skipped}</td></tr>"
        for s in summarise(results)
    )
    target = html.escape(
        config.gateway or f"{config.control} vs {', '.join(f'{k}={v}' for k, v in config.candidates.items())}"
    )
    sections = []
    differ = difflib.HtmlDiff(wrapcolumn=70)
    for result in results:
        if result.status not in ("mismatch", "error"):
            continue
        request = result.case.request
        items = "".join(
            f"<li><code>{html.escape(d.where)}</code>: control <code>{html.escape(d.control)}</code> "
            f"&ne; candidate <code>{html.escape(d.candidate)}</code></li>"
            for d in result.differences
        )
        if result.error:
            items += f"<li class='bad'>error: {html.escape(result.error)}</li>"
        if result.noise:
            noisy = ", ".join(f"<code>{html.escape(d.where)}</code>" for d in result.noise)
            items += f"<li class='meta'>noise, not counted (differs between two control calls): {noisy}</li>"
        for difference, reason in result.ignored:
            place, why = html.escape(difference.where), html.escape(reason)
            items += f"<li class='meta'>ignored <code>{place}</code>: {why}</li>"
        table = ""
        if result.control is not None and result.candidate is not None:
            table = differ.make_table(
                _body_text(result.control),
                _body_text(result.candidate),
                f"control (HTTP {result.control.status})",
                f"candidate (HTTP {result.candidate.status})",
                context=True,
                numlines=3,
            )
        sections.append(
            f"<div class='case' id='{html.escape(result.case.id)}'><h3>{html.escape(result.case.id)} "
            f"<span class='meta'>{html.escape(result.case.route)} · {html.escape(request.method)} "
            f"{html.escape(request.target)} · {html.escape(request.persona)}</span></h3>"
            f"<ul class='diffs'>{items}</ul>"
            f"<pre class='curl'>{html.escape(curl_line(result, config))}</pre>{table}</div>"
        )
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Parity report</title>"
        f"<style>{_CSS}</style></head><body><h1>Parity report: "
        f"<span class='{'ok' if verdict == 'all match' else 'bad'}'>{verdict}</span></h1>"
        f"<p class='meta'>{len(results)} cases · {counts['match']} match · {counts['mismatch']} mismatch · "
        f"{counts['error']} errors · {counts['skipped']} skipped · {target} · "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>"
        "<table class='summary'><thead><tr><th>route</th><th>requests</th><th>match</th><th>mismatch</th>"
        f"<th>noise</th><th>errors</th><th>skipped</th></tr></thead><tbody>{rows}</tbody></table>"
        f"<h2>Mismatches and errors ({len(sections)})</h2>{''.join(sections) or '<p>None.</p>'}</body></html>"
    )
    path.write_text(page, encoding="utf-8")


def write_reports(directory: Path, results: Sequence[CaseResult], config: RunConfig) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "parity.json", directory / "junit.xml", directory / "parity.html"]
    write_json(paths[0], results, config)
    write_junit(paths[1], results)
    write_html(paths[2], results, config)
    return paths
