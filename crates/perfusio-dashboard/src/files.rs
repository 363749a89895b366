//! Bounded reads of the campaign directory: the snapshot (size-checked), the tails of the
//! action and outcome logs, and a cheap version stamp that changes when any of them does.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use perfusio_twin::campaign_files::{
    ACTIONS_FILE, ActionOutcome, CampaignSnapshot, OUTCOMES_FILE, OperatorAction, SNAPSHOT_FILE,
    read_snapshot,
};
use serde::de::DeserializeOwned;

/// The largest snapshot read (bytes); a larger one is shown as an error.
pub const MAX_SNAPSHOT_BYTES: u64 = 64 << 20;
/// How much of the end of `actions.jsonl` / `outcomes.jsonl` is read (bytes).
pub const LOG_TAIL_BYTES: u64 = 256 << 10;
/// The most actions shown.
pub const MAX_ACTIONS_SHOWN: usize = 50;
/// The most outcomes kept for matching and display.
pub const MAX_OUTCOMES_SHOWN: usize = 200;

/// A stamp of the three files (modification time and length): equal stamps, same content.
pub fn version(dir: &Path) -> String {
    let stamp = |name: &str| match fs::metadata(dir.join(name)) {
        Ok(m) => {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{t}.{}", m.len())
        }
        Err(_) => "0".into(),
    };
    format!(
        "{}-{}-{}",
        stamp(SNAPSHOT_FILE),
        stamp(ACTIONS_FILE),
        stamp(OUTCOMES_FILE)
    )
}

/// The snapshot, `Ok(None)` before the campaign published one; an error as text for the page.
pub fn snapshot(dir: &Path) -> Result<Option<CampaignSnapshot>, String> {
    let path = dir.join(SNAPSHOT_FILE);
    match fs::metadata(&path) {
        Ok(m) if m.len() > MAX_SNAPSHOT_BYTES => {
            return Err(format!(
                "{}: {} bytes; at most {MAX_SNAPSHOT_BYTES} are read",
                path.display(),
                m.len()
            ));
        }
        _ => {}
    }
    read_snapshot(dir).map_err(|e| e.to_string())
}

/// The last `max` well-formed lines of a JSON-lines file, reading at most [`LOG_TAIL_BYTES`]
/// from its end (a cut first line and malformed lines are skipped).
fn tail<T: DeserializeOwned>(path: &Path, max: usize) -> Vec<T> {
    let Ok(mut f) = fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.take(LOG_TAIL_BYTES).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines: Vec<&str> = text.lines().collect();
    if start > 0 && !lines.is_empty() {
        lines.remove(0);
    }
    let mut out: Vec<T> = lines
        .iter()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .take(max)
        .collect();
    out.reverse();
    out
}

/// The latest operator actions, oldest first.
pub fn recent_actions(dir: &Path) -> Vec<OperatorAction> {
    tail(&dir.join(ACTIONS_FILE), MAX_ACTIONS_SHOWN)
}

/// The latest outcomes, oldest first.
pub fn recent_outcomes(dir: &Path) -> Vec<ActionOutcome> {
    tail(&dir.join(OUTCOMES_FILE), MAX_OUTCOMES_SHOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_and_skips_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..300 {
            text.push_str(&format!(
                "{{\"action\":\"a{i}\",\"accepted\":true,\"reason\":\"ok\",\"at\":\"t\"}}\n"
            ));
            if i == 299 {
                text.push_str("not json\n");
            }
        }
        fs::write(dir.path().join(OUTCOMES_FILE), text).unwrap();
        let got = recent_outcomes(dir.path());
        assert_eq!(got.len(), MAX_OUTCOMES_SHOWN);
        assert_eq!(got.last().map(|o| o.action.as_str()), Some("a299"));
        assert!(recent_actions(dir.path()).is_empty());
        let v1 = version(dir.path());
        fs::write(dir.path().join(ACTIONS_FILE), "x\n").unwrap();
        assert_ne!(v1, version(dir.path()));
    }
}
