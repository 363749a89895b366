//! [`Trajectory`]: a run's daily measurements and applied controls.

use serde::{Deserialize, Serialize};

use crate::CultureDay;
use crate::controls::ControlArray;
use crate::error::CoreError;
use crate::sample::Sample;
use crate::species::{Species, SpeciesArray};

/// One row of a [`Trajectory`]: the state measured on `day` and the controls applied from
/// `day` to `day + 1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryRow {
    /// Culture day.
    pub day: CultureDay,
    /// Species values (`None` = missing).
    pub species: SpeciesArray<Option<f64>>,
    /// Controls applied over `day → day + 1`.
    pub controls: ControlArray<f64>,
}

/// A run as days × species (each possibly missing) with the controls of each day.
///
/// ```
/// use perfusio_core::{Control, Species, Trajectory};
/// let mut t = Trajectory::new("run-1");
/// let c = Control::defaults();
/// t.push(0, [Some(1.0), Some(99.0), None, None, None, None, None, None, Some(0.0)], c).unwrap();
/// t.push(1, [Some(1.8); 9], c).unwrap();
/// assert_eq!(t.len(), 2);
/// assert_eq!(t.species(Species::VCD), vec![Some(1.0), Some(1.8)]);
/// assert!(t.push(1, [None; 9], c).is_err()); // days must increase
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Trajectory {
    /// Run identifier.
    pub run_id: String,
    /// Cell line / clone name, if known.
    pub clone: Option<String>,
    /// Reactor identifier, if known.
    pub reactor_id: Option<String>,
    rows: Vec<TrajectoryRow>,
}

impl Trajectory {
    /// An empty trajectory.
    pub fn new(run_id: impl Into<String>) -> Self {
        Self {
            run_id: run_id.into(),
            ..Self::default()
        }
    }

    /// Appends a day; days must strictly increase.
    pub fn push(
        &mut self,
        day: CultureDay,
        species: SpeciesArray<Option<f64>>,
        controls: ControlArray<f64>,
    ) -> Result<(), CoreError> {
        if let Some(last) = self.rows.last()
            && day <= last.day
        {
            return Err(CoreError::Inconsistent(format!(
                "day {day} does not follow day {} (days must strictly increase)",
                last.day
            )));
        }
        self.rows.push(TrajectoryRow {
            day,
            species,
            controls,
        });
        Ok(())
    }

    /// Appends a sample's species values with the controls applied from that day.
    pub fn push_sample(
        &mut self,
        sample: &Sample,
        controls: ControlArray<f64>,
    ) -> Result<(), CoreError> {
        self.push(sample.day, sample.species, controls)
    }

    /// Number of days.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// `true` when no day has been recorded.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// All rows in day order.
    pub fn rows(&self) -> &[TrajectoryRow] {
        &self.rows
    }

    /// Days in order.
    pub fn days(&self) -> Vec<CultureDay> {
        self.rows.iter().map(|r| r.day).collect()
    }

    /// One species over time.
    pub fn species(&self, species: Species) -> Vec<Option<f64>> {
        self.rows
            .iter()
            .map(|r| r.species[species.index()])
            .collect()
    }

    /// Consecutive one-day transitions `(row_t, row_{t+1})` where `day_{t+1} = day_t + 1`.
    pub fn transitions(&self) -> impl Iterator<Item = (&TrajectoryRow, &TrajectoryRow)> + '_ {
        self.rows
            .windows(2)
            .filter(|w| w[1].day == w[0].day + 1)
            .map(|w| (&w[0], &w[1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controls::Control;

    #[test]
    fn transitions_skip_gaps() {
        let mut t = Trajectory::new("r");
        let c = Control::defaults();
        for d in [0, 1, 2, 4, 5] {
            t.push(d, [Some(f64::from(d)); 9], c).unwrap();
        }
        let pairs: Vec<_> = t.transitions().map(|(a, b)| (a.day, b.day)).collect();
        assert_eq!(pairs, [(0, 1), (1, 2), (4, 5)]);
        assert_eq!(t.days(), [0, 1, 2, 4, 5]);
        let e = t.push(3, [None; 9], c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "inconsistent data: day 3 does not follow day 5 (days must strictly increase)"
        );
    }

    #[test]
    fn serde_round_trip() {
        let mut t = Trajectory::new("r");
        t.clone = Some("CloneX".into());
        t.push(
            0,
            [Some(1.0), None, None, None, None, None, None, None, None],
            Control::defaults(),
        )
        .unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Trajectory>(&json).unwrap(), t);
    }
}
