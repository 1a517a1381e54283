//! Charts, drawn once per backend: PNG for the README and SVG for zooming.
//! The font ships with the crate (DejaVu Sans), so charts render the same on
//! any machine, with or without system fonts.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentedCoord;
use plotters::coord::types::{RangedCoordf64, RangedCoordusize};
use plotters::prelude::*;

const FONT: &str = "sans-serif";
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Make the bundled font the one charts use. Call once before drawing.
pub fn init_fonts() -> anyhow::Result<()> {
    plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU_SANS)
        .map_err(|_| anyhow::anyhow!("the bundled font does not load"))
}

/// Something that can draw itself on any plotters backend.
pub trait Chart {
    fn size(&self) -> (u32, u32) {
        (900, 500)
    }
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// Write `chart` as `<dir>/<stem>.png` and `<dir>/<stem>.svg`.
pub fn save(chart: &impl Chart, dir: &Path, stem: &str) -> anyhow::Result<()> {
    let size = chart.size();
    let png = dir.join(format!("{stem}.png"));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!(err(e)))?;
        chart
            .draw(&root)
            .map_err(|e| anyhow::anyhow!("{stem}.png: {e}"))?;
        root.present().map_err(|e| anyhow::anyhow!(err(e)))?;
    }
    let svg = dir.join(format!("{stem}.svg"));
    let root = SVGBackend::new(&svg, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!(err(e)))?;
    chart
        .draw(&root)
        .map_err(|e| anyhow::anyhow!("{stem}.svg: {e}"))?;
    root.present().map_err(|e| anyhow::anyhow!(err(e)))?;
    Ok(())
}

/// The series legend, the same on every chart.
fn legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: plotters::coord::CoordTranslate,
{
    chart
        .configure_series_labels()
        .label_font((FONT, 13))
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)
}

/// The x range of a chart against N: the first to the last N, with a
/// margin so the end points are not on the frame.
fn n_axis(n: &[u32]) -> (f64, f64) {
    (
        f64::from(n.first().copied().unwrap_or(1)) - 0.3,
        f64::from(n.last().copied().unwrap_or(1)) + 0.3,
    )
}

fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    COLORS[i % COLORS.len()]
}

/// Requests per replica, with the fair share as a dashed line.
pub struct Bars {
    pub title: String,
    pub labels: Vec<String>,
    pub values: Vec<u64>,
    pub fair_share: Option<f64>,
}

impl Chart for Bars {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let n = self.values.len().max(1);
        let top = self.values.iter().copied().max().unwrap_or(1).max(1) as f64;
        let top = top.max(self.fair_share.unwrap_or(0.0)) * 1.15;
        let mut chart = labelled_bars(area, &self.title, &self.labels, top, "requests", Some(0))?;
        chart
            .draw_series(self.values.iter().enumerate().map(|(i, &v)| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), v as f64),
                    ],
                    color(i).filled(),
                );
                bar.set_margin(0, 0, 10, 10);
                bar
            }))
            .map_err(err)?;
        let total: u64 = self.values.iter().sum();
        chart
            .draw_series(self.values.iter().enumerate().map(|(i, &v)| {
                let share = if total > 0 {
                    100.0 * v as f64 / total as f64
                } else {
                    0.0
                };
                Text::new(
                    format!("{v} ({share:.1}%)"),
                    (SegmentValue::CenterOf(i), v as f64 + top * 0.02),
                    TextStyle::from((FONT, 13).into_font()).pos(text_anchor_bottom()),
                )
            }))
            .map_err(err)?;
        if let Some(fair) = self.fair_share {
            chart
                .draw_series(DashedLineSeries::new(
                    [
                        (SegmentValue::Exact(0), fair),
                        (SegmentValue::Exact(n), fair),
                    ],
                    8,
                    5,
                    BLACK.stroke_width(2),
                ))
                .map_err(err)?
                .label(format!("fair share ({fair:.0})"))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2))
                });
            legend(&mut chart)?;
        }
        Ok(())
    }
}

fn text_anchor_bottom() -> plotters::style::text_anchor::Pos {
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    Pos::new(HPos::Center, VPos::Bottom)
}

/// Per-replica load against N: mean line, min–max band, fair share.
pub struct Band {
    pub title: String,
    pub n: Vec<u32>,
    pub mean: Vec<f64>,
    pub min: Vec<f64>,
    pub max: Vec<f64>,
}

