//! `codex-ctr top` without a name: a live view of every container — state, health,
//! restarts, CPU and memory with a sparkline of the last minutes — for people who
//! would rather look than read. Sorted (`s`), filtered (`/` then a name), `q` quits.
//!
//! Usage is sampled here, one cgroup read per running container per tick, and CPU %
//! is the difference between two ticks (`usage::between`): the view costs what `stats`
//! costs, with no sleeping window.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use codex_engine::engine::Engine;
use codex_engine::registry::{ContainerRecord, ContainerStatus};
use codex_engine::usage::{self, Sample};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

/// Samples kept per container: two minutes at one a second.
const HISTORY: usize = 120;
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortBy {
    Name,
    Cpu,
    Memory,
}

impl SortBy {
    fn next(self) -> SortBy {
        match self {
            SortBy::Name => SortBy::Cpu,
            SortBy::Cpu => SortBy::Memory,
            SortBy::Memory => SortBy::Name,
        }
    }
}

/// What one line shows.
#[derive(Debug, Clone, Default)]
struct Line1 {
    name: String,
    status: String,
    health: String,
    restarts: u32,
    cpu: VecDeque<f64>,
    mem: VecDeque<u64>,
}

struct View {
    lines: HashMap<String, Line1>,
    last: HashMap<String, Sample>,
    sort: SortBy,
    filter: String,
    typing: bool,
}

/// Restores the terminal however the view ends.
struct Screen(ratatui::DefaultTerminal);

impl Drop for Screen {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

pub(super) fn dashboard(eng: &Engine, interval: Duration) -> Result<i32> {
    if !std::io::stdout().is_terminal() {
        bail!("top without a container is a live view and needs a terminal: use `ps` or `stats --no-stream` in scripts, or `top NAME` for one container's processes");
    }
    let mut view = View {
        lines: HashMap::new(),
        last: HashMap::new(),
        sort: SortBy::Name,
        filter: String::new(),
        typing: false,
    };
    let mut screen = Screen(ratatui::init());
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            view.refresh(eng)?;
            next = Instant::now() + interval;
        }
        screen.0.draw(|f| view.render(f))?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(k) = event::read()? {
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                if view.typing {
                    match k.code {
                        KeyCode::Enter => view.typing = false,
                        KeyCode::Esc => {
                            view.typing = false;
                            view.filter.clear();
                        }
                        KeyCode::Backspace => {
                            view.filter.pop();
                        }
                        KeyCode::Char(c) => view.filter.push(c),
                        _ => {}
                    }
                    continue;
                }
                match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => break,
                    KeyCode::Char('s') => view.sort = view.sort.next(),
                    KeyCode::Char('/') => {
                        view.typing = true;
                        view.filter.clear();
                    }
                    _ => {}
                }
            }
        }
    }
    drop(screen);
    Ok(0)
}

impl View {
    fn refresh(&mut self, eng: &Engine) -> Result<()> {
        let recs = eng.list()?;
        let rt = eng.runtime();
        let host_mem = usage::host_memory();
        let ids: Vec<&str> = recs.iter().map(|r| r.id.as_str()).collect();
        self.lines.retain(|id, _| ids.contains(&id.as_str()));
        self.last.retain(|id, _| ids.contains(&id.as_str()));
        for r in &recs {
            let line = self.lines.entry(r.id.clone()).or_default();
            describe(line, r);
            if r.status != ContainerStatus::Running {
                self.last.remove(&r.id);
                continue;
            }
            let Ok(v) = rt.stats(&r.id) else { continue };
            let now = Sample {
                data: v["data"].clone(),
                at: Instant::now(),
            };
            if let Some(prev) = self.last.get(&r.id) {
                let u = usage::between(&r.id, &r.name, prev, &now, host_mem);
                push(&mut line.cpu, u.cpu_percent);
                push(&mut line.mem, u.memory_usage);
            }
            self.last.insert(r.id.clone(), now);
        }
        Ok(())
    }

