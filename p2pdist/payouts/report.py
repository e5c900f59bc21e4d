"""A payout statement as JSON, as CSV, and as one self-contained HTML report.

A statement is a settlement: each party collected some money (a seller's sales, the
label's pool) and is owed some; its net (owed minus collected) is what the label pays it,
or, negative, what it pays the label. Every rendering shows the parties, who pays whom,
the lines (per work, ``ref`` "sales" or "pool") and the money held, with its reason.

The HTML report needs nothing at view time: no script, no stylesheet, font or image to
fetch (its Content-Security-Policy forbids them anyway). Its charts are drawn by
matplotlib as SVG and embedded inline: ``#chart-money`` (money per payee, one panel
per currency, holder, redistributor and held shares stacked) and ``#chart-spread`` (distinct
verified downloaders of each work per day). Keys are shown in their one text form, with
the fingerprint beside them, never instead; amounts through ``format_price``.

Everything that comes from a work's manifest (titles) or from the audit (findings) is
untrusted text: it is escaped in HTML, kept out of matplotlib's mathtext, and guarded
against spreadsheet formulas in CSV.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Final

from p2pdist._text import shown
from p2pdist.identity import fingerprint, key_to_text
from p2pdist.licensing import format_price
from p2pdist.licensing._terms import currency_exponent
from p2pdist.payouts.statement import STATEMENT_TYPE, STATEMENT_VERSION, Party, Statement

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CSV_COLUMNS", "HELD_REASONS", "held_money", "settles", "statement_json",
           "to_csv", "to_html", "to_json"]

# entry: "owed" (a statement line), "collected" (what a party collected), "net" (owed
# minus collected: positive, the label pays it; negative, it pays the label).
CSV_COLUMNS: Final = ("entry", "party", "party_fingerprint", "role", "work", "title", "ref",
                      "currency", "amount_minor", "amount")
HELD_REASONS: Final = {
    "disputed": "disputed: the work shares its content with a work of other rights "
                "holders; all its money is held until the label decides which is the "
                "original (p2pdist label decide)",
    "double-spend": "a voucher code spent more than once: the carriers' share of the "
                    "later sales is held for the label to settle",
}
# Past these, the charts show the largest and say how many they left out.
MAX_CHART_PAYEES: Final = 25
MAX_CHART_WORKS: Final = 10
_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _iso(ts: Any) -> str | None:
    return None if ts is None else ts.isoformat().replace("+00:00", "Z")


def _price(amount: int, currency: str) -> str:
    """format_price, with a sign: -445, EUR -> "-4.45 EUR" (format_price's divmod would
    print -5.55)."""
    return ("-" if amount < 0 else "") + format_price(abs(amount), currency)


def _decimal(amount: int, currency: str) -> str:
    """500, EUR -> "5.00": _price without the code."""
    return _price(amount, currency).rsplit(" ", 1)[0]


def _titles(st: Statement) -> dict[bytes, str]:
    return {w.work: w.title for w in st.works}


def settles(st: Statement, p: Party) -> str:
    """Who pays whom for one party of the settlement, in words."""
    amount = format_price(abs(p.net), p.currency)
    if p.party == st.label:
        if p.net < 0:
            return f"the label pays out {amount} of what it collected"
        if p.net > 0:
            return f"the label holds {amount} the collectors pay it"
        return "the label keeps what it collected"
    who = fingerprint(p.party)
    if p.net > 0:
        return f"the label pays {who} {amount}"
    if p.net < 0:
        return f"{who} pays the label {amount}"
    return f"{who} keeps what it collected: nobody pays"


def held_money(st: Statement) -> list[tuple[bytes, str, str, int, str]]:
    """The money held for the label: (work, ref, currency, amount, reason) per held line.
    A work whose money is all held is disputed (a copy nobody decided yet); held money
    beside lines that pay others is the carriers' share of a code spent again."""
    paid = {(ln.work, ln.ref, ln.currency) for ln in st.lines if ln.role != "held"}
    return [(ln.work, ln.ref, ln.currency, ln.amount,
             "double-spend" if (ln.work, ln.ref, ln.currency) in paid else "disputed")
            for ln in st.lines if ln.role == "held"]


# -- JSON ------------------------------------------------------------------------------