impl Chart for Band {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (lo, hi) = n_axis(&self.n);
        let top = self.max.iter().copied().fold(1.0, f64::max) * 1.12;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(lo..hi, 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(self.n.len())
            .x_label_formatter(&|x| format!("N = {x:.0}"))
            .y_desc("requests per replica")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let xs: Vec<f64> = self.n.iter().map(|&n| f64::from(n)).collect();
        let mut band: Vec<(f64, f64)> = xs.iter().copied().zip(self.max.iter().copied()).collect();
        band.extend(xs.iter().copied().zip(self.min.iter().copied()).rev());
        chart
            .draw_series(std::iter::once(Polygon::new(band, color(0).mix(0.18))))
            .map_err(err)?
            .label("min – max replica")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 20, y + 5)], color(0).mix(0.3).filled())
            });
        for (series, name, style) in [
            (&self.max, "busiest replica", color(3).stroke_width(2)),
            (&self.min, "idlest replica", color(2).stroke_width(2)),
        ] {
            chart
                .draw_series(LineSeries::new(
                    xs.iter().copied().zip(series.iter().copied()),
                    style,
                ))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .draw_series(LineSeries::new(
                xs.iter().copied().zip(self.mean.iter().copied()),
                color(0).stroke_width(3),
            ))
            .map_err(err)?
            .label("mean = fair share (total / N)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color(0).stroke_width(3)));
        chart
            .draw_series(
                xs.iter()
                    .zip(&self.mean)
                    .map(|(&x, &m)| Circle::new((x, m), 4, color(0).filled())),
            )
            .map_err(err)?;
        legend(&mut chart)?;
        Ok(())
    }
}

/// Requests per replica per time bucket around an event.
pub struct Timeline {
    pub title: String,
    /// Bucket start times, seconds relative to the event.
    pub t: Vec<f64>,
    /// (label, requests per bucket).
    pub series: Vec<(String, Vec<u64>)>,
    /// (seconds, label) vertical markers.
    pub markers: Vec<(f64, String)>,
    pub bucket_ms: f64,
}

impl Chart for Timeline {
    fn size(&self) -> (u32, u32) {
        (1000, 520)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let lo = self.t.first().copied().unwrap_or(0.0);
        let hi = self.t.last().copied().unwrap_or(1.0) + self.bucket_ms / 1000.0;
        let top = self
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .max()
            .unwrap_or(1)
            .max(1) as f64
            * 1.25;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(lo..hi, 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds from the kill")
            .y_desc(format!("requests per {:.0} ms", self.bucket_ms))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for (i, (name, values)) in self.series.iter().enumerate() {
            let style = if name == "failed" {
                BLACK.stroke_width(3)
            } else {
                color(i).stroke_width(2)
            };
            chart
                .draw_series(LineSeries::new(
                    self.t.iter().copied().zip(values.iter().map(|&v| v as f64)),
                    style,
                ))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        for (k, (at, label)) in self.markers.iter().enumerate() {
            let y_text = top * (0.97 - 0.06 * k as f64);
            chart
                .draw_series(DashedLineSeries::new(
                    [(*at, 0.0), (*at, top)],
                    6,
                    4,
                    RED.stroke_width(1),
                ))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*at + (hi - lo) * 0.005, y_text),
                    (FONT, 12).into_font().color(&RED),
                )))
                .map_err(err)?;
        }
        legend(&mut chart)?;
        Ok(())
    }
}

/// Lines of a quantity against N, one per configuration.
pub struct Lines {
    pub title: String,
    pub y_desc: String,
    pub n: Vec<u32>,
    pub series: Vec<(String, Vec<f64>)>,
}

impl Chart for Lines {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (lo, hi) = n_axis(&self.n);
        let top = self
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.1, f64::max)
            * 1.3;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0f64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(self.n.len())
            .x_label_formatter(&|x| format!("N = {x:.0}"))
            .y_desc(self.y_desc.as_str())
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for (i, (name, values)) in self.series.iter().enumerate() {
            let style = color(i).stroke_width(2);
            let points: Vec<(f64, f64)> = self
                .n
                .iter()
                .map(|&n| f64::from(n))
                .zip(values.iter().copied())
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), style))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 4, color(i).filled())),
                )
                .map_err(err)?;
        }
        legend(&mut chart)?;
        Ok(())
    }
}

/// Several charts side by side in one picture.
pub struct Panels<C: Chart> {
    pub charts: Vec<C>,
    pub columns: usize,
}

