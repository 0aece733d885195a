//! Drawing figures (stacked panels of line series, with stage boundaries) to
//! SVG and PNG with plotters.
//!
//! A [`Figure`] is plain data, built by the report and the experiment and
//! drawn here once per backend, so both files show the same thing. PNG text
//! is drawn with ab_glyph from a font compiled into the binary (DejaVu Sans,
//! cut to ASCII and a few symbols; see `assets/LICENSE-DejaVu.txt`): a fresh
//! machine or CI container may have no fonts at all.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

/// Width of every figure, pixels.
const WIDTH: u32 = 1200;
/// Height of one panel, pixels.
const PANEL_HEIGHT: u32 = 300;
/// Height of one row of boundary labels, pixels.
const LABEL_ROW: i32 = 15;
/// Boundary labels are staggered over this many rows so neighbours do not overlap.
const LABEL_ROWS: usize = 3;

/// Tableau 10: distinguishable, and readable when printed in grey.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Style {
    /// A 2 px line.
    Line,
    /// A 1 px pale line (raw values under a smoothed one, single seeds).
    Thin,
    /// A 2 px line with a dot per point (sparse data: evaluations).
    Markers,
    /// A 1 px grey reference line (a target).
    Reference,
}

/// One named line.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text; an empty name keeps the series out of the legend.
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Index into the palette.
    pub color: usize,
    pub style: Style,
}

/// One chart: its own y axis, sharing the figure's x axis.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range (pass rates: 0..1); otherwise fitted to the data.
    pub y_range: Option<(f64, f64)>,
}

/// A stack of panels over one x axis, with vertical boundary lines.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File name without extension.
    pub stem: String,
    pub title: String,
    pub x_label: String,
    pub panels: Vec<Panel>,
    /// (x, label): drawn on every panel; labelled above the first.
    pub boundaries: Vec<(f64, String)>,
}

impl Figure {
    /// Whether any panel has a point to draw.
    pub fn has_data(&self) -> bool {
        self.panels
            .iter()
            .any(|p| p.series.iter().any(|s| !s.points.is_empty()))
    }

    fn x_range(&self) -> (f64, f64) {
        let xs = self
            .panels
            .iter()
            .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)))
            .chain(self.boundaries.iter().map(|b| b.0));
        fit(xs, false)
    }

    fn height(&self) -> u32 {
        40 + PANEL_HEIGHT * self.panels.len().max(1) as u32 + self.label_strip() as u32
    }

    fn label_strip(&self) -> i32 {
        let rows = self.boundaries.len().min(LABEL_ROWS) as i32;
        if rows == 0 { 0 } else { rows * LABEL_ROW + 6 }
    }

    /// Writes `<stem>.svg` and `<stem>.png` into `dir`; returns both paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        ensure_font();
        let size = (WIDTH, self.height());
        let svg = dir.join(format!("{}.svg", self.stem));
        {
            let root = SVGBackend::new(&svg, size).into_drawing_area();
            self.draw(&root).map_err(|e| plot_error(&svg, e))?;
        }
        let png = dir.join(format!("{}.png", self.stem));
        let mut rgb = vec![0u8; (size.0 * size.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
            self.draw(&root).map_err(|e| plot_error(&png, e))?;
        }
        write_png(&png, size, &rgb)?;
        Ok(vec![svg, png])
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let root = root.titled(&self.title, (FONT, 22))?;
        let (strip, charts) = root.split_vertically(self.label_strip());
        let (x0, x1) = self.x_range();
        let panels = charts.split_evenly((self.panels.len().max(1), 1));
        for (i, (panel, area)) in self.panels.iter().zip(&panels).enumerate() {
            let (y0, y1) = panel.y_range.unwrap_or_else(|| {
                fit(
                    panel
                        .series
                        .iter()
                        .flat_map(|s| s.points.iter().map(|p| p.1)),
                    true,
                )
            });
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, (FONT, 16))
                .margin(10)
                .x_label_area_size(36)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&panel.y_label)
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 13))
                .light_line_style(RGBColor(238, 238, 238))
                .x_label_formatter(&|v| tick(*v, x1 - x0))
                .y_label_formatter(&|v| tick(*v, y1 - y0))
                .draw()?;
            for (x, _) in &self.boundaries {
                chart.draw_series(LineSeries::new(
                    [(*x, y0), (*x, y1)],
                    BLACK.mix(0.45).stroke_width(1),
                ))?;
            }
            let mut legend = false;
            for s in &panel.series {
                let color = PALETTE[s.color % PALETTE.len()];
                let style = match s.style {
                    Style::Line | Style::Markers => color.stroke_width(2),
                    Style::Thin => color.mix(0.35).stroke_width(1),
                    Style::Reference => BLACK.mix(0.5).stroke_width(1),
                };
                let drawn = chart.draw_series(LineSeries::new(s.points.iter().copied(), style))?;
                if !s.name.is_empty() {
                    legend = true;
                    drawn
                        .label(s.name.as_str())
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
                }
                if s.style == Style::Markers {
                    chart
                        .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
                }
            }
            if legend {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK.mix(0.3))
                    .label_font((FONT, 12))
                    .draw()?;
            }
            if i == 0 {
                self.draw_labels(&strip, &chart, y1)?;
            }
        }
        root.present()?;
        Ok(())
    }

    /// Boundary labels in the strip above the first panel, each at its line's
    /// x, staggered over rows; labels in the right half end at their line.
    fn draw_labels<DB: DrawingBackend>(
        &self,
        strip: &DrawingArea<DB, Shift>,
        chart: &ChartContext<
            DB,
            Cartesian2d<
                plotters::coord::types::RangedCoordf64,
                plotters::coord::types::RangedCoordf64,
            >,
        >,
        y_top: f64,
    ) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let base = strip.get_base_pixel();
        let (w, _) = strip.dim_in_pixel();
        for (k, (x, label)) in self.boundaries.iter().enumerate() {
            let (px, _) = chart.backend_coord(&(*x, y_top));
            let rel = px - base.0;
            let right_half = rel > w as i32 / 2;
            let anchor = if right_half { HPos::Right } else { HPos::Left };
            let tx = if right_half { rel - 3 } else { rel + 3 };
            let ty = (k % LABEL_ROWS) as i32 * LABEL_ROW + 3;
            let style = TextStyle::from((FONT, 12).into_font())
                .color(&BLACK)
                .pos(Pos::new(anchor, VPos::Top));
            strip.draw(&Text::new(label.as_str(), (tx, ty), style))?;
            strip.draw(&PathElement::new(
                [(rel, ty), (rel, ty + LABEL_ROW - 2)],
                BLACK.mix(0.45),
            ))?;
        }
        Ok(())
    }
}