def statement_json(st: Statement) -> dict[str, object]:
    """The statement as JSON-ready data: keys as text with fingerprints, work ids in hex,
    amounts in minor units with their formatted form beside."""
    titles = _titles(st)
    out = st.totals_out()
    return {
        "type": STATEMENT_TYPE, "v": STATEMENT_VERSION,
        "label": key_to_text(st.label), "label_fingerprint": fingerprint(st.label),
        "period": None if st.period is None else st.period.to_json(),
        "issued": _iso(st.issued),
        "sums_exactly": st.sums_exactly,
        "totals": [{"currency": c, "in": a, "out": out.get(c, 0),
                    "formatted": format_price(a, c)} for c, a in st.totals_in],
        "pool": None if st.pool is None else {
            **st.pool.to_dict(), "distributed": st.pool.distributed,
            "formatted": format_price(st.pool.amount, st.pool.currency)},
        "parties": [{"party": key_to_text(p.party), "fingerprint": fingerprint(p.party),
                     "is_label": p.party == st.label, "currency": p.currency,
                     "collected": p.collected, "owed": p.owed, "net": p.net,
                     "formatted": {"collected": format_price(p.collected, p.currency),
                                   "owed": format_price(p.owed, p.currency),
                                   "net": _price(p.net, p.currency)},
                     "settles": settles(st, p)} for p in st.parties],
        "payees": [{"payee": key_to_text(p.payee), "fingerprint": fingerprint(p.payee),
                    "currency": p.currency, "holder": p.holder,
                    "redistributor": p.redistributor, "held": p.held, "total": p.total,
                    "formatted": format_price(p.total, p.currency)} for p in st.payees],
        "held": [{"work": w.hex(), "title": titles.get(w), "ref": ref, "currency": cur,
                  "amount": amount, "formatted": format_price(amount, cur),
                  "reason": reason, "why": HELD_REASONS[reason]}
                 for w, ref, cur, amount, reason in held_money(st)],
        "works": [{"work": w.work.hex(), "title": w.title, "license": w.license,
                   "size": w.size, "sales": w.sales, "downloaders": w.downloaders}
                  for w in st.works],
        "lines": [{"payee": key_to_text(ln.payee), "fingerprint": fingerprint(ln.payee),
                   "role": ln.role, "work": ln.work.hex(), "title": titles.get(ln.work),
                   "ref": ln.ref, "currency": ln.currency, "amount": ln.amount,
                   "formatted": format_price(ln.amount, ln.currency)} for ln in st.lines],
        "spread": [{"work": s.work.hex(), "day": s.day.isoformat(),
                    "downloaders": s.downloaders} for s in st.spread],
    }


def to_json(st: Statement) -> str:
    """The statement as pretty-printed JSON (statement_json), ending in a newline."""
    return json.dumps(statement_json(st), indent=2, ensure_ascii=False) + "\n"


# -- CSV -------------------------------------------------------------------------------


def _cell(text: str) -> str:
    # A title such as "=HYPERLINK(...)" would run as a formula in a spreadsheet (OWASP,
    # "CSV injection"): a leading quote keeps it text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def to_csv(st: Statement) -> str:
    """A header row (CSV_COLUMNS), then one "owed" row per statement line, one
    "collected" row per collector and currency, and one "net" row per party and currency
    (owed minus collected); RFC 4180 quoting. The owed rows sum to the money in, and so
    do the collected rows."""
    titles = _titles(st)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for ln in st.lines:
        w.writerow(["owed", key_to_text(ln.payee), fingerprint(ln.payee), ln.role,
                    ln.work.hex(), _cell(titles.get(ln.work, "")), ln.ref, ln.currency,
                    ln.amount, _decimal(ln.amount, ln.currency)])
    for party, cur, amount in st.collected:
        w.writerow(["collected", key_to_text(party), fingerprint(party), "", "", "", "", cur,
                    amount, _decimal(amount, cur)])
    for p in st.parties:
        w.writerow(["net", key_to_text(p.party), fingerprint(p.party), "", "", "", "",
                    p.currency, p.net, _decimal(p.net, p.currency)])
    return buf.getvalue()


# -- charts ----------------------------------------------------------------------------


def _plain(text: str, limit: int = 40) -> str:
    """Untrusted text for a chart label: short, and never read as mathtext."""
    t = text if len(text) <= limit else text[: limit - 1] + "…"
    return t.replace("$", r"\$")