impl<C: Chart> Chart for Panels<C> {
    fn size(&self) -> (u32, u32) {
        let columns = self.columns.max(1);
        let rows = self.charts.len().div_ceil(columns).max(1);
        (560 * columns as u32, 400 * rows as u32)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let columns = self.columns.max(1);
        let rows = self.charts.len().div_ceil(columns).max(1);
        for (chart, cell) in self.charts.iter().zip(area.split_evenly((rows, columns))) {
            chart.draw(&cell)?;
        }
        Ok(())
    }
}

/// Bars side by side per label, one per group (e.g. a setting off and on),
/// with a value over each bar and an optional dashed reference line.
pub struct GroupedBars {
    pub title: String,
    pub y_desc: String,
    pub labels: Vec<String>,
    /// (legend, one value per label; `None` draws no bar and says "none").
    pub groups: Vec<(String, Vec<Option<f64>>)>,
    /// Decimals of the values written over the bars.
    pub decimals: usize,
    /// Unit after those values, e.g. `%` or ` ms`.
    pub unit: String,
    /// (legend, y) of a dashed horizontal line.
    pub reference: Option<(String, f64)>,
}

impl Chart for GroupedBars {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let n = self.labels.len().max(1);
        let groups = self.groups.len().max(1);
        let highest = self
            .groups
            .iter()
            .flat_map(|(_, v)| v.iter().flatten().copied())
            .fold(0.0, f64::max)
            .max(self.reference.as_ref().map_or(0.0, |(_, y)| *y));
        let top = if highest > 0.0 { highest * 1.25 } else { 1.0 };
        let mut chart = labelled_bars(area, &self.title, &self.labels, top, &self.y_desc, None)?;
        // Bars are placed in pixels inside each label's segment.
        let (width, _) = chart.plotting_area().dim_in_pixel();
        let segment = f64::from(width) / n as f64;
        let pad = segment * 0.1;
        let bar = (segment - 2.0 * pad) / groups as f64;
        let px = |v: f64| v.max(0.0).round() as u32;
        for (g, (name, values)) in self.groups.iter().enumerate() {
            let style = color(g).filled();
            chart
                .draw_series(values.iter().enumerate().filter_map(|(i, v)| {
                    let v = (*v)?;
                    let mut rect = Rectangle::new(
                        [
                            (SegmentValue::Exact(i), 0.0),
                            (SegmentValue::Exact(i + 1), v),
                        ],
                        style,
                    );
                    let left = pad + g as f64 * bar;
                    let right = pad + (groups - 1 - g) as f64 * bar;
                    rect.set_margin(0, 0, px(left + 2.0), px(right + 2.0));
                    Some(rect)
                }))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], style));
            let dx = (pad + (g as f64 + 0.5) * bar - segment / 2.0).round() as i32;
            let decimals = self.decimals;
            let unit = &self.unit;
            chart
                .draw_series(values.iter().enumerate().map(|(i, v)| {
                    let (text, y) = match v {
                        Some(v) => (format!("{v:.decimals$}{unit}"), *v),
                        None => ("none".to_owned(), 0.0),
                    };
                    EmptyElement::at((SegmentValue::CenterOf(i), y + top * 0.01))
                        + Text::new(
                            text,
                            (dx, 0),
                            TextStyle::from((FONT, 12).into_font()).pos(text_anchor_bottom()),
                        )
                }))
                .map_err(err)?;
        }
        if let Some((name, y)) = &self.reference {
            let y = *y;
            chart
                .draw_series(DashedLineSeries::new(
                    [(SegmentValue::Exact(0), y), (SegmentValue::Exact(n), y)],
                    8,
                    5,
                    BLACK.stroke_width(2),
                ))
                .map_err(err)?
                .label(name.clone())
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2))
                });
        }
        legend(&mut chart)?;
        Ok(())
    }
}

/// The axes of a bar chart with one labelled segment per label on x and
/// `0..top` on y (labels with `y_decimals` decimals, or plotters' own),
/// mesh drawn; the caller draws the bars.
fn labelled_bars<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    top: f64,
    y_desc: &str,
    y_decimals: Option<usize>,
) -> Result<
    ChartContext<'a, DB, Cartesian2d<SegmentedCoord<RangedCoordusize>, RangedCoordf64>>,
    String,
> {
    let n = labels.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        // A segmented 0..=k range has k + 1 segments: one per label.
        .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..top)
        .map_err(err)?;
    let x_label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&x_label)
        .y_desc(y_desc)
        .label_style((FONT, 13));
    let fixed = |v: &f64| format!("{v:.*}", y_decimals.unwrap_or(0));
    if y_decimals.is_some() {
        mesh.y_label_formatter(&fixed);
    }
    mesh.draw().map_err(err)?;
    Ok(chart)
}
