//! The chart of a bench run, written as SVG by hand (no plotting dependency): one panel per
//! message size, one line per command: median wall time per delivery on a log scale (with the
//! p99 as a tick), peak RSS, and the throughput of two parallel streams over one.

use std::fmt::Write;

use super::{Kind, Row, human};

const LABEL_W: f64 = 250.0;
const LAT_X: f64 = LABEL_W + 10.0;
const LAT_W: f64 = 470.0;
const RSS_X: f64 = LAT_X + LAT_W + 90.0;
const RSS_W: f64 = 170.0;
const PAR_X: f64 = RSS_X + RSS_W + 125.0;
const WIDTH: f64 = PAR_X + 60.0;
const BAR_H: f64 = 13.0;
const LINE_H: f64 = 17.0;

fn colour(kind: Kind) -> &'static str {
    match kind {
        Kind::Floor => "#9e9e9e",
        Kind::Ours => "#1f6fb4",
        Kind::Original => "#d0342c",
        Kind::Mda => "#3a9a3a",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub fn chart(rows: &[&Row], subtitle: &str) -> String {
    let mut sizes: Vec<usize> = rows.iter().map(|r| r.size).collect();
    sizes.dedup();
    // Log scale over whole decades that hold every median and p99.
    let lo = rows
        .iter()
        .map(|r| r.median_ms)
        .fold(f64::INFINITY, f64::min)
        .max(1e-3)
        .log10()
        .floor();
    let hi = rows
        .iter()
        .map(|r| r.p99_ms.max(r.median_ms))
        .fold(0.0, f64::max)
        .max(1e-3)
        .log10()
        .ceil()
        .max(lo + 1.0);
    let x_ms = |ms: f64| LAT_X + (ms.max(1e-3).log10() - lo) / (hi - lo) * LAT_W;
    let rss_max = rows.iter().map(|r| r.rss_kib).max().unwrap_or(1).max(1) as f64 / 1024.0;
    let rss_max = (rss_max / 10.0).ceil() * 10.0;
    let x_rss = |mib: f64| RSS_X + mib / rss_max * RSS_W;

    let mut body = String::new();
    let mut y = 92.0;
    for &size in &sizes {
        let panel: Vec<&Row> = rows.iter().copied().filter(|r| r.size == size).collect();
        let top = y;
        let height = panel.len() as f64 * LINE_H + 8.0;
        let _ = writeln!(
            body,
            r##"<text x="10" y="{:.1}" class="h">{} message</text>"##,
            y - 8.0,
            human(size)
        );
        // Grid: decades for time, tenths of the range for RSS.
        let mut d = lo;
        while d <= hi + 1e-9 {
            let x = x_ms(10f64.powf(d));
            let _ = writeln!(
                body,
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{:.1}" class="g"/><text x="{x:.1}" y="{:.1}" class="t" text-anchor="middle">{}</text>"##,
                top + height,
                top + height + 11.0,
                ms_label(10f64.powf(d))
            );
            d += 1.0;
        }
        for i in 0..=2 {
            let v = rss_max * i as f64 / 2.0;
            let x = x_rss(v);
            let _ = writeln!(
                body,
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{:.1}" class="g"/><text x="{x:.1}" y="{:.1}" class="t" text-anchor="middle">{v:.0} MiB</text>"##,
                top + height,
                top + height + 11.0
            );
        }
        if size >= 1 << 20 {
            // The message itself, for "RSS ≤ message + 4 MiB".
            let x = x_rss(size as f64 / 1048576.0);
            let _ = writeln!(
                body,
                r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{:.1}" class="m"/>"##,
                top + height
            );
        }
        for (i, r) in panel.iter().enumerate() {
            let ly = top + 4.0 + i as f64 * LINE_H;
            let mid = ly + BAR_H / 2.0 + 4.0;
            let c = colour(r.kind);
            let x0 = x_ms(10f64.powf(lo));
            let _ = writeln!(
                body,
                r##"<text x="{:.1}" y="{mid:.1}" text-anchor="end">{}</text>"##,
                LABEL_W,
                esc(&r.name)
            );
            let xm = x_ms(r.median_ms);
            let xp = x_ms(r.p99_ms);
            let _ = writeln!(
                body,
                r##"<rect x="{x0:.1}" y="{ly:.1}" width="{:.1}" height="{BAR_H}" fill="{c}"><title>{}: median {:.3} ms, p99 {:.3} ms</title></rect><line x1="{xp:.1}" y1="{ly:.1}" x2="{xp:.1}" y2="{:.1}" class="p"/><text x="{:.1}" y="{mid:.1}" class="v">{}</text>"##,
                (xm - x0).max(1.0),
                esc(&r.name),
                r.median_ms,
                r.p99_ms,
                ly + BAR_H,
                xm.max(xp) + 4.0,
                ms_value(r.median_ms)
            );
            let mib = r.rss_kib as f64 / 1024.0;
            let _ = writeln!(
                body,
                r##"<rect x="{RSS_X:.1}" y="{ly:.1}" width="{:.1}" height="{BAR_H}" fill="{c}" opacity="0.7"/><text x="{:.1}" y="{mid:.1}" class="v">{mib:.1}</text>"##,
                (x_rss(mib) - RSS_X).max(1.0),
                x_rss(mib) + 4.0
            );
            if r.tput2 > 0.0 {
                let ratio = r.tput2 / r.tput1;
                let _ = writeln!(
                    body,
                    r##"<text x="{PAR_X:.1}" y="{mid:.1}" class="v{}" text-anchor="end">{ratio:.2}×</text>"##,
                    if r.kind == Kind::Ours && ratio < 1.8 {
                        " bad"
                    } else {
                        ""
                    }
                );
            }
        }
        y = top + height + 44.0;
    }
    let height = y - 10.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0}" height="{height:.0}" viewBox="0 0 {WIDTH:.0} {height:.0}" font-family="sans-serif" font-size="11">
<style>
.h {{ font-weight: bold; font-size: 12px; }}
.t {{ fill: #666; font-size: 9px; }}
.v {{ font-size: 9.5px; fill: #222; }}
.bad {{ fill: #c00; }}
.g {{ stroke: #ddd; stroke-width: 1; }}
.m {{ stroke: #222; stroke-width: 1; stroke-dasharray: 3 2; }}
.p {{ stroke: #000; stroke-width: 1.5; }}
</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="20" font-size="15" font-weight="bold">virt_mail: one delivery per process, per message size</text>
<text x="10" y="37" class="t" font-size="10">{}</text>
<text x="{LAT_X:.0}" y="62" class="h">median wall time per delivery (log scale; black tick = p99)</text>
<text x="{RSS_X:.0}" y="62" class="h">peak RSS (dashed: message)</text>
<text x="{:.0}" y="62" class="h" text-anchor="end">2 pipes ÷ 1</text>"##,
        esc(subtitle),
        PAR_X
    );
    let legend = [
        (Kind::Floor, "floors"),
        (Kind::Ours, "virt_mail (this project)"),
        (Kind::Original, "original virt_mail"),
        (Kind::Mda, "other MDAs → Maildir"),
    ];
    for (i, (kind, text)) in legend.iter().enumerate() {
        let x = LAT_X + i as f64 * 150.0;
        let _ = writeln!(
            out,
            r##"<rect x="{x:.0}" y="70" width="10" height="10" fill="{}"/><text x="{:.0}" y="79">{text}</text>"##,
            colour(*kind),
            x + 14.0
        );
    }
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

fn ms_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.0} s", ms / 1000.0)
    } else if ms >= 1.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms} ms")
    }
}

fn ms_value(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}
