//! `memwatch top`: the terminal observer. [`App`] holds the whole state and
//! is driven by [`App::tick`] (a new sample) and [`App::key`] (a key press);
//! [`App::draw`] renders it. Only the rows that fit the screen are built per
//! frame, so 10 000 fields cost no more to draw than 40.

use crate::model::{Kind, Liveness, Schema, SessionMeta, Source, Tracker};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, Wrap};
use ratatui::Frame;
use std::time::{Duration, Instant};

/// How long a changed value stays highlighted, fading in three steps.
pub const FADE: Duration = Duration::from_millis(1500);
/// Fastest and slowest refresh that `+`/`-` reach.
const REFRESH_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(10));

/// One visible line of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RowRef {
    Object(usize),
    Field(usize),
}

/// What the keys currently do.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    Normal,
    /// Typing a filter (the text typed so far).
    Filter(String),
    /// Looking at the bytes of an object.
    Hex(usize),
    Help,
}

/// The TUI's state: the session's schema, the latest sample and its history,
/// and what the user selected, filtered, watches and expanded.
pub struct App {
    source: Box<dyn Source>,
    meta: SessionMeta,
    schema: Schema,
    full_paths: Vec<String>,
    /// Field index by `label.path` (for the watch list).
    by_path: std::collections::HashMap<String, usize>,
    tracker: Tracker,
    liveness: Liveness,
    expanded: Vec<bool>,
    rows: Vec<RowRef>,
    selected: usize,
    scroll: usize,
    filter: String,
    mode: Mode,
    watch: Vec<String>,
    hex: Option<Vec<Option<u8>>>,
    /// First hex row shown (objects taller than the screen scroll).
    hex_scroll: usize,
    /// Sampling stopped by the user.
    pub paused: bool,
    /// Time between samples.
    pub refresh: Duration,
    /// Set when the user asked to quit.
    pub quit: bool,
    error: Option<String>,
    last_height: usize,
}

impl App {
    /// A TUI over `source`, sampling every `refresh`; objects start expanded
    /// when there are at most `expand_limit` fields in all.
    pub fn new(mut source: Box<dyn Source>, refresh: Duration) -> anyhow::Result<App> {
        let schema = match source.refresh()? {
            Some(s) => s,
            None => source.schema().clone(),
        };
        let meta = source.meta();
        let mut app = App {
            source,
            meta,
            schema: Schema::default(),
            full_paths: Vec::new(),
            by_path: Default::default(),
            tracker: Tracker::default(),
            liveness: Liveness::Alive,
            expanded: Vec::new(),
            rows: Vec::new(),
            selected: 0,
            scroll: 0,
            filter: String::new(),
            mode: Mode::Normal,
            watch: Vec::new(),
            hex: None,
            hex_scroll: 0,
            paused: false,
            refresh,
            quit: false,
            error: None,
            last_height: 20,
        };
        app.set_schema(schema);
        app.sample(Instant::now());
        Ok(app)
    }

    fn set_schema(&mut self, schema: Schema) {
        let small = schema.fields.len() <= 200;
        let old: std::collections::HashMap<String, bool> = self
            .schema
            .objects
            .iter()
            .zip(&self.expanded)
            .map(|(o, e)| (o.label.clone(), *e))
            .collect();
        self.expanded =
            schema.objects.iter().map(|o| old.get(&o.label).copied().unwrap_or(small)).collect();
        self.full_paths = (0..schema.fields.len()).map(|i| schema.full_path(i)).collect();
        self.by_path = self.full_paths.iter().enumerate().map(|(i, p)| (p.clone(), i)).collect();
        self.tracker.reset(schema.fields.len());
        self.schema = schema;
        self.rebuild_rows();
    }