    fn rows(&self) -> Vec<&Line1> {
        let mut rows: Vec<&Line1> = self
            .lines
            .values()
            .filter(|l| self.filter.is_empty() || l.name.contains(&self.filter))
            .collect();
        match self.sort {
            SortBy::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
            SortBy::Cpu => rows.sort_by(|a, b| {
                let (x, y) = (a.cpu.back().copied(), b.cpu.back().copied());
                y.unwrap_or(0.0).total_cmp(&x.unwrap_or(0.0))
            }),
            SortBy::Memory => rows.sort_by_key(|l| std::cmp::Reverse(l.mem.back().copied())),
        }
        rows
    }

    fn render(&self, f: &mut ratatui::Frame) {
        let [head, body] =
            Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(f.area());
        let filter = if self.typing {
            format!("  filter: {}_", self.filter)
        } else if self.filter.is_empty() {
            String::new()
        } else {
            format!("  filter: {}", self.filter)
        };
        let title = format!(
            "codex-ctr top — {} containers — sorted by {:?}{filter}",
            self.lines.len(),
            self.sort
        );
        f.render_widget(
            Paragraph::new(vec![
                Line::styled(title, Style::default().add_modifier(Modifier::BOLD)),
                Line::raw("q quit   s sort   / filter"),
            ]),
            head,
        );
        let header = Row::new(
            [
                "NAME", "STATUS", "HEALTH", "RESTARTS", "CPU %", "MEM", "CPU", "MEM",
            ]
            .map(Cell::from),
        )
        .style(Style::default().add_modifier(Modifier::REVERSED));
        let rows = self.rows().into_iter().map(|l| {
            Row::new(vec![
                Cell::from(l.name.clone()),
                Cell::from(l.status.clone()),
                Cell::from(l.health.clone()),
                Cell::from(l.restarts.to_string()),
                Cell::from(l.cpu.back().map_or("-".into(), |c| format!("{c:.1}"))),
                Cell::from(
                    l.mem
                        .back()
                        .map_or("-".into(), |m| super::listing::human(*m)),
                ),
                Cell::from(sparkline(l.cpu.iter().copied(), 20)),
                Cell::from(sparkline(l.mem.iter().map(|m| *m as f64), 20)),
            ])
        });
        let widths = [
            Constraint::Length(20),
            Constraint::Length(11),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(10),
            Constraint::Length(21),
            Constraint::Length(21),
        ];
        f.render_widget(Table::new(rows, widths).header(header), body);
    }
}

fn describe(line: &mut Line1, r: &ContainerRecord) {
    line.name = r.name.clone();
    line.status = r.status.to_string();
    line.health = r
        .health
        .as_ref()
        .map_or_else(|| "-".to_string(), |h| h.status.to_string());
    line.restarts = r.restart_count;
}

fn push<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == HISTORY {
        q.pop_front();
    }
    q.push_back(v);
}

/// The last `width` values as bars scaled to their maximum.
fn sparkline(values: impl DoubleEndedIterator<Item = f64>, width: usize) -> String {
    let mut last: Vec<f64> = values.rev().take(width).collect();
    last.reverse();
    let max = last.iter().copied().fold(0.0, f64::max);
    last.iter()
        .map(|v| {
            if max <= 0.0 {
                BARS[0]
            } else {
                let i = ((v / max) * (BARS.len() - 1) as f64).round() as usize;
                BARS[i.min(BARS.len() - 1)]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_to_their_maximum_and_keep_the_newest() {
        assert_eq!(sparkline([0.0, 50.0, 100.0].into_iter(), 10), "▁▅█");
        assert_eq!(sparkline([0.0, 0.0].into_iter(), 10), "▁▁");
        assert_eq!(sparkline((0..30).map(f64::from), 3).chars().count(), 3);
        assert!(sparkline((0..30).map(f64::from), 3).ends_with('█'));
    }

    #[test]
    fn history_is_bounded() {
        let mut q = VecDeque::new();
        for i in 0..(HISTORY + 5) {
            push(&mut q, i);
        }
        assert_eq!(q.len(), HISTORY);
        assert_eq!(q.front(), Some(&5));
    }
}
