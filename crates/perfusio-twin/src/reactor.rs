//! [`ReactorState`]: what the daily loop keeps about one reactor between days, and the
//! learning step that the live loop and the replay of a resume share, so that a resumed run
//! rebuilds exactly the model and estimates an uninterrupted one has. A campaign of many
//! reactors keeps one `ReactorState` per reactor over one shared model.

use perfusio_core::{ControlArray, CultureDay, N_CONTROLS, N_SPECIES, SpeciesArray};
use perfusio_hybrid::{HybridError, HybridFitReport, HybridModel, StateEstimate};

use crate::alarm::{AlarmRule, AlarmTracker};
use crate::error::Result;

/// The state of one reactor between culture days.
#[derive(Debug, Clone)]
pub struct ReactorState {
    run: String,
    estimate: Option<StateEstimate>,
    current: ControlArray<f64>,
    alarms: AlarmTracker,
}

/// What [`ReactorState::learn`] did.
#[derive(Debug, Clone)]
pub struct Learned {
    /// The retraining of the day, if one was due and data sufficed.
    pub retrained: Option<HybridFitReport>,
    /// Why a due retraining did not happen (too few transitions, a failed fit).
    pub retrain_skipped: Option<String>,
}

/// One warm retraining of `model` on its deduplicated dataset (the twin's, and a campaign's
/// shared model once all its reactors have learned the day): too few transitions, or a fit
/// that fails, keeps the previous model and says why.
pub(crate) fn retrain_model(model: &mut HybridModel, day: CultureDay) -> Learned {
    retrain_model_pausable(model, day, &|| {})
}

/// [`retrain_model`] that calls `pause` at the retraining's checkpoints
/// ([`HybridModel::retrain_pausable`]).
pub(crate) fn retrain_model_pausable(
    model: &mut HybridModel,
    day: CultureDay,
    pause: perfusio_hybrid::Pause<'_>,
) -> Learned {
    let mut learned = Learned {
        retrained: None,
        retrain_skipped: None,
    };
    match model.retrain_pausable(true, pause) {
        Ok(r) => learned.retrained = Some(r),
        Err(e @ HybridError::TooFewTransitions { .. }) => {
            learned.retrain_skipped = Some(e.to_string());
        }
        Err(e) => {
            tracing::warn!(day, error = %e, "retraining failed; keeping the previous model");
            learned.retrain_skipped = Some(format!("retraining failed: {e}"));
        }
    }
    learned
}

impl ReactorState {
    /// A reactor of run `run` whose setpoints in force are `initial`, watched by `rules`.
    pub fn new(run: impl Into<String>, initial: ControlArray<f64>, rules: Vec<AlarmRule>) -> Self {
        Self {
            run: run.into(),
            estimate: None,
            current: initial,
            alarms: AlarmTracker::new(rules),
        }
    }

    /// The run id under which the reactor's days enter the model's dataset.
    pub fn run(&self) -> &str {
        &self.run
    }

    /// The setpoints in force (acting over the coming day).
    pub fn current(&self) -> &ControlArray<f64> {
        &self.current
    }

    /// The filter's estimate of the latest day.
    pub fn estimate(&self) -> Option<&StateEstimate> {
        self.estimate.as_ref()
    }

    /// The alarm bookkeeping.
    pub fn alarms_mut(&mut self) -> &mut AlarmTracker {
        &mut self.alarms
    }

    /// Takes the controls a sample reports as applied (where it reports them) as the ones
    /// in force.
    pub fn take_reported(&mut self, reported: &[Option<f64>; N_CONTROLS]) {
        for (c, v) in self.current.iter_mut().zip(reported) {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                *c = v;
            }
        }
    }

    /// The learning step of day `day`: the filter predicts the day from the previous
    /// estimate under the setpoints in force and assimilates the accepted measurements
    /// (`None`: the day could not be read, the prediction stands); a read day enters the
    /// model's dataset with its estimate; then, when `retrain` is set, the model is
    /// retrained warm-started on the deduplicated dataset. Too few transitions (or a fit
    /// that fails) keeps the previous model and says why.
    pub fn learn(
        &mut self,
        model: &mut HybridModel,
        day: CultureDay,
        measured: Option<&SpeciesArray<Option<f64>>>,
        retrain: bool,
    ) -> Result<Learned> {
        let prior = match self.estimate.take() {
            Some(e) if e.day + 1 == day => Some(model.filter_predict(&e, &self.current)?),
            Some(e) => Some(e.widened(day)),
            None => None,
        };
        let none = [None; N_SPECIES];
        let est = model.filter_update(prior, day, measured.unwrap_or(&none))?;
        if let Some(m) = measured {
            model.record_day(&self.run, None, day, *m)?;
            model.record_estimate(&self.run, day, est.mean_species(&model.config().transform))?;
        }
        self.estimate = Some(est);
        let mut learned = Learned {
            retrained: None,
            retrain_skipped: None,
        };
        if retrain {
            learned = retrain_model(model, day);
        }
        Ok(learned)
    }

    /// Records what was added to the culture after day `day`'s sample (a bolus, a media
    /// exchange, as the change of each species in original units): the filter's estimate
    /// moves by it (its uncertainty stays), and, when the day's sample was recorded, the
    /// day's transition in the model's dataset starts from the sample plus it.
    pub fn added(
        &mut self,
        model: &mut HybridModel,
        day: CultureDay,
        delta: SpeciesArray<f64>,
        sample_recorded: bool,
    ) -> Result<()> {
        let tr = model.config().transform;
        if let Some(est) = self.estimate.as_mut().filter(|e| e.day == day) {
            let mut s = est.mean_species(&tr);
            for (x, d) in s.iter_mut().zip(delta) {
                *x = (*x + d).max(0.0);
            }
            est.z = tr.to_z(&s);
        }
        if sample_recorded {
            model.record_addition(&self.run, day, delta)?;
        }
        Ok(())
    }

    /// Ends day `day`: `applied` acted over `day → day + 1`. It becomes the setpoints in
    /// force and, when the day's sample was recorded, the day's applied controls in the
    /// model's dataset.
    pub fn applied(
        &mut self,
        model: &mut HybridModel,
        day: CultureDay,
        applied: ControlArray<f64>,
        sample_recorded: bool,
    ) -> Result<()> {
        self.current = applied;
        if sample_recorded {
            model.record_applied(&self.run, day, applied)?;
        }
        Ok(())
    }
}