    /// Rebuilds the list of visible rows after a change of schema, filter or
    /// expansion, keeping the selection on the same row where it can.
    fn rebuild_rows(&mut self) {
        let keep = self.rows.get(self.selected).copied();
        self.rows.clear();
        let needle = self.filter.to_lowercase();
        for (oi, o) in self.schema.objects.iter().enumerate() {
            if needle.is_empty() {
                self.rows.push(RowRef::Object(oi));
                if self.expanded[oi] {
                    self.rows.extend(o.fields.clone().map(RowRef::Field));
                }
            } else {
                let hits: Vec<usize> = o
                    .fields
                    .clone()
                    .filter(|&f| self.full_paths[f].to_lowercase().contains(&needle))
                    .collect();
                if !hits.is_empty() {
                    self.rows.push(RowRef::Object(oi));
                    self.rows.extend(hits.into_iter().map(RowRef::Field));
                }
            }
        }
        self.selected = keep
            .and_then(|k| self.rows.iter().position(|r| *r == k))
            .unwrap_or(self.selected.min(self.rows.len().saturating_sub(1)));
    }

    fn sample(&mut self, now: Instant) {
        let dead = self.source.liveness() == Liveness::Dead;
        match self.source.refresh() {
            Ok(Some(s)) => {
                // New objects, or a restarted producer of the same session.
                self.meta = self.source.meta();
                self.set_schema(s);
            }
            // Keep what the producer showed last: frozen, and marked DEAD.
            Ok(None) if dead && self.tracker.samples > 0 => {
                self.liveness = Liveness::Dead;
                return;
            }
            Ok(None) => {}
            Err(e) => {
                self.error = Some(format!("{e:#}"));
                return;
            }
        }
        self.liveness = self.source.liveness();
        // Start from the current values: a torn field keeps its last one.
        let mut s = self.tracker.current.clone();
        match self.source.sample(&mut s) {
            Ok(()) => {
                self.error = None;
                self.tracker.update(s, now);
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
        if let Mode::Hex(o) = self.mode {
            self.hex = self.source.object_bytes(o);
        }
    }

    /// Takes a new sample unless paused (called every `refresh`).
    pub fn tick(&mut self, now: Instant) {
        if !self.paused {
            self.sample(now);
        }
    }

    fn selected_field(&self) -> Option<usize> {
        match self.rows.get(self.selected) {
            Some(RowRef::Field(f)) => Some(*f),
            _ => None,
        }
    }

    fn selected_object(&self) -> Option<usize> {
        match self.rows.get(self.selected)? {
            RowRef::Object(o) => Some(*o),
            RowRef::Field(f) => Some(self.schema.fields[*f].object),
        }
    }

    fn move_to(&mut self, i: isize) {
        let max = self.rows.len().saturating_sub(1) as isize;
        self.selected = i.clamp(0, max) as usize;
    }

    fn set_expanded(&mut self, o: usize, e: bool) {
        if self.filter.is_empty() && self.expanded[o] != e {
            self.expanded[o] = e;
            self.rows.truncate(self.selected + 1);
            self.rebuild_rows();
        }
    }

    /// Handles one key press.
    pub fn key(&mut self, k: KeyEvent) {
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        match self.mode.clone() {
            Mode::Filter(mut text) => match k.code {
                KeyCode::Enter => {
                    self.filter = text;
                    self.mode = Mode::Normal;
                    self.selected = 0;
                    self.rebuild_rows();
                }
                KeyCode::Esc => self.mode = Mode::Normal,
                KeyCode::Backspace => {
                    text.pop();
                    self.mode = Mode::Filter(text);
                }
                KeyCode::Char(c) => {
                    text.push(c);
                    self.mode = Mode::Filter(text);
                }
                _ => {}
            },
            Mode::Hex(_) | Mode::Help => match k.code {
                KeyCode::Esc | KeyCode::Char('q') | KeyCode::Char('x') | KeyCode::Char('?') => {
                    self.mode = Mode::Normal;
                    self.hex = None;
                    self.hex_scroll = 0;
                }
                KeyCode::Down | KeyCode::Char('j') => self.hex_scroll += 1,
                KeyCode::Up | KeyCode::Char('k') => {
                    self.hex_scroll = self.hex_scroll.saturating_sub(1)
                }
                KeyCode::PageDown => self.hex_scroll += 16,
                KeyCode::PageUp => self.hex_scroll = self.hex_scroll.saturating_sub(16),
                _ => {}
            },
            Mode::Normal => self.key_normal(k.code),
        }
    }

    fn key_normal(&mut self, code: KeyCode) {
        let page = self.last_height.max(1) as isize;
        let sel = self.selected as isize;
        match code {
            KeyCode::Char('q') => self.quit = true,
            KeyCode::Down | KeyCode::Char('j') => self.move_to(sel + 1),
            KeyCode::Up | KeyCode::Char('k') => self.move_to(sel - 1),
            KeyCode::PageDown => self.move_to(sel + page),
            KeyCode::PageUp => self.move_to(sel - page),
            KeyCode::Home | KeyCode::Char('g') => self.move_to(0),
            KeyCode::End | KeyCode::Char('G') => self.move_to(isize::MAX / 2),
            KeyCode::Enter => {
                if let Some(RowRef::Object(o)) = self.rows.get(self.selected).copied() {
                    let e = !self.expanded[o];
                    self.set_expanded(o, e);
                }
            }
            KeyCode::Right | KeyCode::Char('l') => {
                if let Some(RowRef::Object(o)) = self.rows.get(self.selected).copied() {
                    self.set_expanded(o, true);
                }
            }
            KeyCode::Left | KeyCode::Char('h') => match self.rows.get(self.selected).copied() {
                Some(RowRef::Object(o)) => self.set_expanded(o, false),
                Some(RowRef::Field(f)) => {
                    let o = self.schema.fields[f].object;
                    if let Some(i) = self.rows.iter().position(|r| *r == RowRef::Object(o)) {
                        self.selected = i;
                    }
                }
                None => {}
            },
            KeyCode::Char('e') | KeyCode::Char('c') => {
                let e = code == KeyCode::Char('e');
                self.expanded.iter_mut().for_each(|x| *x = e);
                self.rebuild_rows();
            }
            KeyCode::Char('/') => self.mode = Mode::Filter(self.filter.clone()),
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.rebuild_rows();
            }
            KeyCode::Char('w') => {
                if let Some(f) = self.selected_field() {
                    let p = self.full_paths[f].clone();
                    if let Some(i) = self.watch.iter().position(|w| *w == p) {
                        self.watch.remove(i);
                    } else {
                        self.watch.push(p);
                    }
                }
            }
            KeyCode::Char('x') => {
                if let Some(o) = self.selected_object() {
                    self.hex = self.source.object_bytes(o);
                    self.mode = Mode::Hex(o);
                }
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Char('+') | KeyCode::Char('=') => {
                self.refresh = (self.refresh / 2).max(REFRESH_RANGE.0);
            }
            KeyCode::Char('-') => self.refresh = (self.refresh * 2).min(REFRESH_RANGE.1),
            KeyCode::Char('?') => self.mode = Mode::Help,
            _ => {}
        }
    }

    fn value_text(&self, f: usize) -> String {
        let v = &self.tracker.current.values[f];
        let unit = &self.schema.fields[f].unit;
        if unit.is_empty() {
            v.to_string()
        } else {
            format!("{v} {unit}")
        }
    }

    /// Style of a value cell: highlighted for [`FADE`] after a change, fading.
    fn change_style(&self, f: usize, now: Instant) -> Style {
        match self.tracker.changed_at[f].map(|t| now.saturating_duration_since(t)) {
            Some(age) if age < FADE / 3 => {
                Style::new().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD)
            }
            Some(age) if age < FADE * 2 / 3 => {
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
            }
            Some(age) if age < FADE => Style::new().fg(Color::Yellow),
            _ => Style::new(),
        }
    }

    fn spark(&self, f: usize, width: usize) -> String {
        const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let h = &self.tracker.history[f];
        let tail: Vec<f64> = h.iter().skip(h.len().saturating_sub(width)).copied().collect();
        let (lo, hi) = tail.iter().fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        tail.iter()
            .map(|&v| {
                if hi > lo {
                    BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
                } else {
                    BARS[0]
                }
            })
            .collect()
    }

    /// Renders the whole screen.
    pub fn draw(&mut self, frame: &mut Frame, now: Instant) {
        let area = frame.area();
        let side = !self.watch.is_empty() || self.selected_field().is_some();
        let [header, body, footer] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)])
                .areas(area);
        frame.render_widget(Paragraph::new(self.header_line()), header);
        let (tree_area, side_area) = if side && body.width >= 80 {
            let [a, b] =
                Layout::horizontal([Constraint::Min(40), Constraint::Length(38)]).areas(body);
            (a, Some(b))
        } else {
            (body, None)
        };
        self.draw_tree(frame, tree_area, now);
        if let Some(s) = side_area {
            self.draw_side(frame, s, now);
        }
        frame.render_widget(Paragraph::new(self.footer_line()), footer);
        match self.mode {
            Mode::Hex(o) => self.draw_hex(frame, area, o),
            Mode::Help => draw_help(frame, area),
            _ => {}
        }
    }

    fn header_line(&self) -> Line<'static> {
        let live = match self.liveness {
            Liveness::Alive => {
                Span::styled(" ALIVE ", Style::new().fg(Color::Black).bg(Color::Green))
            }
            Liveness::Stale => Span::styled(
                " STALE: producer's heartbeat stopped ",
                Style::new().fg(Color::Black).bg(Color::LightRed).add_modifier(Modifier::BOLD),
            ),
            Liveness::Dead => Span::styled(
                " DEAD: producer gone, values frozen ",
                Style::new().fg(Color::White).bg(Color::Red).add_modifier(Modifier::BOLD),
            ),
        };
        let mut spans = vec![
            Span::styled(
                format!(" {} ", self.meta.name),
                Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED),
            ),
            Span::raw(format!(" pid {} ", self.meta.pid)),
            live,
            Span::raw(format!(
                " {} objects  {} fields  refresh {} ms ",
                self.schema.objects.len(),
                self.schema.fields.len(),
                self.refresh.as_millis()
            )),
        ];
        if self.paused {
            spans.push(Span::styled(" PAUSED ", Style::new().fg(Color::Black).bg(Color::Cyan)));
        }
        if !self.filter.is_empty() {
            spans.push(Span::raw(format!(" filter: {} ", self.filter)));
        }
        if let Some(e) = &self.error {
            spans.push(Span::styled(format!(" {e} "), Style::new().fg(Color::Red)));
        }
        Line::from(spans)
    }

    fn footer_line(&self) -> Line<'static> {
        match &self.mode {
            Mode::Filter(t) => Line::from(vec![
                Span::styled(" filter path: ", Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(format!("{t}_")),
                Span::raw("   Enter apply  Esc cancel"),
            ]),
            _ => Line::from(Span::styled(
                " ? help  ↑↓ move  Enter/←→ fold  / filter  w watch  x hex  p pause  +/- refresh  q quit",
                Style::new().add_modifier(Modifier::DIM),
            )),
        }
    }

    fn draw_tree(&mut self, frame: &mut Frame, area: Rect, now: Instant) {
        let block = Block::new().borders(Borders::TOP).title(" objects ");
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let height = inner.height as usize;
        self.last_height = height;
        if self.selected < self.scroll {
            self.scroll = self.selected;
        } else if height > 0 && self.selected >= self.scroll + height {
            self.scroll = self.selected + 1 - height;
        }
        self.scroll = self.scroll.min(self.rows.len().saturating_sub(height));
        let end = (self.scroll + height).min(self.rows.len());
        let rows: Vec<Row> = (self.scroll..end)
            .map(|ri| {
                let sel = ri == self.selected;
                let row = match self.rows[ri] {
                    RowRef::Object(o) => {
                        let m = &self.schema.objects[o];
                        let mark =
                            if !self.filter.is_empty() || self.expanded[o] { '▾' } else { '▸' };
                        Row::new(vec![
                            Cell::from(format!("{mark} {}", m.label))
                                .style(Style::new().add_modifier(Modifier::BOLD)),
                            Cell::from(format!("{} ({} fields)", m.type_name, m.fields.len())),
                            Cell::from(""),
                            Cell::from(""),
                        ])
                    }
                    RowRef::Field(f) => {
                        let meta = &self.schema.fields[f];
                        let torn = self.tracker.current.torn[f];
                        let watched = self.watch.contains(&self.full_paths[f]);
                        let flags = format!(
                            "{}{}",
                            if torn { "TORN " } else { "" },
                            if watched { "★" } else { "" }
                        );
                        Row::new(vec![
                            Cell::from(format!("    {}", meta.path)),
                            Cell::from(self.value_text(f)).style(self.change_style(f, now)),
                            Cell::from(flags).style(Style::new().fg(Color::Red)),
                            Cell::from(if meta.kind.is_some() {
                                self.spark(f, 12)
                            } else {
                                String::new()
                            })
                            .style(Style::new().fg(Color::Cyan)),
                        ])
                    }
                };
                if sel {
                    row.style(Style::new().add_modifier(Modifier::REVERSED))
                } else {
                    row
                }
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Percentage(40),
                Constraint::Percentage(35),
                Constraint::Length(6),
                Constraint::Length(12),
            ],
        );
        frame.render_widget(table, inner);
    }

    fn draw_side(&self, frame: &mut Frame, area: Rect, now: Instant) {
        let watch_h = if self.watch.is_empty() {
            0
        } else {
            (self.watch.len() as u16 + 2).min(area.height / 2)
        };
        let [w, d] =
            Layout::vertical([Constraint::Length(watch_h), Constraint::Min(0)]).areas(area);
        if watch_h > 0 {
            let lines: Vec<Line> = self
                .watch
                .iter()
                .map(|p| match self.by_path.get(p).copied() {
                    Some(f) => Line::from(vec![
                        Span::raw(format!("{p} ")),
                        Span::styled(self.value_text(f), self.change_style(f, now)),
                    ]),
                    None => {
                        Line::from(Span::styled(format!("{p} (gone)"), Style::new().fg(Color::Red)))
                    }
                })
                .collect();
            frame.render_widget(
                Paragraph::new(lines).block(Block::bordered().title(" watch list ")),
                w,
            );
        }
        let Some(f) = self.selected_field() else { return };
        let m = &self.schema.fields[f];
        let kind = match m.kind {
            Some(Kind::Counter) => "counter",
            Some(Kind::Gauge) => "gauge",
            None => "-",
        };
        let mut text = vec![
            Line::from(Span::styled(
                self.full_paths[f].clone(),
                Style::new().add_modifier(Modifier::BOLD),
            )),
            Line::from(format!("value  {}", self.value_text(f))),
            Line::from(format!("type   {} ({} B at +{})", m.ty, m.size, m.offset)),
            Line::from(format!("atomic {}   kind {kind}", m.atomicity)),
        ];
        if !m.unit.is_empty() {
            text.push(Line::from(format!("unit   {}", m.unit)));
        }
        if !m.help.is_empty() {
            text.push(Line::from(format!("help   {}", m.help)));
        }
        if self.tracker.current.torn[f] {
            text.push(Line::from(Span::styled(
                "torn: writer kept the seqlock busy; last consistent value shown",
                Style::new().fg(Color::Red),
            )));
        }
        let block = Block::bordered().title(" field ");
        let inner = block.inner(d);
        frame.render_widget(block, d);
        let th = (text.len() as u16 + 1).min(inner.height);
        let [t, s] = Layout::vertical([Constraint::Length(th), Constraint::Min(0)]).areas(inner);
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), t);
        let h = &self.tracker.history[f];
        if m.kind.is_some() && !h.is_empty() && s.height > 0 {
            let (lo, hi) = h.iter().fold((f64::MAX, f64::MIN), |(l, x), &v| (l.min(v), x.max(v)));
            let pts: Vec<u64> = h
                .iter()
                .skip(h.len().saturating_sub(s.width as usize))
                .map(|&v| if hi > lo { 1 + ((v - lo) / (hi - lo) * 99.0) as u64 } else { 1 })
                .collect();
            frame.render_widget(
                Sparkline::default().data(&pts).max(100).style(Style::new().fg(Color::Cyan)),
                s,
            );
        }
    }

    fn draw_hex(&self, frame: &mut Frame, area: Rect, o: usize) {
        let m = &self.schema.objects[o];
        let sel = self.selected_field().filter(|f| self.schema.fields[*f].object == o);
        let range = sel.map(|f| {
            let fm = &self.schema.fields[f];
            fm.offset..fm.offset + fm.size
        });
        let mut lines = Vec::new();
        match &self.hex {
            None => lines.push(Line::from("object gone")),
            Some(bytes) => {
                for (row, chunk) in bytes.chunks(16).enumerate() {
                    let mut spans = vec![Span::styled(
                        format!("{:06x}  ", row * 16),
                        Style::new().add_modifier(Modifier::DIM),
                    )];
                    for (i, b) in chunk.iter().enumerate() {
                        let off = row * 16 + i;
                        let st = if range.as_ref().is_some_and(|r| r.contains(&off)) {
                            Style::new().fg(Color::Black).bg(Color::Cyan)
                        } else {
                            Style::new()
                        };
                        let txt = b.map_or_else(|| "··".to_string(), |b| format!("{b:02x}"));
                        spans.push(Span::styled(txt, st));
                        spans.push(Span::raw(if i == 7 { "  " } else { " " }));
                    }
                    let pad = 16 - chunk.len();
                    spans.push(Span::raw(" ".repeat(pad * 3 + usize::from(chunk.len() <= 7))));
                    let ascii: String = chunk
                        .iter()
                        .map(|b| match b {
                            Some(b) if b.is_ascii_graphic() || *b == b' ' => *b as char,
                            _ => '.',
                        })
                        .collect();
                    spans.push(Span::raw(format!(" |{ascii}|")));
                    lines.push(Line::from(spans));
                }
            }
        }
        let w = 80.min(area.width);
        let h = (lines.len() as u16 + 2).min(area.height);
        let r = Rect::new(area.x + (area.width - w) / 2, area.y + (area.height - h) / 2, w, h);
        let rows = h.saturating_sub(2) as usize;
        let top = self.hex_scroll.min(lines.len().saturating_sub(rows));
        let more = if lines.len() > rows { "  ↑↓ scroll" } else { "" };
        frame.render_widget(Clear, r);
        frame.render_widget(
            Paragraph::new(lines).scroll((top as u16, 0)).block(Block::bordered().title(format!(
                " hex: {} ({}, {} bytes)  Esc close{more} ",
                m.label, m.type_name, m.size
            ))),
            r,
        );
    }
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let keys = [
        ("↑/k ↓/j", "move; PgUp/PgDn, g/G: page, top, bottom"),
        ("Enter", "expand or collapse the object"),
        ("→/l ←/h", "expand / collapse (← on a field: go to its object)"),
        ("e / c", "expand all / collapse all"),
        ("/", "filter by path (substring); Esc clears it"),
        ("w", "add or remove the field from the watch list"),
        ("x", "hex view of the object (selected field highlighted; ↑↓ scroll)"),
        ("p / space", "pause or resume sampling"),
        ("+ / -", "refresh faster / slower"),
        ("?", "this help; Esc closes it"),
        ("q", "quit"),
    ];
    let mut lines: Vec<Line> = keys
        .iter()
        .map(|(k, d)| {
            Line::from(vec![
                Span::styled(format!("{k:>10}  "), Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(*d),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from("Yellow: changed in the last 1.5 s. TORN: a seqlock read kept tearing."));
    let w = 72.min(area.width);
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = Rect::new(area.x + (area.width - w) / 2, area.y + (area.height - h) / 2, w, h);
    frame.render_widget(Clear, r);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" keys ")), r);
}

