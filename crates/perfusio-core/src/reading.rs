//! The one validation boundary: what a connector read for a day ([`RawReading`]) and the
//! single step that turns it into accepted values plus rejections
//! ([`RawReading::validate`] → [`ValidatedSample`]).
//!
//! Every connector hands back the day's values **exactly as read**: numbers in canonical
//! units (the connector maps names and units) but not yet checked, and every value that
//! could not even be read as a number kept as its text or the source's status, each with
//! its [`Origin`] (file line and column, OPC UA node, simulator). Validation is the same
//! code for every connector, so a twin holding any `dyn Connector` audits the same
//! rejections, with the same codes, in the same order.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::CultureDay;
use crate::controls::{Control, N_CONTROLS};
use crate::design_space::DesignSpace;
use crate::sample::Sample;
use crate::species::{Derived, N_DERIVED, N_SPECIES, Species, Variable};

/// Number of [`Quantity`] slots: 9 species, 2 derived variables, 6 controls.
pub const N_QUANTITIES: usize = N_SPECIES + N_DERIVED + N_CONTROLS;

/// Anything a connector reports for a day: a modelled species, a derived variable, or a
/// control reported as applied.
///
/// Serialised as the canonical name (`"VCD"`, `"VCV"`, `"perfusion_rate"`).
///
/// ```
/// use perfusio_core::{Control, Quantity, Species, N_QUANTITIES};
/// assert_eq!(Quantity::from(Species::Titer).index(), 8);
/// assert_eq!(Quantity::from(Control::PerfusionRate).index(), 11);
/// assert_eq!(Quantity::from_index(N_QUANTITIES - 1), Some(Quantity::Control(Control::PyruvateFeed)));
/// assert_eq!(Quantity::lookup("bleed"), Some(Quantity::Control(Control::BleedRate)));
/// assert_eq!(Quantity::lookup("Diameter").map(Quantity::name), Some("Diam"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    /// A modelled species.
    Species(Species),
    /// A derived variable (VCV, Diam).
    Derived(Derived),
    /// A control, as the source reports it applied.
    Control(Control),
}

impl Quantity {
    /// Position in the canonical order: species `0..9`, derived variables `9..11`,
    /// controls `11..17`.
    pub const fn index(self) -> usize {
        match self {
            Self::Species(s) => s.index(),
            Self::Derived(d) => N_SPECIES + d.index(),
            Self::Control(c) => N_SPECIES + N_DERIVED + c.index(),
        }
    }

    /// The quantity at canonical position `index`, if any.
    pub fn from_index(index: usize) -> Option<Self> {
        if index < N_SPECIES {
            Species::from_index(index).map(Self::Species)
        } else if index < N_SPECIES + N_DERIVED {
            Derived::from_index(index - N_SPECIES).map(Self::Derived)
        } else {
            Control::from_index(index - N_SPECIES - N_DERIVED).map(Self::Control)
        }
    }

    /// Every quantity in canonical order.
    pub fn all() -> impl Iterator<Item = Quantity> {
        (0..N_QUANTITIES).filter_map(Self::from_index)
    }

    /// Canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Species(s) => s.name(),
            Self::Derived(d) => d.name(),
            Self::Control(c) => c.name(),
        }
    }

    /// Unit of measurement.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Species(s) => s.unit(),
            Self::Derived(d) => d.unit(),
            Self::Control(c) => c.unit(),
        }
    }

    /// The measured variable, unless this is a control.
    pub fn as_variable(self) -> Option<Variable> {
        match self {
            Self::Species(s) => Some(Variable::Species(s)),
            Self::Derived(d) => Some(Variable::Derived(d)),
            Self::Control(_) => None,
        }
    }

    /// Case-insensitive lookup of species, derived-variable and control names and aliases
    /// (see [`normalise_name`](crate::normalise_name)).
    pub fn lookup(name: &str) -> Option<Quantity> {
        Variable::lookup(name)
            .map(Quantity::from)
            .or_else(|| Control::lookup(name).map(Quantity::Control))
    }
}

impl From<Species> for Quantity {
    fn from(s: Species) -> Self {
        Self::Species(s)
    }
}

impl From<Derived> for Quantity {
    fn from(d: Derived) -> Self {
        Self::Derived(d)
    }
}

impl From<Control> for Quantity {
    fn from(c: Control) -> Self {
        Self::Control(c)
    }
}

