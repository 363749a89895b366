//! [`Secret`]: a string that never reaches logs, debug output or serialised records.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Text shown in place of a secret.
pub const REDACTED: &str = "***redacted***";

/// A credential (password, token). `Debug`, `Display` and `Serialize` print
/// [`REDACTED`]; only [`Secret::expose`] gives the value, at the point of use.
///
/// ```
/// use perfusio_core::Secret;
/// let pw = Secret::new("hunter2");
/// assert_eq!(format!("{pw:?} {pw}"), "Secret(***redacted***) ***redacted***");
/// assert_eq!(serde_json::to_string(&pw).unwrap(), "\"***redacted***\"");
/// assert_eq!(pw.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for handing to the protocol layer only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}
