//! Server-rendered SVG charts of one reactor (plotters' SVG backend: no script, no fonts to
//! fetch, nothing outside the page).
//!
//! A fan chart shows the forecast's 90 % (q05–q95) and 50 % (q25–q75) bands of the latent
//! state and its median, behind them (lightest) the 90 % band of the measured value, where
//! a sample should fall (measurement noise included), and the observations over them as
//! markers joined by a line. A missing value is a gap: no
//! marker on that day, and the line is split there (it is never drawn through a day without a
//! value, and a missing value is never drawn as zero). The observed line's pieces carry
//! `class="observed-line"` and its markers `class="observed-point"`, so a test or a browser
//! can count them.

use std::collections::BTreeMap;

use perfusio_core::{Control, ControlArray, CultureDay, DesignSpace, Species};
use perfusio_twin::campaign_files::{Band, ForecastBands, ReactorSnapshot, SetpointEntry};
use plotters::prelude::*;

use crate::error::{DashboardError, Result};

/// The species drawn as fan charts, in page order.
pub const CHART_SPECIES: [Species; 4] = [Species::VCD, Species::Via, Species::Glc, Species::Titer];

/// Colour of the observations (`#111111` in the SVG).
const OBSERVED: RGBColor = RGBColor(17, 17, 17);
const OBSERVED_HEX: &str = "#111111";
const BAND: RGBColor = RGBColor(31, 119, 180);
const SIZE: (u32, u32) = (400, 270);

/// One species of one reactor, ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct FanData {
    /// Chart title.
    pub title: String,
    /// Y-axis unit.
    pub unit: String,
    /// Forecast days with their bands of the latent state (empty when there is no forecast).
    pub forecast: Vec<(f64, Band)>,
    /// Forecast days with their bands of the measured value (empty when there is no
    /// forecast or the snapshot predates them).
    pub measured: Vec<(f64, Band)>,
    /// The observed line as runs of consecutive days with a value; a gap separates runs.
    pub observed_runs: Vec<Vec<(f64, f64)>>,
}

impl FanData {
    /// Collects species `s` of a reactor: its forecast bands and its observations, split into
    /// runs at every day without a (finite) value.
    pub fn from_reactor(r: &ReactorSnapshot, s: Species) -> Self {
        let matches = |key: &str| Species::lookup(key) == Some(s);
        // the finite bands of this species in one of the forecast's band maps
        let pick = |of: fn(&ForecastBands) -> &BTreeMap<String, Vec<Band>>| -> Vec<(f64, Band)> {
            r.forecast
                .as_ref()
                .and_then(|f| {
                    let (_, bands) = of(f).iter().find(|(k, _)| matches(k))?;
                    Some(
                        f.days
                            .iter()
                            .zip(bands)
                            .filter(|(_, b)| {
                                [b.q05, b.q25, b.q50, b.q75, b.q95]
                                    .iter()
                                    .all(|v| v.is_finite())
                            })
                            .map(|(d, b)| (f64::from(*d), *b))
                            .collect(),
                    )
                })
                .unwrap_or_default()
        };
        let forecast = pick(|f| &f.species);
        let measured = pick(|f| &f.measured);
        let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut last_day: Option<CultureDay> = None;
        for o in &r.observations {
            let value = o
                .values
                .iter()
                .find(|(k, _)| matches(k))
                .and_then(|(_, v)| *v)
                .filter(|v| v.is_finite());
            match value {
                Some(v) => {
                    let continues = last_day.is_some_and(|d| o.day == d.saturating_add(1));
                    match runs.last_mut() {
                        Some(run) if continues => run.push((f64::from(o.day), v)),
                        _ => runs.push(vec![(f64::from(o.day), v)]),
                    }
                    last_day = Some(o.day);
                }
                None => last_day = None,
            }
        }
        let title = format!("{} – {} [{}]", r.id, s.description(), s.name());
        Self {
            title,
            unit: s.unit().to_string(),
            forecast,
            measured,
            observed_runs: runs,
        }
    }