/// Encodes an RGB8 buffer as a PNG file.
fn write_png(path: &Path, (w, h): (u32, u32), rgb: &[u8]) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let encoded = enc
        .write_header()
        .and_then(|mut writer| writer.write_image_data(rgb));
    encoded.map_err(|e| plot_error(path, Box::new(e)))
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn plot_error(path: &Path, e: Box<dyn std::error::Error>) -> Error {
    Error::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A range covering `values` with 5% headroom; a flat or empty series gets a
/// unit-wide range so the axis still draws. `pad_low` pads below the minimum
/// too (y axes); x axes start at their minimum.
fn fit(values: impl Iterator<Item = f64>, pad_low: bool) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let half = if lo.abs() > 1e-12 {
            lo.abs() * 0.5
        } else {
            0.5
        };
        return (lo - half, hi + half);
    }
    let pad = (hi - lo) * 0.05;
    (if pad_low { lo - pad } else { lo }, hi + pad)
}

/// An axis tick label with as many decimals as the axis span needs:
/// steps print as integers, pass rates with one decimal, a KL of 1e-5 in
/// scientific notation rather than as a column of zeros.
fn tick(v: f64, span: f64) -> String {
    if span <= 0.0 || !span.is_finite() {
        return format!("{v}");
    }
    if !(1e-3..1e7).contains(&span) {
        return format!("{v:.2e}");
    }
    let decimals = (1.0 - span.log10()).ceil().max(0.0) as usize;
    format!("{v:.decimals$}")
}

/// Registers the embedded font with plotters once per process.
fn ensure_font() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).unwrap_or_else(|_| {
            panic!("the embedded font assets/DejaVuSans-subset.ttf is a valid TrueType font")
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_pads_and_handles_flat_and_empty_data() {
        assert_eq!(fit([].into_iter(), true), (0.0, 1.0));
        assert_eq!(fit([2.0, 2.0].into_iter(), true), (1.0, 3.0));
        let (lo, hi) = fit([0.0, 10.0].into_iter(), true);
        assert!((lo + 0.5).abs() < 1e-9 && (hi - 10.5).abs() < 1e-9);
        assert_eq!(fit([5.0, 15.0].into_iter(), false).0, 5.0);
    }

    #[test]
    fn ticks_show_the_digits_the_span_needs() {
        assert_eq!(tick(400.0, 620.0), "400");
        assert_eq!(tick(0.5, 1.0), "0.5");
        assert_eq!(tick(0.25, 0.05), "0.250");
        assert_eq!(tick(2e-5, 1e-4), "2.00e-5");
    }

    #[test]
    fn both_files_show_the_series_and_boundary_labels() {
        let dir = tempfile::tempdir().unwrap();
        let fig = Figure {
            stem: "t".into(),
            title: "Title".into(),
            x_label: "step".into(),
            panels: vec![Panel {
                title: "panel".into(),
                y_label: "y".into(),
                series: vec![Series {
                    name: "alpha-series".into(),
                    points: vec![(0.0, 0.0), (10.0, 1.0)],
                    color: 0,
                    style: Style::Markers,
                }],
                y_range: Some((0.0, 1.0)),
            }],
            boundaries: vec![(5.0, "→ next: max_steps 5".into())],
        };
        let files = fig.write(dir.path()).unwrap();
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(svg.contains("alpha-series"));
        assert!(svg.contains("→ next: max_steps 5"));
        let png = std::fs::read(&files[1]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