impl From<Variable> for Quantity {
    fn from(v: Variable) -> Self {
        match v {
            Variable::Species(s) => Self::Species(s),
            Variable::Derived(d) => Self::Derived(d),
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value as the source delivered it, before any check.
///
/// Serialised as a JSON number (`"NaN"`, `"inf"`, `"-inf"` for non-finite numbers), or
/// `{"text": "..."}`, or `{"bad_status": "..."}`.
///
/// Equality compares numbers bit for bit (so a NaN equals the same NaN): two readings are
/// equal when they hold the same values as read.
#[derive(Debug, Clone)]
pub enum RawValue {
    /// A number, in the canonical unit of its quantity; may be NaN, infinite or implausible.
    Number(f64),
    /// A value that could not be read as a number, kept verbatim (e.g. the CSV cell `abc`,
    /// or the text of an OPC UA value of another type).
    Text(String),
    /// The source returned an error status instead of a value (e.g. the OPC UA status
    /// `BadSensorFailure`).
    BadStatus(String),
}

impl RawValue {
    /// The number, if the value is one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Self::Number(v) => Some(*v),
            _ => None,
        }
    }
}

impl PartialEq for RawValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Number(a), Self::Number(b)) => a.to_bits() == b.to_bits(),
            (Self::Text(a), Self::Text(b)) | (Self::BadStatus(a), Self::BadStatus(b)) => a == b,
            _ => false,
        }
    }
}

impl From<f64> for RawValue {
    fn from(v: f64) -> Self {
        Self::Number(v)
    }
}

impl fmt::Display for RawValue {
    /// Numbers as Rust prints them (`NaN`, `inf`), text and statuses verbatim.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(v) => write!(f, "{v}"),
            Self::Text(t) | Self::BadStatus(t) => f.write_str(t),
        }
    }
}

impl Serialize for RawValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Self::Number(v) => crate::serde_util::f64_any::serialize(v, s),
            Self::Text(t) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("text", t)?;
                m.end()
            }
            Self::BadStatus(t) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("bad_status", t)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(#[serde(with = "crate::serde_util::f64_any")] f64),
            Text { text: String },
            BadStatus { bad_status: String },
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Number(v) => Self::Number(v),
            Repr::Text { text } => Self::Text(text),
            Repr::BadStatus { bad_status } => Self::BadStatus(bad_status),
        })
    }
}

/// Where a raw value came from, so that a rejection can name the place to fix.
///
/// ```
/// use perfusio_core::Origin;
/// let o = Origin::Cell { file: "data.csv".into(), line: 7, column: "glucose".into() };
/// assert_eq!(o.to_string(), "data.csv line 7, column `glucose`");
/// let o = Origin::Node { server: "opc.tcp://10.0.0.5:4840/".into(), node: "ns=2;s=R01/Glc".into() };
/// assert_eq!(o.to_string(), "node ns=2;s=R01/Glc on opc.tcp://10.0.0.5:4840/");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Origin {
    /// A cell of a file (CSV, Parquet, a DataFrame).
    Cell {
        /// The file (or a label such as `<DataFrame>`).
        file: String,
        /// 1-based line as a text editor shows it (the header is line 1).
        line: u64,
        /// The column header (in long files: the value column's header).
        column: String,
    },
    /// An addressed item of a server, e.g. an OPC UA node.
    Node {
        /// The server (endpoint URL).
        server: String,
        /// The node identifier as configured (e.g. `ns=2;s=R01/Glc`).
        node: String,
    },
    /// A source without finer addressing (a simulator, an in-memory sample).
    Source {
        /// What it is, e.g. `virtual reactor R01`.
        name: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cell { file, line, column } => write!(f, "{file} line {line}, column `{column}`"),
            Self::Node { server, node } => write!(f, "node {node} on {server}"),
            Self::Source { name } => f.write_str(name),
        }
    }
}

/// One value of a [`RawReading`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEntry {
    /// What it is a value of.
    pub quantity: Quantity,
    /// The value as read.
    pub value: RawValue,
    /// Where it was read.
    pub origin: Origin,
}