    /// Number of observed values (markers).
    pub fn observed_count(&self) -> usize {
        self.observed_runs.iter().map(Vec::len).sum()
    }
}

fn chart_err<E: std::fmt::Display>(e: E) -> DashboardError {
    DashboardError::Chart(e.to_string())
}

fn bounds(v: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    v.filter(|x| x.is_finite()).fold(None, |acc, x| match acc {
        None => Some((x, x)),
        Some((a, b)) => Some((a.min(x), b.max(x))),
    })
}

/// Draws a fan chart as an SVG element (`<svg class="chart" data-species="…">`).
pub fn fan_chart_svg(d: &FanData, species: Species) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let points = d.observed_runs.iter().flatten();
        let (x0, x1) = bounds(
            d.forecast
                .iter()
                .chain(&d.measured)
                .map(|(x, _)| *x)
                .chain(points.clone().map(|p| p.0)),
        )
        .unwrap_or((0.0, 1.0));
        let (_, y1) = bounds(
            d.forecast
                .iter()
                .chain(&d.measured)
                .flat_map(|(_, b)| [b.q05, b.q95])
                .chain(points.map(|p| p.1)),
        )
        .unwrap_or((0.0, 1.0));
        let y1 = if y1 > 0.0 { y1 * 1.08 } else { 1.0 };
        let mut chart = ChartBuilder::on(&root)
            .caption(&d.title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), 0.0..y1)
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .x_desc("culture day")
            .y_desc(&d.unit)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(chart_err)?;
        if d.measured.len() >= 2 {
            let mut poly: Vec<(f64, f64)> = d.measured.iter().map(|(x, b)| (*x, b.q95)).collect();
            poly.extend(d.measured.iter().rev().map(|(x, b)| (*x, b.q05)));
            chart
                .draw_series(std::iter::once(Polygon::new(poly, BAND.mix(0.09).filled())))
                .map_err(chart_err)?;
        }
        if !d.forecast.is_empty() {
            type Quantile = fn(&Band) -> f64;
            let bands: [(Quantile, Quantile, f64); 2] =
                [(|b| b.q05, |b| b.q95, 0.18), (|b| b.q25, |b| b.q75, 0.32)];
            for (lo, hi, alpha) in bands {
                let mut poly: Vec<(f64, f64)> =
                    d.forecast.iter().map(|(x, b)| (*x, hi(b))).collect();
                poly.extend(d.forecast.iter().rev().map(|(x, b)| (*x, lo(b))));
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        poly,
                        BAND.mix(alpha).filled(),
                    )))
                    .map_err(chart_err)?;
            }
            chart
                .draw_series(LineSeries::new(
                    d.forecast.iter().map(|(x, b)| (*x, b.q50)),
                    BAND.stroke_width(2),
                ))
                .map_err(chart_err)?;
        }
        for run in d.observed_runs.iter().filter(|r| r.len() >= 2) {
            chart
                .draw_series(LineSeries::new(
                    run.iter().copied(),
                    OBSERVED.stroke_width(1),
                ))
                .map_err(chart_err)?;
        }
        chart
            .draw_series(
                d.observed_runs
                    .iter()
                    .flatten()
                    .map(|&(x, y)| Circle::new((x, y), 3, OBSERVED.filled())),
            )
            .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(tag_svg(
        &svg,
        &format!(
            "class=\"chart\" role=\"img\" data-species=\"{}\" aria-label=\"{}\"",
            species.name(),
            crate::page::escape(&d.title)
        ),
    ))
}

/// Adds attributes to the root element and classes to the observations' elements.
fn tag_svg(svg: &str, root_attrs: &str) -> String {
    let mut out = String::with_capacity(svg.len() + 512);
    let mut root_done = false;
    for line in svg.lines() {
        let t = line.trim_start();
        if !root_done && t.starts_with("<svg ") {
            out.push_str(&t.replacen("<svg ", &format!("<svg {root_attrs} "), 1));
            root_done = true;
        } else if t.starts_with("<polyline ") && t.contains(&format!("stroke=\"{OBSERVED_HEX}\"")) {
            out.push_str(&t.replacen("<polyline ", "<polyline class=\"observed-line\" ", 1));
        } else if t.starts_with("<circle ") && t.contains(&format!("fill=\"{OBSERVED_HEX}\"")) {
            out.push_str(&t.replacen("<circle ", "<circle class=\"observed-point\" ", 1));
        } else {
            out.push_str(t);
        }
        out.push('\n');
    }
    out
}

