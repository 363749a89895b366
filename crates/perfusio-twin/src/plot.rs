//! SVG charts (plotters' SVG backend: no JavaScript, no fonts to install): forecast fan
//! charts with the observations over them, and the history of the applied setpoints.

use perfusio_core::{Control, ControlArray, CultureDay, Species};
use plotters::prelude::*;

use crate::error::{Result, TwinError};
use crate::report::RunReport;

/// One species' forecast with the observations to draw over it.
#[derive(Debug, Clone)]
pub struct FanChart {
    /// Title (species and unit).
    pub title: String,
    /// Y-axis label.
    pub unit: String,
    /// Forecast days.
    pub days: Vec<f64>,
    /// Quantiles 5, 10, 50, 90, 95 % per forecast day.
    pub q: [Vec<f64>; 5],
    /// The 90 % band (q05, q95) of the measured value per forecast day, where a sample
    /// should fall (measurement noise included), drawn lightest behind the bands of `q`;
    /// empty to leave it out (e.g. when `q` already is the measured value's).
    pub measured: Vec<(f64, f64)>,
    /// Observed `(day, value)`; missing days are simply absent (drawn as gaps).
    pub observed: Vec<(f64, f64)>,
}

/// Renders the chart as an SVG document.
pub fn fan_chart_svg(c: &FanChart) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let xs = c.days.iter().copied().chain(c.observed.iter().map(|p| p.0));
        let (x0, x1) = bounds(xs);
        let ys = c.q[0]
            .iter()
            .chain(&c.q[4])
            .copied()
            .chain(c.measured.iter().flat_map(|b| [b.0, b.1]))
            .chain(c.observed.iter().map(|p| p.1));
        let (_, y1) = bounds(ys);
        let y1 = if y1 > 0.0 { y1 * 1.08 } else { 1.0 };
        let mut chart = ChartBuilder::on(&root)
            .caption(&c.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), 0.0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("culture day")
            .y_desc(&c.unit)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        let blue = RGBColor(31, 119, 180);
        if c.measured.len() == c.days.len() && c.days.len() >= 2 {
            let mut poly: Vec<(f64, f64)> = c
                .days
                .iter()
                .copied()
                .zip(c.measured.iter().map(|b| b.1))
                .collect();
            poly.extend(
                c.days
                    .iter()
                    .copied()
                    .zip(c.measured.iter().map(|b| b.0))
                    .rev(),
            );
            chart
                .draw_series(std::iter::once(Polygon::new(poly, blue.mix(0.08).filled())))
                .map_err(err)?
                .label("90 % band of a sample")
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], blue.mix(0.08).filled())
                });
        }
        for (lo, hi, alpha, label) in [(0, 4, 0.18, "90 % band"), (1, 3, 0.30, "80 % band")] {
            let mut poly: Vec<(f64, f64)> = c
                .days
                .iter()
                .copied()
                .zip(c.q[hi].iter().copied())
                .collect();
            poly.extend(c.days.iter().copied().zip(c.q[lo].iter().copied()).rev());
            chart
                .draw_series(std::iter::once(Polygon::new(
                    poly,
                    blue.mix(alpha).filled(),
                )))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], blue.mix(alpha).filled())
                });
        }
        chart
            .draw_series(LineSeries::new(
                c.days.iter().copied().zip(c.q[2].iter().copied()),
                blue.stroke_width(2),
            ))
            .map_err(err)?
            .label("median")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], blue));
        chart
            .draw_series(
                c.observed
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, BLACK.filled())),
            )
            .map_err(err)?
            .label("observed")
            .legend(|(x, y)| Circle::new((x + 7, y), 3, BLACK.filled()));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        })
}

fn err<E: std::fmt::Display>(e: E) -> TwinError {
    TwinError::Output {
        context: "drawing the chart".into(),
        message: e.to_string(),
    }
}

impl FanChart {
    /// The fan chart of species `s` from the report's last forecast: its latent-state
    /// quantiles, the measured value's 90 % band behind them (where a sample should fall),
    /// and every day's accepted measurement over both; `None` when the run made no
    /// forecast.
    pub fn from_report(report: &RunReport, s: Species) -> Option<Self> {
        let f = report.last_forecast.as_ref()?;
        let k = s.index();
        Some(Self {
            title: format!(
                "{} ({}), forecast from day {}",
                s.description(),
                s.name(),
                f.start_day
            ),
            unit: s.unit().to_string(),
            days: f.state.iter().map(|b| f64::from(b.day)).collect(),
            q: std::array::from_fn(|i| f.state.iter().map(|b| b.quantiles[i][k]).collect()),
            measured: f
                .measured
                .iter()
                .map(|b| (b.quantiles[0][k], b.quantiles[4][k]))
                .collect(),
            observed: report
                .days
                .iter()
                .filter_map(|d| d.species(s).map(|v| (f64::from(d.day), v)))
                .collect(),
        })
    }
}

