//! [`NodeMap`]: which OPC UA node holds which species, derived variable, control and the
//! culture day of one reactor.

use std::collections::BTreeMap;

use perfusio_core::{ConnectorError, Control, Derived, Species};
use serde::{Deserialize, Serialize};

/// Namespace URI of the ambr250-style address space served by the emulator
/// ([`crate::opcua::Emulator`]) and assumed by [`NodeMap::ambr250`].
pub const AMBR250_NAMESPACE_URI: &str = "urn:perfusio:ambr250";

/// Browse name of the culture-day variable (days since inoculation, a Double).
pub const CULTURE_DAY: &str = "CultureDay";

/// Browse name of the emulator's on-demand time control: writing `n` (a whole number of
/// days, 1–365, as a Double) advances the reactor by `n` culture days.
pub const ADVANCE_DAYS: &str = "AdvanceDays";

/// The string NodeId of variable `name` in reactor folder `reactor_id` of the ambr250-style
/// namespace: `"{reactor_id}.{name}"`.
pub fn ambr250_node_id(reactor_id: &str, name: &str) -> String {
    format!("{reactor_id}.{name}")
}

/// Where each variable of one reactor lives on the server.
///
/// Node identifiers use the OPC UA text form and may name their namespace by URI (`nsu=`),
/// which is resolved when the client connects (namespace indices are server-assigned and
/// can change between server restarts), or by index (`ns=`):
///
/// - `nsu=urn:perfusio:ambr250;s=R01.VCD`
/// - `ns=2;s=Reactor1/VCD`, `ns=3;i=1042`
///
/// Species, derived variables or controls absent from the map are simply not read
/// (reported as not measured) or not written (the receipt says so).
///
/// The default for an ambr250-style namespace ([`NodeMap::ambr250`]) has one folder per
/// reactor (browse name = reactor id) whose variables have the canonical names as browse
/// names and `"{reactor}.{name}"` as string NodeIds: `VCD, Via, Glc, Gln, Glu, Lac, Amm,
/// Pyr, Titer, VCV, Diam, CultureDay` and the six controls `perfusion_rate, bleed_rate,
/// glucose_setpoint, temperature, agitation, pyruvate_feed`.
///
/// ```
/// use perfusio_connectors::opcua::NodeMap;
/// use perfusio_core::{Control, Species};
/// let m = NodeMap::ambr250("R03");
/// assert_eq!(m.species[&Species::Titer], "nsu=urn:perfusio:ambr250;s=R03.Titer");
/// assert_eq!(m.controls[&Control::BleedRate], "nsu=urn:perfusio:ambr250;s=R03.bleed_rate");
/// // override one entry from configuration (TOML or JSON)
/// let json = r#"{"reactor_id":"A1","culture_day":"ns=2;s=A1/Day",
///                "species":{"VCD":"ns=2;s=A1/Xv"},"controls":{"temperature":"ns=2;s=A1/T"}}"#;
/// let m: NodeMap = serde_json::from_str(json).unwrap();
/// assert_eq!(m.species.len(), 1);
/// assert!(m.derived.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMap {
    /// Reactor identifier reported in [`perfusio_core::Sample::reactor_id`].
    pub reactor_id: String,
    /// Node of the culture day (days since inoculation; the day a read belongs to).
    pub culture_day: String,
    /// Species nodes.
    #[serde(default)]
    pub species: BTreeMap<Species, String>,
    /// Derived-variable nodes (VCV, Diam), if the instrument reports them.
    #[serde(default)]
    pub derived: BTreeMap<Derived, String>,
    /// Setpoint nodes (written by `write_setpoints`, read back to confirm).
    #[serde(default)]
    pub controls: BTreeMap<Control, String>,
}

impl NodeMap {
    /// The default map of one reactor folder of the ambr250-style namespace
    /// ([`AMBR250_NAMESPACE_URI`]).
    pub fn ambr250(reactor_id: &str) -> Self {
        let node = |name: &str| {
            format!(
                "nsu={AMBR250_NAMESPACE_URI};s={}",
                ambr250_node_id(reactor_id, name)
            )
        };
        Self {
            reactor_id: reactor_id.to_string(),
            culture_day: node(CULTURE_DAY),
            species: Species::ALL.iter().map(|s| (*s, node(s.name()))).collect(),
            derived: Derived::ALL.iter().map(|d| (*d, node(d.name()))).collect(),
            controls: Control::ALL.iter().map(|c| (*c, node(c.name()))).collect(),
        }
    }