/// The setpoints in force from each entry's day, as full control vectors: a control an entry
/// does not name keeps its previous value (or the default before the first entry).
pub fn setpoint_steps(entries: &[SetpointEntry]) -> Vec<(CultureDay, ControlArray<f64>)> {
    let mut current = Control::defaults();
    entries
        .iter()
        .map(|e| {
            for (name, v) in &e.values {
                if let Some(c) = Control::lookup(name) {
                    current[c.index()] = *v;
                }
            }
            (e.day, current)
        })
        .collect()
}

/// One full control vector per day, from the first entry's day through `until` (at least the
/// last entry's day), each entry holding until the next one; at most
/// [`MAX_DURATION_DAYS`](perfusio_core::MAX_DURATION_DAYS) + 1 days.
pub fn daily_setpoints(
    entries: &[SetpointEntry],
    until: CultureDay,
) -> Vec<(CultureDay, ControlArray<f64>)> {
    let steps = setpoint_steps(entries);
    let Some(&(first, _)) = steps.first() else {
        return Vec::new();
    };
    let last = steps.last().map_or(first, |s| s.0).max(until);
    let last = last.min(first.saturating_add(perfusio_core::MAX_DURATION_DAYS));
    let mut out = Vec::new();
    let mut i = 0;
    for day in first..=last {
        while i + 1 < steps.len() && steps[i + 1].0 <= day {
            i += 1;
        }
        out.push((day, steps[i].1));
    }
    out
}

/// The setpoint history through day `until` as an SVG element (each control scaled to its
/// design range), or `None` when no setpoints were applied yet.
pub fn setpoint_history_svg(
    entries: &[SetpointEntry],
    until: CultureDay,
    ds: &DesignSpace,
) -> Result<Option<String>> {
    if entries.is_empty() {
        return Ok(None);
    }
    let svg = perfusio_twin::plot::setpoint_history_svg(&daily_setpoints(entries, until), ds)
        .map_err(chart_err)?;
    Ok(Some(tag_svg(
        &svg,
        "class=\"chart setpoints\" role=\"img\" aria-label=\"setpoint history\"",
    )))
}