/// The applied setpoints of a run, one line per control scaled to its design range
/// (0 = lower end, 1 = upper end), as an SVG document.
pub fn setpoint_history_svg(
    applied: &[(CultureDay, ControlArray<f64>)],
    design_space: &perfusio_core::DesignSpace,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let x1 = applied.last().map_or(1.0, |(d, _)| f64::from(*d) + 1.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "applied setpoints (share of each design range)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..x1, -0.05..1.05)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("culture day")
            .y_desc("0 = lower, 1 = upper end")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(err)?;
        for (i, c) in Control::ALL.iter().enumerate() {
            let r = design_space.control(*c).design_range();
            let width = (r.upper - r.lower).max(f64::EPSILON);
            let colour = Palette99::pick(i).to_rgba();
            // a step line: each day's value holds over day → day + 1
            let mut pts = Vec::with_capacity(2 * applied.len());
            for (d, a) in applied {
                let y = ((a[c.index()] - r.lower) / width).clamp(-0.05, 1.05);
                pts.push((f64::from(*d), y));
                pts.push((f64::from(*d) + 1.0, y));
            }
            chart
                .draw_series(LineSeries::new(pts, colour.stroke_width(2)))
                .map_err(err)?
                .label(c.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A three-day titer chart with bands from 1 to 5 and the given observations.
    fn chart(observed: Vec<(f64, f64)>) -> FanChart {
        FanChart {
            title: "Titer".into(),
            unit: "mg/L".into(),
            days: vec![5.0, 6.0, 7.0],
            q: [
                vec![1.0, 2.0, 3.0],
                vec![1.5, 2.5, 3.5],
                vec![2.0, 3.0, 4.0],
                vec![2.5, 3.5, 4.5],
                vec![3.0, 4.0, 5.0],
            ],
            measured: Vec::new(),
            observed,
        }
    }

    #[test]
    fn chart_has_bands_points_and_no_point_for_missing_days() {
        let c = chart(vec![(0.0, 0.5), (2.0, 1.0), (4.0, 1.8)]);
        let svg = fan_chart_svg(&c).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert_eq!(
            svg.matches("<circle").count(),
            3 + 1,
            "3 observations + legend"
        );
        assert!(svg.matches("<polygon").count() >= 2);
        assert!(svg.contains("Titer"));
    }

    #[test]
    fn the_measured_band_is_drawn_first_behind_the_others_and_widens_the_axis() {
        let mut c = chart(vec![(5.0, 2.2)]);
        let without = fan_chart_svg(&c).unwrap();
        c.measured = vec![(0.5, 35.0), (1.5, 45.0), (2.5, 90.0)];
        let with = fan_chart_svg(&c).unwrap();
        assert_eq!(
            with.matches("<polygon").count(),
            without.matches("<polygon").count() + 1
        );
        assert!(with.contains("90 % band of a sample"));
        assert!(!without.contains("90 % band of a sample"));
        // document order is drawing order: the lightest band comes first
        let first = &with[with.find("<polygon").unwrap()..];
        let first = &first[..first.find("/>").unwrap()];
        assert!(first.contains("opacity=\"0.08\""), "{first}");
        // the largest axis label: the y axis reaches the measured band's top (90) only
        // with it
        let top_label = |svg: &str| -> f64 {
            svg.split("</text>")
                .filter_map(|t| t.rsplit('>').next())
                .filter_map(|t| t.trim().parse::<f64>().ok())
                .fold(f64::NEG_INFINITY, f64::max)
        };
        assert!(top_label(&with) >= 80.0, "{}", top_label(&with));
        assert!(top_label(&without) < 10.0, "{}", top_label(&without));
        // a band that does not match the forecast days is left out
        c.measured.pop();
        let mismatched = fan_chart_svg(&c).unwrap();
        assert!(!mismatched.contains("90 % band of a sample"));
    }

    #[test]
    fn setpoint_history_draws_one_line_per_control() {
        let ds = perfusio_core::DEFAULT_AMBR250_DESIGN_SPACE;
        let applied = vec![(0, Control::defaults()), (1, Control::defaults())];
        let svg = setpoint_history_svg(&applied, &ds).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.matches("<polyline").count() >= 6, "{svg}");
        assert!(svg.contains("perfusion_rate") && svg.contains("pyruvate_feed"));
    }
}
