//! A container's usage history as an SVG picture (`codex-ctr stats --plot`): CPU %
//! (left axis) and memory (right axis) over time, written as plain SVG text (no
//! plotting crate: a few paths, lines and labels). Each line carries its values in
//! `data-values` (and the times in `data-times`, ms since the epoch), so a script can
//! read back what was drawn.

use std::fmt::Write;

use crate::history::UsagePoint;

const W: f64 = 900.0;
const H: f64 = 420.0;
/// The plot area inside the picture (room for the axes' labels).
const LEFT: f64 = 70.0;
const RIGHT: f64 = 830.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 360.0;
const CPU_COLOUR: &str = "#1f77b4";
const MEM_COLOUR: &str = "#d62728";

/// Text for XML: `&`, `<`, `>`, `"` and `'` escaped.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// A round step for an axis that goes up to about `max`: 1, 2 or 5 times a power
/// of ten (of `base`: 1024 for bytes).
fn nice_step(max: f64, ticks: f64, base: f64) -> f64 {
    let raw = (max / ticks).max(f64::MIN_POSITIVE);
    if !raw.is_finite() {
        return 1.0;
    }
    let mut p = 1.0;
    while p * base <= raw {
        p *= base;
    }
    while p > raw {
        p /= 10.0;
    }
    loop {
        for m in [1.0, 2.0, 5.0] {
            if p * m >= raw {
                return p * m;
            }
        }
        p *= 10.0;
    }
}

fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// `HH:MM:SS` (UTC) of a time in ms since the epoch.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// The SVG picture of `points` (oldest first) of the container `name`.
pub fn svg(name: &str, points: &[UsagePoint]) -> String {
    let t0 = points.first().map_or(0, |p| p.time_ms);
    let t1 = points.last().map_or(0, |p| p.time_ms).max(t0 + 1);
    let x = |t: u64| LEFT + (t - t0) as f64 / (t1 - t0) as f64 * (RIGHT - LEFT);
    let cpu_max = points
        .iter()
        .filter_map(|p| p.cpu_percent)
        .fold(100.0, f64::max);
    let cpu_step = nice_step(cpu_max, 5.0, 10.0);
    let cpu_top = (cpu_max / cpu_step).ceil() * cpu_step;
    let mem_max = points.iter().map(|p| p.memory).max().unwrap_or(0).max(1) as f64;
    let mem_step = nice_step(mem_max, 5.0, 1024.0);
    let mem_top = (mem_max / mem_step).ceil() * mem_step;
    let y = |v: f64, top: f64| BOTTOM - v / top * (BOTTOM - TOP);

    let mut o = String::new();
    let _ = writeln!(o, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let title = format!(
        "{}: CPU and memory, {} to {} UTC, {} samples",
        name,
        clock(t0),
        clock(t1),
        points.len()
    );
    let _ = writeln!(o, "<title>{}</title>", esc(&title));
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{}" y="25" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        esc(&title)
    );
    // Grid and the left (CPU) axis.
    let mut v = 0.0;
    while v <= cpu_top + cpu_step / 2.0 {
        let yy = y(v, cpu_top);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{RIGHT}" y2="{yy:.1}" stroke="#e0e0e0"/>"##
        );
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{:.1}" text-anchor="end" fill="{CPU_COLOUR}">{v:.0}%</text>"#,
            LEFT - 6.0,
            yy + 4.0
        );
        v += cpu_step;
    }
    // The right (memory) axis.
    let mut m = 0.0;
    while m <= mem_top + mem_step / 2.0 {
        let yy = y(m, mem_top);
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{:.1}" fill="{MEM_COLOUR}">{}</text>"#,
            RIGHT + 6.0,
            yy + 4.0,
            esc(&bytes(m))
        );
        m += mem_step;
    }
    // The time axis: five labels.
    for i in 0..=4u64 {
        let t = t0 + (t1 - t0) * i / 4;
        let xx = x(t);
        let _ = writeln!(
            o,
            r#"<line x1="{xx:.1}" y1="{BOTTOM}" x2="{xx:.1}" y2="{}" stroke="black"/>"#,
            BOTTOM + 5.0
        );
        let _ = writeln!(
            o,
            r#"<text x="{xx:.1}" y="{}" text-anchor="middle">{}</text>"#,
            BOTTOM + 20.0,
            clock(t)
        );
    }
    let _ = writeln!(
        o,
        r#"<path d="M{LEFT} {TOP} V{BOTTOM} H{RIGHT} V{TOP}" fill="none" stroke="black"/>"#
    );
    // The lines: a path that breaks where a point has no value.
    let mut cpu_d = String::new();
    let (mut cpu_times, mut cpu_values) = (Vec::new(), Vec::new());
    let mut pen_up = true;
    for p in points {
        match p.cpu_percent {
            Some(c) => {
                let _ = write!(
                    cpu_d,
                    "{}{:.1} {:.1} ",
                    if pen_up { "M" } else { "L" },
                    x(p.time_ms),
                    y(c, cpu_top)
                );
                pen_up = false;
                cpu_times.push(p.time_ms.to_string());
                cpu_values.push(format!("{c:.2}"));
            }
            None => pen_up = true,
        }
    }
    let mut mem_d = String::new();
    for (i, p) in points.iter().enumerate() {
        let _ = write!(
            mem_d,
            "{}{:.1} {:.1} ",
            if i == 0 { "M" } else { "L" },
            x(p.time_ms),
            y(p.memory as f64, mem_top)
        );
    }
    let mem_times: Vec<String> = points.iter().map(|p| p.time_ms.to_string()).collect();
    let mem_values: Vec<String> = points.iter().map(|p| p.memory.to_string()).collect();
    let _ = writeln!(
        o,
        r#"<path id="memory" d="{}" fill="none" stroke="{MEM_COLOUR}" stroke-width="2" data-times="{}" data-values="{}"/>"#,
        mem_d.trim_end(),
        mem_times.join(" "),
        mem_values.join(" ")
    );
    let _ = writeln!(
        o,
        r#"<path id="cpu" d="{}" fill="none" stroke="{CPU_COLOUR}" stroke-width="2" data-times="{}" data-values="{}"/>"#,
        cpu_d.trim_end(),
        cpu_times.join(" "),
        cpu_values.join(" ")
    );
    // Legend and axis names.
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="{}" fill="{CPU_COLOUR}">━ CPU (% of one core, left)</text>"#,
        H - 15.0
    );
    let _ = writeln!(
        o,
        r#"<text x="{}" y="{}" fill="{MEM_COLOUR}">━ memory in use (right)</text>"#,
        LEFT + 260.0,
        H - 15.0
    );
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: u64, cpu: Option<f64>, mem: u64) -> UsagePoint {
        UsagePoint {
            time_ms: t,
            cpu_percent: cpu,
            memory: mem,
        }
    }

    /// The attribute `name` of the element with `id`.
    fn attr<'a>(svg: &'a str, id: &str, name: &str) -> &'a str {
        let at = svg.find(&format!(r#"id="{id}""#)).unwrap();
        let rest = &svg[at..];
        let start = rest.find(&format!(r#" {name}=""#)).unwrap() + name.len() + 3;
        let len = rest[start..].find('"').unwrap();
        &rest[start..start + len]
    }

    #[test]
    fn the_picture_holds_what_was_given_and_breaks_the_cpu_line_at_gaps() {
        let pts = [
            p(1_000, None, 1 << 20),
            p(2_000, Some(99.5), 2 << 20),
            p(3_000, Some(50.0), 3 << 20),
            p(4_000, None, 1 << 20),
            p(5_000, Some(12.25), 1 << 20),
        ];
        let s = svg("web<&>", &pts);
        assert!(s.starts_with("<?xml"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(s.contains("web&lt;&amp;&gt;: CPU and memory"));
        assert!(!s.contains("web<"));
        assert_eq!(attr(&s, "cpu", "data-values"), "99.50 50.00 12.25");
        assert_eq!(attr(&s, "cpu", "data-times"), "2000 3000 5000");
        assert_eq!(
            attr(&s, "memory", "data-values"),
            "1048576 2097152 3145728 1048576 1048576"
        );
        // Two runs of the CPU line: it is lifted at the point without a value.
        let d = attr(&s, "cpu", "d");
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
        // The first time is at the left edge, the last at the right one.
        assert!(attr(&s, "memory", "d").starts_with("M70.0 "));
        assert!(attr(&s, "memory", "d").contains("L830.0 "));
        // The axes: 0 and 100 % on the left, memory in MiB on the right.
        assert!(s.contains(">100%</text>") && s.contains(">0%</text>"));
        assert!(s.contains(" MiB</text>"));
        // Every element opened is closed (a cheap well-formedness check; the root
        // test parses the file with a real XML parser).
        assert_eq!(s.matches("<text").count(), s.matches("</text>").count());
    }

    #[test]
    fn steps_are_round_and_an_empty_history_still_draws() {
        assert_eq!(nice_step(100.0, 5.0, 10.0), 20.0);
        assert_eq!(nice_step(230.0, 5.0, 10.0), 50.0);
        assert_eq!(nice_step(64.0 * 1048576.0, 5.0, 1024.0), 20.0 * 1048576.0);
        assert_eq!(nice_step(f64::INFINITY, 5.0, 10.0), 1.0);
        assert_eq!(bytes(16.0 * 1048576.0), "16 MiB");
        assert_eq!(clock(3_723_000), "01:02:03");
        let s = svg("x", &[]);
        assert!(s.contains("0 samples"));
        assert!(s.trim_end().ends_with("</svg>"));
    }
}