def _svg(fig: Figure, chart_id: str) -> str:
    """The figure as inline SVG: root id *chart_id*, its inner ids prefixed with it (two
    charts in one page must not share glyph or clip-path ids), no XML prologue and no
    metadata."""
    from matplotlib import rc_context

    buf = io.StringIO()
    # A fixed salt gives the same ids for the same chart: the report is reproducible.
    with rc_context({"svg.hashsalt": "p2pdist", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{chart_id}-{m[1]}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{chart_id}-{m[1]}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{chart_id}-{m[1]})", svg)
    return svg.replace("<svg", f'<svg id="{chart_id}" role="img"', 1)


def _figure(width: float, height: float) -> Figure:
    # The Figure API, not pyplot: no global state, no GUI backend, safe in any thread.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _money_chart(st: Statement) -> str:
    by_cur: dict[str, list[Any]] = defaultdict(list)
    for p in st.payees:
        by_cur[p.currency].append(p)
    currencies = sorted(by_cur)
    rows = [min(len(by_cur[c]), MAX_CHART_PAYEES) for c in currencies]
    fig = _figure(9, max(2.5, 0.9 + sum(0.32 * n + 0.9 for n in rows)))
    if not currencies:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "No money in this period", ha="center", va="center")
        ax.set_axis_off()
        return _svg(fig, "chart-money")
    axes = fig.subplots(len(currencies), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [max(n, 1) for n in rows]})[:, 0]
    for ax, cur in zip(axes, currencies, strict=True):
        payees = sorted(by_cur[cur], key=lambda p: (-p.total, p.payee))
        shown = payees[:MAX_CHART_PAYEES][::-1]  # largest on top
        scale = 10 ** (currency_exponent(cur) or 0)
        names = [fingerprint(p.payee) for p in shown]
        holder = [p.holder / scale for p in shown]
        redis = [p.redistributor / scale for p in shown]
        held = [p.held / scale for p in shown]
        ax.barh(names, holder, color="#4c72b0", label="rights holder")
        ax.barh(names, redis, left=holder, color="#dd8452", label="redistributor")
        if any(held):
            ax.barh(names, held, left=[h + r for h, r in zip(holder, redis, strict=True)],
                    color="#8c8c8c", label="held")
        for i, p in enumerate(shown):
            ax.annotate(format_price(p.total, cur), (p.total / scale, i), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=8)
        more = len(payees) - len(shown)
        ax.set_title(f"Money per payee, {cur}" + (f" (top {len(shown)}; {more} more in the "
                                                    "tables)" if more else ""))
        ax.set_xlabel(cur)
        ax.margins(x=0.18)
        ax.tick_params(axis="y", labelsize=8)
        ax.legend(loc="lower right", fontsize=8)
    return _svg(fig, "chart-money")