/// Control name → value, looked up by [`Control::lookup`]; unknown names are dropped.
pub fn controls_of(values: &BTreeMap<String, f64>) -> BTreeMap<Control, f64> {
    values
        .iter()
        .filter_map(|(k, v)| Control::lookup(k).map(|c| (c, *v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use perfusio_twin::campaign_files::Observation;

    fn reactor(titer: &[(u32, Option<f64>)]) -> ReactorSnapshot {
        ReactorSnapshot {
            id: "R01".into(),
            connector: "virtual".into(),
            audit: "R01/audit.jsonl".into(),
            observations: titer
                .iter()
                .map(|(d, v)| Observation {
                    day: *d,
                    values: BTreeMap::from([("Titer".to_string(), *v)]),
                })
                .collect(),
            forecast: None,
            setpoints: Vec::new(),
            pending: None,
            alarms: Vec::new(),
        }
    }

    #[test]
    fn a_missing_value_splits_the_observed_line_and_has_no_marker() {
        let r = reactor(&[
            (0, Some(1.0)),
            (1, Some(2.0)),
            (2, None),
            (3, Some(4.0)),
            (4, Some(5.0)),
            (6, Some(7.0)),
        ]);
        let d = FanData::from_reactor(&r, Species::Titer);
        assert_eq!(
            d.observed_runs,
            vec![
                vec![(0.0, 1.0), (1.0, 2.0)],
                vec![(3.0, 4.0), (4.0, 5.0)],
                vec![(6.0, 7.0)]
            ]
        );
        let svg = fan_chart_svg(&d, Species::Titer).unwrap();
        assert!(svg.starts_with("<svg class=\"chart\""), "{}", &svg[..80]);
        assert_eq!(svg.matches("class=\"observed-line\"").count(), 2);
        assert_eq!(svg.matches("class=\"observed-point\"").count(), 5);
    }

    /// The measured value's band is drawn behind the latent bands when the snapshot has it
    /// (one polygon more) and widens the y-axis to its q95; an older snapshot without it
    /// draws the latent bands only.
    #[test]
    fn the_measured_band_is_drawn_behind_the_latent_bands() {
        let band = |[q05, q25, q50, q75, q95]: [f64; 5]| Band {
            q05,
            q25,
            q50,
            q75,
            q95,
        };
        let mut r = reactor(&[(0, Some(100.0)), (1, Some(150.0))]);
        let latent = vec![
            band([180.0, 190.0, 200.0, 210.0, 220.0]),
            band([226.0, 238.0, 250.0, 262.0, 274.0]),
        ];
        let measured = vec![
            band([150.0, 175.0, 200.0, 225.0, 250.0]),
            band([0.0, 0.0, 250.0, 650.0, 1050.0]),
        ];
        r.forecast = Some(ForecastBands {
            from_day: 1,
            days: vec![2, 3],
            species: BTreeMap::from([("Titer".to_string(), latent.clone())]),
            measured: BTreeMap::from([("Titer".to_string(), measured)]),
        });
        let d = FanData::from_reactor(&r, Species::Titer);
        assert_eq!(d.measured.len(), 2);
        assert!((d.measured[1].1.q95 - 1050.0).abs() < 1e-12);
        let with = fan_chart_svg(&d, Species::Titer).unwrap();
        // the largest axis label: the y-axis reaches the measured q95 (1050) only with it
        let top_label = |svg: &str| -> f64 {
            svg.split("</text>")
                .filter_map(|t| t.rsplit('>').next())
                .filter_map(|t| t.trim().replace(',', "").parse::<f64>().ok())
                .fold(f64::NEG_INFINITY, f64::max)
        };
        assert!(top_label(&with) >= 1000.0, "{}", top_label(&with));
        r.forecast.as_mut().unwrap().measured.clear();
        let d0 = FanData::from_reactor(&r, Species::Titer);
        assert!(d0.measured.is_empty());
        let without = fan_chart_svg(&d0, Species::Titer).unwrap();
        assert!(top_label(&without) < 400.0, "{}", top_label(&without));
        assert_eq!(
            with.matches("<polygon").count(),
            without.matches("<polygon").count() + 1
        );
    }

    #[test]
    fn setpoint_steps_carry_unnamed_controls_forward() {
        let e = |day, name: &str, v| SetpointEntry {
            day,
            values: BTreeMap::from([(name.to_string(), v)]),
            source: "twin".into(),
        };
        let steps = setpoint_steps(&[e(0, "perfusion_rate", 1.5), e(2, "bleed_rate", 0.2)]);
        assert_eq!(steps.len(), 2);
        assert!((steps[1].1[Control::PerfusionRate.index()] - 1.5).abs() < 1e-12);
        assert!((steps[1].1[Control::BleedRate.index()] - 0.2).abs() < 1e-12);
        let daily = daily_setpoints(
            &[e(1, "perfusion_rate", 1.5), e(3, "perfusion_rate", 1.8)],
            5,
        );
        let days: Vec<u32> = daily.iter().map(|d| d.0).collect();
        assert_eq!(days, vec![1, 2, 3, 4, 5]);
        let perf: Vec<f64> = daily
            .iter()
            .map(|d| d.1[Control::PerfusionRate.index()])
            .collect();
        let want = [1.5, 1.5, 1.8, 1.8, 1.8];
        assert!(
            perf.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{perf:?}"
        );
    }
}
