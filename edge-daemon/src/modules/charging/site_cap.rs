//! The power the chargers may share: the configured site cap, or, with
//! `other_load_panels`, the cap minus what those panel meters read now (the rest of the
//! depot: workshop, offices, lights), so charging gets what the site has left. A panel
//! gone quiet counts at the most it drew in the last day, so a dead meter never frees
//! power that may be in use; one never heard from counts nothing and is named stale
//! (on the Charging page) until it reports.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// A panel reading older than this is not "now".
pub const FRESH_MS: i64 = 2 * 60_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SiteCap {
    /// The configured site cap, W.
    pub site_w: i64,
    /// The other load taken off it, W.
    pub other_w: i64,
    /// What the chargers share, W (never below 0).
    pub charging_w: i64,
    /// Panels counted at their day's peak: silent, or never heard.
    pub stale: Vec<String>,
}

/// The other load one panel stands for at `now`, and whether it was fresh.
fn panel_load(c: &Connection, panel: &str, now: i64) -> rusqlite::Result<(i64, bool)> {
    let last: Option<(i64, Option<i64>)> = c
        .query_row(
            "SELECT last_ms, power_w FROM charging_panels WHERE panel = ?1",
            [panel],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((ts, Some(w))) = last {
        if now - ts <= FRESH_MS {
            return Ok((w.max(0), true));
        }
    }
    let peak: Option<i64> = c.query_row(
        "SELECT MAX(power_w) FROM charging_panel_readings WHERE panel = ?1 AND ts_ms >= ?2",
        params![panel, now - 86_400_000],
        |r| r.get(0),
    )?;
    Ok((peak.unwrap_or(0).max(0), false))
}

/// The chargers' share of `site_w` at `now`.
pub fn charging_cap(
    c: &Connection,
    site_w: i64,
    panels: &[String],
    now: i64,
) -> rusqlite::Result<SiteCap> {
    let mut cap = SiteCap {
        site_w,
        ..SiteCap::default()
    };
    for p in panels {
        let (w, fresh) = panel_load(c, p, now)?;
        cap.other_w += w;
        if !fresh {
            cap.stale.push(p.clone());
        }
    }
    cap.charging_w = (site_w - cap.other_w).max(0);
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(super::super::meters::MIGRATION.sql)
            .unwrap();
        c
    }

    fn reading(c: &Connection, panel: &str, ts: i64, w: i64) {
        c.execute(
            "INSERT INTO charging_panel_readings (panel, ts_ms, energy_wh, power_w, received_ms) VALUES (?1, ?2, 0, ?3, ?2)",
            params![panel, ts, w],
        )
        .unwrap();
        c.execute(
            "INSERT INTO charging_panels (panel, last_ms, power_w) VALUES (?1, ?2, ?3)
             ON CONFLICT(panel) DO UPDATE SET last_ms = excluded.last_ms, power_w = excluded.power_w",
            params![panel, ts, w],
        )
        .unwrap();
    }

    #[test]
    fn the_other_load_now_comes_off_and_a_silent_panel_counts_at_its_peak() {
        let c = db();
        let now = 1_800_000_000_000;
        reading(&c, "WS", now - 3_600_000, 90_000);
        reading(&c, "WS", now - 30_000, 40_000);
        let panels = vec!["WS".to_string()];
        let cap = charging_cap(&c, 400_000, &panels, now).unwrap();
        assert_eq!((cap.other_w, cap.charging_w), (40_000, 360_000));
        assert!(cap.stale.is_empty());
        // Five minutes later with no reading: the day's peak (90 kW) counts.
        let later = charging_cap(&c, 400_000, &panels, now + 300_000).unwrap();
        assert_eq!((later.other_w, later.charging_w), (90_000, 310_000));
        assert_eq!(later.stale, panels);
        // A panel never heard from frees nothing and says so; a load over the cap leaves 0.
        let two = vec!["WS".to_string(), "NEVER".to_string()];
        let cap = charging_cap(&c, 30_000, &two, now).unwrap();
        assert_eq!(
            (cap.charging_w, cap.stale.clone()),
            (0, vec!["NEVER".to_string()])
        );
    }
}
