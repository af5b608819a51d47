"""The chart of bench/suite's results, as hand-written SVG (no dependencies).

Top panel: seconds per stage, grouped bars for the rsync daemon, the ferry daemon and `cp -a`
(full stage only), each stage on its own scale (a full sync takes 10-50x a no-change one), with
ferry's ratios labelled. Bottom panel: peak RSS of sender and receiver per stage for rsync and
ferry on one scale, the 128 MiB target dashed; and, when the scaling run was made, ferry's peaks
at 100k and 400k small files.

usage (from bench/suite): write_svg(results_dict, path)"""
import html

TOOLS = [("rsync", "rsync daemon", "#8c8c8c"), ("ferry", "ferry daemon", "#2b7bba"),
         ("cp", "cp -a + sync", "#e0a030")]
RSS_SERIES = [("rsync", "sender", "rsync sender", "#b0b0b0"),
              ("rsync", "receiver", "rsync receiver", "#6e6e6e"),
              ("ferry", "sender", "ferry sender", "#7fb3e0"),
              ("ferry", "receiver", "ferry receiver", "#1f5f96")]
RSS_TARGET_MIB = 128
W = 960


class Svg:
    def __init__(self):
        self.parts = []

    def text(self, x, y, s, size=12, anchor="start", weight="normal", fill="#222"):
        self.parts.append('<text x="%.1f" y="%.1f" font-size="%d" text-anchor="%s" '
                          'font-weight="%s" fill="%s">%s</text>'
                          % (x, y, size, anchor, weight, fill, html.escape(str(s))))

    def rect(self, x, y, w, h, fill, title=None):
        tip = "<title>%s</title>" % html.escape(title) if title else ""
        self.parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">%s</rect>'
                          % (x, y, w, max(h, 0.5), fill, tip))

    def line(self, x1, y1, x2, y2, stroke="#444", dash=None, width=1):
        self.parts.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" '
                          'stroke-width="%g"%s/>' % (x1, y1, x2, y2, stroke, width,
                                                    ' stroke-dasharray="5,4"' if dash else ""))

    def render(self, height):
        return ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
                'viewBox="0 0 %d %d" '
                'font-family="DejaVu Sans, Helvetica, Arial, sans-serif">\n'
                '<rect width="100%%" height="100%%" fill="white"/>\n%s\n</svg>\n'
                % (W, height, W, height, "\n".join(self.parts)))


def legend(svg, x, y, items):
    for label, color in items:
        svg.rect(x, y - 10, 12, 12, color)
        svg.text(x + 17, y, label, size=12)
        x += 30 + 7 * len(label)


def seconds_panel(svg, y0, stages):
    """Grouped bars of seconds; each stage scaled to its own slowest tool."""
    h = 190
    group_w = (W - 80) / max(len(stages), 1)
    svg.text(40, y0, "Seconds per stage (lower is better; each stage on its own scale)",
             size=15, weight="bold")
    legend(svg, 40, y0 + 22, [(t[1], t[2]) for t in TOOLS])
    base = y0 + 52 + h
    svg.line(40, base, W - 40, base)
    for i, (name, r) in enumerate(stages.items()):
        tools = [t for t in TOOLS if t[0] in r]
        top = max(r[t[0]]["seconds"] for t in tools) or 1
        bar_w = min(70, (group_w - 60) / len(tools))
        x = 40 + i * group_w + (group_w - bar_w * len(tools)) / 2
        for key, label, color in tools:
            s = r[key]["seconds"]
            bh = h * s / top
            svg.rect(x, base - bh, bar_w - 6, bh, color, "%s, %s: %.3f s" % (name, label, s))
            svg.text(x + (bar_w - 6) / 2, base - bh - 4, "%.2f s" % s, size=11, anchor="middle")
            x += bar_w
        ratios = ["ferry/rsync %.2f" % r["ratio"]]
        if "ratio_cp" in r:
            ratios.append("ferry/cp -a %.2f" % r["ratio_cp"])
        cx = 40 + i * group_w + group_w / 2
        svg.text(cx, base + 18, name, size=13, anchor="middle", weight="bold")
        svg.text(cx, base + 34, ", ".join(ratios), size=12, anchor="middle", fill="#1f5f96")
    return base + 50


def rss_groups(results):
    """[(label, [bytes or None per RSS_SERIES])] for the stages and the scaling run."""
    groups = []
    for name, r in results.get("stages", {}).items():
        groups.append((name, [r[tool].get("rss", {}).get(side + "_peak_bytes")
                              for tool, side, _, _ in RSS_SERIES]))
    for run in results.get("rss_scale", {}).get("runs", []):
        groups.append(("%dk files (tmpfs)" % (run["files"] // 1000),
                       [None, None, run["sender_peak_bytes"], run["receiver_peak_bytes"]]))
    return groups


def rss_panel(svg, y0, results):
    h = 190
    groups = rss_groups(results)
    svg.text(40, y0, "Peak RSS, sender and receiver (MiB; dashed: ferry's target, %d MiB)"
             % RSS_TARGET_MIB, size=15, weight="bold")
    legend(svg, 40, y0 + 22, [(s[2], s[3]) for s in RSS_SERIES])
    base = y0 + 40 + h
    values = [v for _, vs in groups for v in vs if v is not None]
    top = max(values + [RSS_TARGET_MIB << 20]) * 1.1
    svg.line(40, base, W - 40, base)
    ty = base - h * (RSS_TARGET_MIB << 20) / top
    svg.line(40, ty, W - 40, ty, stroke="#c03030", dash=True)
    svg.text(W - 42, ty - 4, "%d MiB" % RSS_TARGET_MIB, size=11, anchor="end", fill="#c03030")
    group_w = (W - 80) / max(len(groups), 1)
    for i, (label, vs) in enumerate(groups):
        bar_w = min(44, (group_w - 20) / len(RSS_SERIES))
        x = 40 + i * group_w + (group_w - bar_w * len(RSS_SERIES)) / 2
        for (_, _, series, color), v in zip(RSS_SERIES, vs):
            if v is not None:
                bh = h * v / top
                svg.rect(x, base - bh, bar_w - 4, bh, color, "%s, %s: %.1f MiB"
                         % (label, series, v / (1 << 20)))
                svg.text(x + (bar_w - 4) / 2, base - bh - 4, "%.0f" % (v / (1 << 20)), size=10,
                         anchor="middle")
            x += bar_w
        svg.text(40 + i * group_w + group_w / 2, base + 18, label, size=13, anchor="middle",
                 weight="bold")
    return base + 30


def write_svg(results, path):
    svg = Svg()
    w = results.get("workload")
    title = "ferry vs rsync: PV workload" if w else "ferry: peak RSS against the number of files"
    if w:
        title += " (scale %g: %d files, %.0f MiB)" % (results["scale"], w["files"],
                                                      w["bytes"] / (1 << 20))
    svg.text(W / 2, 24, title, size=17, anchor="middle", weight="bold")
    svg.text(W / 2, 42, "ferry %s, %s, %d cores, %s" % (
        results.get("ferry_commit", "?"), results.get("host", "?"), results.get("cores", 0),
        results.get("date", "")), size=11, anchor="middle", fill="#555")
    y = 72
    if results.get("stages"):
        y = seconds_panel(svg, y, results["stages"]) + 30
    y = rss_panel(svg, y, results)
    with open(path, "w") as f:
        f.write(svg.render(y + 10))