/// A culture day's values exactly as a connector read them: what
/// [`Connector::read_raw`](crate::Connector::read_raw) returns. Nothing is checked yet;
/// [`RawReading::validate`] is the one step that accepts or rejects each value.
///
/// A quantity the source did not report is simply absent. At most one entry is kept per
/// quantity ([`RawReading::push`] replaces an earlier one).
///
/// ```
/// use perfusio_core::{
///     DEFAULT_AMBR250_DESIGN_SPACE as DS, Origin, Quantity, RawReading, RawValue, Species,
/// };
/// let cell = |line, column: &str| Origin::Cell { file: "run.csv".into(), line, column: column.into() };
/// let raw = RawReading::new(4)
///     .with(Species::VCD, RawValue::Number(12.5), cell(6, "VCD"))
///     .with(Species::Glc, RawValue::Text("n.d.?".into()), cell(6, "glucose"))
///     .with(Species::Titer, RawValue::Number(7000.0), cell(6, "titer"));
/// let checked = raw.validate(&DS);
/// assert_eq!(checked.sample.get(Species::VCD), Some(12.5));
/// let codes: Vec<_> = checked.rejections.iter().map(|r| (r.variable.name(), r.reason.code())).collect();
/// assert_eq!(codes, [("Glc", "not_a_number"), ("Titer", "above_bound")]);
/// assert_eq!(
///     checked.rejections[0].to_string(),
///     "Glc: `n.d.?` is not a number (run.csv line 6, column `glucose`)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawReading {
    /// Culture day of the reading.
    pub day: CultureDay,
    /// Reactor the values come from.
    #[serde(default)]
    pub reactor_id: Option<String>,
    /// When the sample was taken (or the read completed).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub timestamp: Option<OffsetDateTime>,
    entries: Vec<RawEntry>,
}

impl RawReading {
    /// A reading of `day` with no values yet.
    pub fn new(day: CultureDay) -> Self {
        Self {
            day,
            reactor_id: None,
            timestamp: None,
            entries: Vec::new(),
        }
    }

    /// Adds the value of `quantity`, replacing an earlier entry for it.
    pub fn push(&mut self, quantity: impl Into<Quantity>, value: RawValue, origin: Origin) {
        let quantity = quantity.into();
        let entry = RawEntry {
            quantity,
            value,
            origin,
        };
        match self.entries.iter_mut().find(|e| e.quantity == quantity) {
            Some(old) => *old = entry,
            None => self.entries.push(entry),
        }
    }

    /// Returns the reading with one more value (see [`RawReading::push`]).
    #[must_use]
    pub fn with(mut self, quantity: impl Into<Quantity>, value: RawValue, origin: Origin) -> Self {
        self.push(quantity, value, origin);
        self
    }

    /// Every value, in the order they were added.
    pub fn entries(&self) -> &[RawEntry] {
        &self.entries
    }

    /// The entry of `quantity`, if the source reported it.
    pub fn get(&self, quantity: impl Into<Quantity>) -> Option<&RawEntry> {
        let q = quantity.into();
        self.entries.iter().find(|e| e.quantity == q)
    }