def _spread_chart(st: Statement) -> str:
    import numpy as np
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, DayLocator, date2num
    from matplotlib.ticker import MaxNLocator

    titles = _titles(st)
    per_work: dict[bytes, dict[date, int]] = defaultdict(dict)
    for s in st.spread:
        per_work[s.work][s.day] = s.downloaders
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    if not per_work:
        ax.text(0.5, 0.5, "No verified downloads in this period", ha="center",
                va="center")
        ax.set_axis_off()
        return _svg(fig, "chart-spread")
    first, last = min(s.day for s in st.spread), max(s.day for s in st.spread)
    # Every day from the first to the last, so a day without a download reads 0 rather
    # than a line drawn across it.
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    x = np.array(days, dtype="datetime64[D]")
    ranked = sorted(per_work, key=lambda w: (-sum(per_work[w].values()), w))
    for wid in ranked[:MAX_CHART_WORKS]:
        ax.plot(x, [per_work[wid].get(d, 0) for d in days], marker="o", markersize=3,
                label=_plain(titles.get(wid, wid.hex()[:16])))
    more = len(ranked) - MAX_CHART_WORKS
    ax.set_title("Spread: distinct verified downloaders per day"
                 + (f" (top {MAX_CHART_WORKS} works; {more} more)" if more > 0 else ""))
    ax.set_ylabel("downloaders")
    ax.set_ylim(bottom=0)
    lo, hi = date2num([first - timedelta(days=1),  # type: ignore[no-untyped-call]
                       last + timedelta(days=1)])
    ax.set_xlim(float(lo), float(hi))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    # Whole days only: the auto locator would tick hours on a span of a few days.
    # (matplotlib.dates has no type hints yet.)
    span = (last - first).days + 2
    locator = (DayLocator(interval=max(1, -(-span // 10)))  # type: ignore[no-untyped-call]
               if span <= 90 else AutoDateLocator())  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _svg(fig, "chart-spread")


def _charts(st: Statement) -> tuple[str, str]:
    with warnings.catch_warnings():
        # A title in a script DejaVu lacks warns "Glyph missing" per glyph; the chart
        # still draws (a box), and the tables carry the title in full.
        warnings.simplefilter("ignore", UserWarning)
        return _money_chart(st), _spread_chart(st)


# -- HTML ------------------------------------------------------------------------------

_STYLE: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1f2328;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.3rem;
 margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.92rem}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums;
 white-space:nowrap}
code{font-size:.85em;word-break:break-all}.fp{color:#57606a;font-size:.85em;
 white-space:nowrap;margin-left:.4em}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
figure{margin:1rem 0}svg{max-width:100%;height:auto}
.finding{border-left:4px solid #cf222e;padding:.2rem .8rem;margin:.8rem 0;
 background:#fff8f8}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:.8rem;
 white-space:pre-wrap;word-break:break-all}
"""


def _e(text: object) -> str:
    # Control, bidi and zero-width characters (a finding may quote a bundle) are shown as
    # escapes: a right-to-left override must not reorder what a payee reads.
    return html.escape(shown(text, cap=None, keep="\n"), quote=True)


def _key_html(pk: bytes) -> str:
    return f'<code>{_e(key_to_text(pk))}</code><span class="fp">{_e(fingerprint(pk))}</span>'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: frozenset[int]
           = frozenset(), **attrs: str) -> str:
    """A table from already escaped cells."""
    # class_ -> class, data_x -> data-x
    a = "".join(f' {k.rstrip("_").replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                         for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table{a}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _summary(st: Statement) -> str:
    out = st.totals_out()
    period = ("all time" if st.period is None
              else f"{_iso(st.period.start)} to {_iso(st.period.end)} (end excluded)")
    check = ('<span class="ok">yes: every line adds up to the money in, which is what the '
             "collectors collected; the nets sum to zero</span>" if st.sums_exactly
             else '<span class="bad">NO: the lines do not add up</span>')
    parts = [
        "<dl>",
        f"<dt>Label</dt><dd>{_key_html(st.label)}</dd>",
        f"<dt>Period</dt><dd>{_e(period)}</dd>",
    ]
    if st.issued is not None:
        parts.append(f"<dt>Issued</dt><dd>{_e(_iso(st.issued))}</dd>")
    parts.append(f"<dt>Sums exactly</dt><dd>{check}</dd></dl>")
    got: dict[str, int] = defaultdict(int)
    for _, c, a in st.collected:
        got[c] += a
    parts.append(_table(
        ["Currency", "Money in", "Collected", "Owed (paid out)"],
        [[_e(c), _e(format_price(a, c)), _e(format_price(got.get(c, 0), c)),
          _e(format_price(out.get(c, 0), c))]
         for c, a in st.totals_in], frozenset({1, 2, 3}), id="totals"))
    sales = sum(w.sales for w in st.works)
    parts.append(f"<p>{sales} sale(s) of {len(st.works)} work(s); "
                 f"{len({p.payee for p in st.payees})} payee(s); "
                 f"{len({p for p, _, _ in st.collected})} collector(s); "
                 f"{len(st.lines)} line(s).</p>")
    if st.pool is not None:
        pool = st.pool
        shared = (f"shared among {pool.downloaders} verified downloader(s), an equal slice "
                  "each, each slice by the bytes that downloader fetched of each work; "
                  f"{pool.redistributor_bps / 100:g}% of each work's part to the uploaders "
                  "that served it" if pool.downloaders
                  else "not distributed: no verified downloader in the period")
        excl = (f" {pool.excluded} downloader(s) were excluded (suspected Sybils)."
                if pool.excluded else "")
        parts.append(f"<p>Pool: {_e(format_price(pool.amount, pool.currency))}, "
                     f"{_e(shared)}.{_e(excl)}</p>")
    return "".join(parts)


def _settlement(st: Statement) -> str:
    if not st.parties:
        return "<p>No money in this period: nobody collected and nobody is owed.</p>"
    rows = [[_key_html(p.party) + (" (the label)" if p.party == st.label else ""),
             _e(p.currency), _e(format_price(p.collected, p.currency)),
             _e(format_price(p.owed, p.currency)),
             f"<strong>{_e(_price(p.net, p.currency))}</strong>", _e(settles(st, p))]
            for p in sorted(st.parties, key=lambda p: (p.currency, p.net, p.party))]
    return ("<p>Each party collected money (a seller its sales, the label its pool) and is "
            "owed its lines. The net is owed minus collected: the label pays a positive "
            "net, and a party with a negative net pays the label.</p>"
            + _table(["Party", "Currency", "Collected", "Owed", "Net", "Who pays whom"],
                     rows, frozenset({2, 3, 4}), id="settlement-table"))


def _held(st: Statement) -> str:
    held = held_money(st)
    if not held:
        return "<p>No money is held.</p>"
    titles = _titles(st)
    rows = [[_e(titles.get(w, w.hex())), f"<code>{_e(w.hex())}</code>", _e(ref),
             _e(format_price(amount, cur)), _e(HELD_REASONS[reason])]
            for w, ref, cur, amount, reason in held]
    return ("<p>Money the label holds instead of paying it out, until it is settled.</p>"
            + _table(["Work", "Work id", "From", "Amount", "Reason"], rows, frozenset({3}),
                     id="held-table"))


def _payees(st: Statement) -> str:
    titles = _titles(st)
    rows = [[_key_html(p.payee), _e(p.currency), _e(format_price(p.holder, p.currency)),
             _e(format_price(p.redistributor, p.currency)),
             _e(format_price(p.held, p.currency)),
             f"<strong>{_e(format_price(p.total, p.currency))}</strong>"]
            for p in sorted(st.payees, key=lambda p: (p.currency, -p.total, p.payee))]
    parts = [_table(["Payee", "Currency", "As rights holder", "As redistributor", "Held",
                     "Total"], rows, frozenset({2, 3, 4, 5}), id="payee-totals")]
    # Per payee: its lines (one per work, role, currency, and sales or pool).
    detail: dict[bytes, list[tuple[bytes, str, str, str, int]]] = defaultdict(list)
    for ln in st.lines:
        detail[ln.payee].append((ln.work, ln.role, ln.currency, ln.ref, ln.amount))
    for pk in sorted(detail):
        rows = [[_e(titles.get(w, w.hex())), f"<code>{_e(w.hex()[:16])}…</code>", _e(role),
                 _e(src), _e(format_price(amount, cur))]
                for w, role, cur, src, amount in sorted(detail[pk])]
        parts.append(f'<h3 id="payee-{_e(key_to_text(pk))}">{_key_html(pk)}</h3>')
        parts.append(_table(["Work", "Work id", "Role", "From", "Amount"], rows,
                            frozenset({4}), class_="payee-lines"))
    return "".join(parts)


def _works(st: Statement) -> str:
    rows = [[_e(w.title), f"<code>{_e(w.work.hex())}</code>", _e(w.license), _e(w.size),
             _e(w.sales), _e(w.downloaders)] for w in st.works]
    return _table(["Title", "Work id", "License", "Size (bytes)", "Sales",
                   "Verified downloaders"], rows, frozenset({3, 4, 5}), id="works-table")


def _findings(findings: Sequence[Mapping[str, object]]) -> str:
    if not findings:
        return "<p>No findings: nothing in the evidence failed a check.</p>"
    parts = [f"<p>{len(findings)} finding(s). Nothing in a bundle that failed to verify "
             "counts in this statement.</p>"]
    for f in findings:
        evidence = json.dumps(f.get("evidence"), indent=2, ensure_ascii=False, default=str,
                              sort_keys=True)
        parts.append(f'<div class="finding"><p><strong>{_e(f.get("kind", "?"))}</strong>: '
                     f'{_e(f.get("message", ""))}</p><pre>{_e(evidence)}</pre></div>')
    return "".join(parts)


def to_html(st: Statement, findings: Sequence[Mapping[str, object]] = ()) -> str:
    """The statement as one self-contained HTML page: a summary, the charts
    (``#chart-money``, ``#chart-spread``), the settlement (``#settlement``: per party
    collected, owed, net and who pays whom), the held money with its reason (``#held``),
    per-payee tables, works, and *findings*
    (``{kind, message, evidence}`` dicts from the audit)."""
    money, spread = _charts(st)
    title = "Payout statement" + ("" if st.period is None else
                                  f" {st.period.start.date()} to {st.period.end.date()}")
    return "".join([
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<section id="summary"><h2>Summary</h2>{_summary(st)}</section>',
        '<section id="charts"><h2>Charts</h2>',
        f'<figure id="figure-money">{money}<figcaption>Money per payee (fingerprints; keys '
        "in the tables below).</figcaption></figure>",
        f'<figure id="figure-spread">{spread}<figcaption>Distinct verified downloaders '
        "per work per UTC day.</figcaption></figure></section>",
        f'<section id="settlement"><h2>Settlement</h2>{_settlement(st)}</section>',
        f'<section id="held"><h2>Held money</h2>{_held(st)}</section>',
        f'<section id="payees"><h2>Payees</h2>{_payees(st)}</section>',
        f'<section id="works"><h2>Works</h2>{_works(st)}</section>',
        f'<section id="findings"><h2>Findings</h2>{_findings(findings)}</section>',
        "</body></html>\n",
    ])