/// Runs the TUI on the terminal until the user quits.
pub fn run(source: Box<dyn Source>, refresh: Duration) -> anyhow::Result<()> {
    use crossterm::event::{self, Event, KeyEventKind};
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "memwatch top needs a terminal (stdin and stdout); in scripts and pipes use \
             `memwatch events SESSION --json`, or `memwatch serve` for a browser"
        );
    }
    let mut app = App::new(source, refresh)?;
    let mut terminal =
        ratatui::try_init().map_err(|e| anyhow::anyhow!("cannot set up the terminal: {e}"))?;
    let result = (|| -> anyhow::Result<()> {
        let mut next = Instant::now() + app.refresh;
        loop {
            let now = Instant::now();
            terminal.draw(|f| app.draw(f, now))?;
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait)? {
                if let Event::Key(k) = event::read()? {
                    if k.kind != KeyEventKind::Release {
                        app.key(k);
                    }
                }
                if app.quit {
                    return Ok(());
                }
            }
            if Instant::now() >= next {
                app.tick(Instant::now());
                next = Instant::now() + app.refresh;
            }
        }
    })();
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use crate::testing::FakeSource;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(app: &mut App, now: Instant) -> (String, ratatui::buffer::Buffer) {
        let mut t = Terminal::new(TestBackend::new(120, 30)).unwrap();
        t.draw(|f| app.draw(f, now)).unwrap();
        let buf = t.backend().buffer().clone();
        let text = (0..buf.area.height)
            .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n");
        (text, buf)
    }

    fn key(app: &mut App, c: KeyCode) {
        app.key(KeyEvent::new(c, KeyModifiers::NONE));
    }

    fn typed(app: &mut App, s: &str) {
        for c in s.chars() {
            key(app, KeyCode::Char(c));
        }
    }

    #[test]
    fn shows_values_and_highlights_a_change() {
        let (src, h) = FakeSource::quotes(2);
        let mut app = App::new(Box::new(src), Duration::from_millis(100)).unwrap();
        let now = Instant::now();
        let (text, _) = screen(&mut app, now);
        assert!(text.contains("obj0"), "{text}");
        assert!(text.contains("bid"));
        assert!(text.contains("1.5 USD"), "{text}");
        h.set(1, Value::Float(2.25));
        app.tick(now);
        let (text, buf) = screen(&mut app, now);
        let y = text.lines().position(|l| l.contains("2.25 USD")).expect("new value shown");
        let x = text.lines().nth(y).unwrap().find("2.25").unwrap();
        // Column index in chars: the line is ASCII up to the value.
        assert_eq!(buf[(x as u16, y as u16)].bg, Color::Yellow);
        // After the fade the highlight is gone.
        let (_, buf) = screen(&mut app, now + FADE);
        assert_eq!(buf[(x as u16, y as u16)].bg, Color::Reset);
    }

    #[test]
    fn filter_watch_hex_pause_and_help() {
        let (src, h) = FakeSource::quotes(3);
        let mut app = App::new(Box::new(src), Duration::from_millis(100)).unwrap();
        let now = Instant::now();
        key(&mut app, KeyCode::Char('/'));
        typed(&mut app, "obj2.ask");
        key(&mut app, KeyCode::Enter);
        let (text, _) = screen(&mut app, now);
        assert!(text.contains("filter: obj2.ask"));
        assert!(!text.contains("obj1"), "{text}");
        assert_eq!(app.rows.len(), 2, "the object and its one matching field");
        key(&mut app, KeyCode::Down);
        key(&mut app, KeyCode::Char('w'));
        assert_eq!(app.watch, ["obj2.ask"]);
        let (text, _) = screen(&mut app, now);
        assert!(text.contains("watch list"));
        key(&mut app, KeyCode::Char('x'));
        let (text, _) = screen(&mut app, now);
        assert!(text.contains("hex: obj2 (Quote, 24 bytes)"), "{text}");
        // ask = 2.5f64 = 0x4004000000000000, little-endian at offset 8.
        assert!(
            text.contains("000000  00 00 00 00 00 00 f8 3f  00 00 00 00 00 00 04 40"),
            "{text}"
        );
        key(&mut app, KeyCode::Esc);
        key(&mut app, KeyCode::Char('p'));
        h.set(7, Value::Float(9.0)); // obj2.ask
        app.tick(now);
        let (text, _) = screen(&mut app, now);
        assert!(text.contains("PAUSED") && !text.contains("9 USD"), "{text}");
        key(&mut app, KeyCode::Char('p'));
        app.tick(now);
        let (text, _) = screen(&mut app, now);
        assert!(text.contains("9 USD"), "{text}");
        key(&mut app, KeyCode::Char('?'));
        let (text, _) = screen(&mut app, now);
        assert!(text.contains("keys") && text.contains("watch list"));
        key(&mut app, KeyCode::Esc);
        key(&mut app, KeyCode::Char('+'));
        assert_eq!(app.refresh, Duration::from_millis(50));
        key(&mut app, KeyCode::Char('q'));
        assert!(app.quit);
    }

    #[test]
    fn collapse_expand_dead_and_torn() {
        let (src, h) = FakeSource::quotes(2);
        let mut app = App::new(Box::new(src), Duration::from_millis(100)).unwrap();
        assert_eq!(app.rows.len(), 8);
        key(&mut app, KeyCode::Char('c'));
        assert_eq!(app.rows.len(), 2);
        key(&mut app, KeyCode::Down);
        key(&mut app, KeyCode::Enter);
        assert_eq!(app.rows.len(), 5);
        assert_eq!(app.rows[1], RowRef::Object(1));
        h.tear(4);
        h.set(4, Value::Float(8.25)); // not readable: the last value stays
        app.tick(Instant::now());
        let (text, _) = screen(&mut app, Instant::now());
        assert!(text.contains("TORN"), "{text}");
        let torn = text.lines().find(|l| l.contains("TORN")).unwrap();
        assert!(torn.contains("ask") && torn.contains("2.5 USD"), "{text}");
        assert!(!text.contains("8.25"), "{text}");
        assert!(text.contains("ALIVE") && !text.contains("DEAD"), "{text}");
        // A dead producer's last values stay on screen, frozen.
        h.kill();
        h.set(3, Value::Float(7.5));
        app.tick(Instant::now());
        let (text, _) = screen(&mut app, Instant::now());
        assert!(text.contains("DEAD"), "{text}");
        assert!(text.contains("1.5 USD") && !text.contains("7.5 USD"), "{text}");
    }

    #[test]
    fn tiny_terminals_and_tall_hex_views_do_not_break() {
        let (src, _h) = FakeSource::many(200);
        let mut app = App::new(Box::new(src), Duration::from_millis(100)).unwrap();
        let now = Instant::now();
        for (w, h) in [(1, 1), (20, 4), (40, 10)] {
            let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
            t.draw(|f| app.draw(f, now)).unwrap();
            key(&mut app, KeyCode::Char('x'));
            t.draw(|f| app.draw(f, now)).unwrap();
            key(&mut app, KeyCode::Esc);
            key(&mut app, KeyCode::Char('?'));
            t.draw(|f| app.draw(f, now)).unwrap();
            key(&mut app, KeyCode::Esc);
        }
        // 800 bytes = 50 hex rows in a 30-row screen: scrolling reaches the end.
        key(&mut app, KeyCode::Char('x'));
        for _ in 0..100 {
            key(&mut app, KeyCode::Down);
        }
        let (text, _) = screen(&mut app, now);
        assert!(text.contains("000310  "), "{text}"); // the last row, offset 784
        assert!(!text.contains("000000  "), "{text}");
    }

    #[test]
    fn ten_thousand_fields_draw_only_visible_rows() {
        let (src, _h) = FakeSource::many(10_000);
        let mut app = App::new(Box::new(src), Duration::from_millis(100)).unwrap();
        key(&mut app, KeyCode::Char('e'));
        assert_eq!(app.rows.len(), 10_000 + 100);
        key(&mut app, KeyCode::End);
        let (text, _) = screen(&mut app, Instant::now());
        assert!(text.contains("f99"), "{text}");
        assert_eq!(app.selected, 10_099);
    }
}