    /// Every entry as `(label, node text)`, culture day first, then species, derived
    /// variables and controls in canonical order. Labels are canonical names.
    pub fn entries(&self) -> Vec<(String, &str)> {
        let mut out = vec![(CULTURE_DAY.to_string(), self.culture_day.as_str())];
        out.extend(
            self.species
                .iter()
                .map(|(k, v)| (k.name().to_string(), v.as_str())),
        );
        out.extend(
            self.derived
                .iter()
                .map(|(k, v)| (k.name().to_string(), v.as_str())),
        );
        out.extend(
            self.controls
                .iter()
                .map(|(k, v)| (k.name().to_string(), v.as_str())),
        );
        out
    }

    /// Checks that every entry is a well-formed node identifier (syntax only; existence
    /// is checked by the server on the first read).
    pub fn check(&self) -> Result<(), ConnectorError> {
        for (label, text) in self.entries() {
            parse_node_text(text).map_err(|message| ConnectorError::Node {
                node: format!("{label} ({text})"),
                status: message,
            })?;
        }
        Ok(())
    }
}

/// A node identifier whose namespace is given by URI or by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeText {
    /// `nsu=<uri>;<id>`: namespace resolved at connect time.
    ByUri {
        /// Namespace URI.
        uri: String,
        /// Identifier part (`s=...`, `i=...`, `g=...`, `b=...`).
        id: String,
    },
    /// Anything the OPC UA text form accepts (`ns=2;s=..`, `i=85`).
    Plain(String),
}

/// Splits `nsu=` forms; other forms are left to the OPC UA parser.
pub(crate) fn parse_node_text(text: &str) -> Result<NodeText, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty node identifier".into());
    }
    if let Some(rest) = t.strip_prefix("nsu=") {
        let Some((uri, id)) = rest.split_once(';') else {
            return Err("expected 'nsu=<namespace uri>;s=<name>' (missing ';')".into());
        };
        if uri.is_empty() || !has_id_prefix(id) {
            return Err("expected 'nsu=<namespace uri>;<s=|i=|g=|b=><identifier>'".into());
        }
        return Ok(NodeText::ByUri {
            uri: uri.to_string(),
            id: id.to_string(),
        });
    }
    let id = match t.split_once(';') {
        Some((ns, id)) if ns.starts_with("ns=") => id,
        Some(_) => {
            return Err("expected 'ns=<index>;<identifier>' or 'nsu=<uri>;<identifier>'".into());
        }
        None => t,
    };
    if !has_id_prefix(id) {
        return Err("identifier must start with s=, i=, g= or b=".into());
    }
    Ok(NodeText::Plain(t.to_string()))
}

fn has_id_prefix(id: &str) -> bool {
    ["s=", "i=", "g=", "b="]
        .iter()
        .any(|p| id.len() > 2 && id.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_map_is_complete_and_well_formed() {
        let m = NodeMap::ambr250("R01");
        assert_eq!(m.species.len(), 9);
        assert_eq!(m.derived.len(), 2);
        assert_eq!(m.controls.len(), 6);
        assert_eq!(m.entries().len(), 18);
        m.check().unwrap();
        assert_eq!(m.culture_day, "nsu=urn:perfusio:ambr250;s=R01.CultureDay");
    }

    #[test]
    fn malformed_entries_are_named() {
        let mut m = NodeMap::ambr250("R01");
        m.species.insert(Species::Glc, "nsu=urn:x".into());
        let e = m.check().unwrap_err().to_string();
        assert_eq!(
            e,
            "node Glc (nsu=urn:x): expected 'nsu=<namespace uri>;s=<name>' (missing ';')"
        );
        assert!(parse_node_text("ns=2;s=A").is_ok());
        assert!(parse_node_text("i=85").is_ok());
        assert!(parse_node_text("x=2;s=A").is_err());
        assert!(parse_node_text("").is_err());
    }

    #[test]
    fn serde_round_trip() {
        let m = NodeMap::ambr250("R02");
        let json = serde_json::to_string(&m).unwrap();
        assert!(
            json.contains(r#""perfusion_rate":"nsu=urn:perfusio:ambr250;s=R02.perfusion_rate""#)
        );
        assert_eq!(serde_json::from_str::<NodeMap>(&json).unwrap(), m);
    }
}