    /// The value of `quantity` if the source reported it as a number (checked or not).
    pub fn number(&self, quantity: impl Into<Quantity>) -> Option<f64> {
        self.get(quantity).and_then(|e| e.value.as_number())
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` when the source reported nothing for the day.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The raw reading of an in-memory sample: every present species, derived variable and
    /// control as a number from `origin`, with the sample's day, reactor and timestamp.
    pub fn from_sample(sample: &Sample, origin: &Origin) -> Self {
        let mut raw = Self::new(sample.day);
        raw.reactor_id.clone_from(&sample.reactor_id);
        raw.timestamp = sample.timestamp;
        for q in Quantity::all() {
            if let Some(v) = sample.quantity(q) {
                raw.entries.push(RawEntry {
                    quantity: q,
                    value: RawValue::Number(v),
                    origin: origin.clone(),
                });
            }
        }
        raw
    }

    /// The one validation step, the same for every connector: each value is accepted into
    /// the sample or rejected with its reason and origin. Numbers must be finite and inside
    /// [`DesignSpace::plausible_range`] (plausible ranges for measured variables, absolute
    /// limits for controls); text and bad statuses are always rejected. Rejections are
    /// listed in canonical quantity order (species, derived, controls), so every connector
    /// reports the same day the same way. Nothing is dropped: accepted + rejected = read.
    pub fn validate(&self, design_space: &DesignSpace) -> ValidatedSample {
        let mut sample = Sample::new(self.day);
        sample.reactor_id.clone_from(&self.reactor_id);
        sample.timestamp = self.timestamp;
        let mut rejections = Vec::new();
        for e in &self.entries {
            match RejectionReason::of(&e.value, e.quantity, design_space) {
                None => sample.set_quantity(e.quantity, e.value.as_number()),
                Some(reason) => rejections.push(Rejection {
                    variable: e.quantity,
                    value: e.value.clone(),
                    reason,
                    origin: e.origin.clone(),
                }),
            }
        }
        rejections.sort_by_key(|r| r.variable.index());
        ValidatedSample { sample, rejections }
    }
}

/// Why a reported value was rejected; [`RejectionReason::code`] is its stable name.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectionReason {
    /// The value could not be read as a number ([`RawValue::Text`]).
    NotANumber,
    /// The source returned an error status instead of a value ([`RawValue::BadStatus`]).
    BadStatus,
    /// NaN or infinite.
    NonFinite,
    /// Below the plausible range (a control: below its absolute lower limit).
    BelowBound {
        /// The lower bound.
        bound: f64,
    },
    /// Above the plausible range (a control: above its absolute upper limit).
    AboveBound {
        /// The upper bound.
        bound: f64,
    },
}

impl RejectionReason {
    /// The reason the number `value` is implausible for `quantity`, or `None` if it is
    /// acceptable.
    pub fn classify(value: f64, ds: &DesignSpace, quantity: impl Into<Quantity>) -> Option<Self> {
        let b = ds.plausible_range(quantity.into());
        if !value.is_finite() {
            Some(Self::NonFinite)
        } else if value < b.lower {
            Some(Self::BelowBound { bound: b.lower })
        } else if value > b.upper {
            Some(Self::AboveBound { bound: b.upper })
        } else {
            None
        }
    }

    /// The reason the raw `value` of `quantity` is not acceptable, or `None` if it is.
    pub fn of(value: &RawValue, quantity: Quantity, ds: &DesignSpace) -> Option<Self> {
        match value {
            RawValue::Number(v) => Self::classify(*v, ds, quantity),
            RawValue::Text(_) => Some(Self::NotANumber),
            RawValue::BadStatus(_) => Some(Self::BadStatus),
        }
    }

    /// Stable machine-readable code: `not_a_number`, `bad_status`, `non_finite`,
    /// `below_bound` or `above_bound`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotANumber => "not_a_number",
            Self::BadStatus => "bad_status",
            Self::NonFinite => "non_finite",
            Self::BelowBound { .. } => "below_bound",
            Self::AboveBound { .. } => "above_bound",
        }
    }
}

/// A reported value that was not accepted: what, the value as read, why, and where from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The quantity concerned.
    pub variable: Quantity,
    /// The value as read (its `Display` is the raw text).
    pub value: RawValue,
    /// Why it was rejected.
    pub reason: RejectionReason,
    /// Where it was read.
    pub origin: Origin,
}

impl Rejection {
    /// The reason's stable code (see [`RejectionReason::code`]).
    pub fn code(&self) -> &'static str {
        self.reason.code()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (v, raw, origin) = (self.variable, &self.value, &self.origin);
        match self.reason {
            RejectionReason::NotANumber => write!(f, "{v}: `{raw}` is not a number ({origin})"),
            RejectionReason::BadStatus => {
                write!(
                    f,
                    "{v}: the source reported {raw} instead of a value ({origin})"
                )
            }
            RejectionReason::NonFinite => {
                write!(f, "{v} = {raw} is not a finite number ({origin})")
            }
            RejectionReason::BelowBound { bound } => {
                write!(f, "{v} = {raw} {} is below {bound} ({origin})", v.unit())
            }
            RejectionReason::AboveBound { bound } => {
                write!(f, "{v} = {raw} {} is above {bound} ({origin})", v.unit())
            }
        }
    }
}

/// The result of [`RawReading::validate`]: the accepted values, and every rejected one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatedSample {
    /// The sample with only accepted values present.
    pub sample: Sample,
    /// Every rejected value, with its reason and origin, in canonical quantity order.
    pub rejections: Vec<Rejection>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design_space::DEFAULT_AMBR250_DESIGN_SPACE as DS;

    fn src() -> Origin {
        Origin::Source {
            name: "test".into(),
        }
    }

    #[test]
    fn quantity_index_round_trips_and_orders() {
        let all: Vec<_> = Quantity::all().collect();
        assert_eq!(all.len(), N_QUANTITIES);
        for (i, q) in all.iter().enumerate() {
            assert_eq!(q.index(), i);
            assert_eq!(Quantity::from_index(i), Some(*q));
            assert_eq!(Quantity::lookup(q.name()), Some(*q));
        }
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Quantity::from_index(N_QUANTITIES), None);
        assert_eq!(Quantity::lookup("t"), None);
        assert_eq!(
            serde_json::to_string(&all[..]).unwrap(),
            r#"["VCD","Via","Glc","Gln","Glu","Lac","Amm","Pyr","Titer","VCV","Diam","perfusion_rate","bleed_rate","glucose_setpoint","temperature","agitation","pyruvate_feed"]"#
        );
        let back: Vec<Quantity> =
            serde_json::from_str(&serde_json::to_string(&all).unwrap()).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn every_reason_code_is_produced_in_canonical_order() {
        // added out of order on purpose
        let raw = RawReading::new(2)
            .with(Control::Agitation, RawValue::Number(1200.0), src())
            .with(Species::Titer, RawValue::Number(6000.0), src())
            .with(Species::Glc, RawValue::Text("abc".into()), src())
            .with(Species::VCD, RawValue::Number(-0.1), src())
            .with(Species::Lac, RawValue::Number(100.0), src()) // on the bound: accepted
            .with(
                Species::Gln,
                RawValue::BadStatus("BadSensorFailure".into()),
                src(),
            )
            .with(Derived::Diam, RawValue::Number(f64::NAN), src())
            .with(Control::PerfusionRate, RawValue::Number(1.5), src());
        let v = raw.validate(&DS);
        let codes: Vec<_> = v
            .rejections
            .iter()
            .map(|r| (r.variable.name(), r.code()))
            .collect();
        assert_eq!(
            codes,
            [
                ("VCD", "below_bound"),
                ("Glc", "not_a_number"),
                ("Gln", "bad_status"),
                ("Titer", "above_bound"),
                ("Diam", "non_finite"),
                ("agitation", "above_bound"),
            ]
        );
        assert_eq!(v.sample.get(Species::Lac), Some(100.0));
        assert_eq!(v.sample.control(Control::PerfusionRate), Some(1.5));
        assert_eq!(v.sample.control(Control::Agitation), None);
        assert_eq!(v.sample.n_present(), 1);
        // nothing is lost: accepted + rejected = read
        let accepted = Quantity::all()
            .filter(|q| v.sample.quantity(*q).is_some())
            .count();
        assert_eq!(accepted + v.rejections.len(), raw.len());
        assert_eq!(
            v.rejections[0].to_string(),
            "VCD = -0.1 1e6 cells/mL is below 0 (test)"
        );
        assert_eq!(
            v.rejections[2].to_string(),
            "Gln: the source reported BadSensorFailure instead of a value (test)"
        );
        assert_eq!(
            v.rejections[5].to_string(),
            "agitation = 1200 rpm is above 1050 (test)"
        );
    }

    #[test]
    fn push_replaces_and_get_finds() {
        let mut raw = RawReading::new(0);
        raw.push(Species::VCD, RawValue::Number(1.0), src());
        raw.push(Species::VCD, RawValue::Number(2.0), src());
        assert_eq!(raw.len(), 1);
        assert_eq!(raw.number(Species::VCD), Some(2.0));
        assert_eq!(raw.get(Species::Via), None);
        assert!(RawReading::new(1).is_empty());
    }

    #[test]
    fn raw_values_serialise_and_compare_as_read() {
        let values = [
            RawValue::Number(2.5),
            RawValue::Number(f64::NAN),
            RawValue::Number(f64::NEG_INFINITY),
            RawValue::Text("12,3,4".into()),
            RawValue::BadStatus("BadNoCommunication".into()),
        ];
        let json = serde_json::to_string(&values).unwrap();
        assert_eq!(
            json,
            r#"[2.5,"NaN","-inf",{"text":"12,3,4"},{"bad_status":"BadNoCommunication"}]"#
        );
        let back: Vec<RawValue> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, values);
        assert_ne!(RawValue::Number(1.0), RawValue::Text("1".into()));
        assert!(serde_json::from_str::<RawValue>(r#""lots""#).is_err());
        assert_eq!(values[1].to_string(), "NaN");
    }

    #[test]
    fn rejection_and_reading_serde() {
        let raw = RawReading::new(2).with(
            Species::Gln,
            RawValue::Number(f64::NAN),
            Origin::Cell {
                file: "a.csv".into(),
                line: 3,
                column: "Gln".into(),
            },
        );
        let v = raw.validate(&DS);
        let json = serde_json::to_string(&v.rejections[0]).unwrap();
        assert_eq!(
            json,
            r#"{"variable":"Gln","value":"NaN","reason":{"code":"non_finite"},"origin":{"kind":"cell","file":"a.csv","line":3,"column":"Gln"}}"#
        );
        let back: Rejection = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v.rejections[0]);
        let json = serde_json::to_string(&raw).unwrap();
        assert_eq!(serde_json::from_str::<RawReading>(&json).unwrap(), raw);
    }
}
