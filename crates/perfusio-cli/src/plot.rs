//! SVG fan charts of forecasts (plotters' SVG backend, no JavaScript, no fonts to install).

use plotters::prelude::*;

/// One species' forecast with the observations to draw over it.
#[derive(Debug, Clone)]
pub(crate) struct FanChart {
    /// Title (species and unit).
    pub title: String,
    /// Y-axis label.
    pub unit: String,
    /// Forecast days.
    pub days: Vec<f64>,
    /// Quantiles 5, 10, 50, 90, 95 % per forecast day.
    pub q: [Vec<f64>; 5],
    /// Observed `(day, value)`; missing days are simply absent (drawn as gaps).
    pub observed: Vec<(f64, f64)>,
}

/// Renders the chart as an SVG document.
pub(crate) fn fan_chart_svg(c: &FanChart) -> anyhow::Result<String> {
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

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_bands_points_and_no_point_for_missing_days() {
        let c = FanChart {
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
            observed: vec![(0.0, 0.5), (2.0, 1.0), (4.0, 1.8)],
        };
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
}
