"""A small stacked bar chart drawn on the server as inline SVG (no script, no CDN)."""

from __future__ import annotations

from markupsafe import Markup, escape

from admin.dashboard import DayOutcomes

# Outcome, legend label and colour (Bootstrap 4's success / primary / secondary).
SERIES = (
    ("filled", "Filled", "#28a745"),
    ("open", "Open", "#007bff"),
    ("expired", "Expired", "#6c757d"),
)
WIDTH, HEIGHT = 640, 200
TOP, BOTTOM, LEFT, RIGHT = 24, 28, 28, 8


def openings_chart(days: list[DayOutcomes]) -> Markup:
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    peak = max((d.open + d.filled + d.expired for d in days), default=0) or 1
    slot = plot_w / max(len(days), 1)
    bar_w = max(min(slot * 0.7, 48), 2)
    label_every = max(1, len(days) // 14)  # about two weeks of labels fit

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-labelledby="chart-title" data-testid="openings-chart">',
        '<title id="chart-title">Openings per day by outcome</title>',
        f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" '
        'stroke="#adb5bd"/>',
        f'<text x="{LEFT - 4}" y="{TOP + 4}" font-size="10" text-anchor="end">{peak}</text>',
        f'<text x="{LEFT - 4}" y="{TOP + plot_h}" font-size="10" text-anchor="end">0</text>',
    ]
    for i, day in enumerate(days):
        x = LEFT + i * slot + (slot - bar_w) / 2
        y = TOP + plot_h
        for key, label, colour in SERIES:
            count = getattr(day, key)
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            tip = f"{day.day:%a %d %b}: {count} {label.lower()}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}" data-outcome="{key}" data-count="{count}">'
                f"<title>{escape(tip)}</title></rect>"
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{HEIGHT - 10}" font-size="10" '
                f'text-anchor="middle">{day.day:%d %b}</text>'
            )
    for n, (_, label, colour) in enumerate(SERIES):
        lx = LEFT + n * 90
        parts.append(f'<rect x="{lx}" y="4" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="13" font-size="11">{label}</text>')
    parts.append("</svg>")
    # Every interpolated value above is a number, a fixed label or escaped.
    return Markup("".join(parts))  # noqa: S704
