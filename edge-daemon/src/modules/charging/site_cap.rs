//! The power the chargers may share: the configured site cap, or, with
//! `other_load_panels`, the cap minus what those panel meters read now (the rest of the
//! depot: workshop, offices, lights), so charging gets what the site has left. "Now" is
//! when the edge received a current reading, not the meter's own clock. A panel gone
//! quiet counts at the most it ever drew in the readings kept, so a dead meter never
//! frees power that may be in use; one never heard from counts at `other_load_max_kw`
//! (0 if unset) and is named stale on the Charging page. A reading above the site cap
//! counts as the site cap.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::store::migrate::Migration;

/// When the edge last received a current reading of each panel, and its power.
pub(super) const MIGRATION: Migration = Migration {
    version: 7,
    name: "panel readings as received",
    sql: "ALTER TABLE charging_panels ADD COLUMN received_ms INTEGER;
          ALTER TABLE charging_panels ADD COLUMN received_power_w INTEGER;",
};

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
    /// Panels counted at their peak: silent, or never heard.
    pub stale: Vec<String>,
    /// What the chargers may share when cut off from the edge (their fallback profile):
    /// the site cap less the other load at its peak of the last week, since nobody will
    /// lower it when the workshop ramps up.
    pub fallback_w: i64,
}

/// The other load one panel stands for at `now` (at most `site_w`), and whether it was
/// fresh; `unknown_w` for a panel never heard from.
fn panel_load(
    c: &Connection,
    panel: &str,
    now: i64,
    site_w: i64,
    unknown_w: i64,
) -> rusqlite::Result<(i64, bool)> {
    let last: Option<(Option<i64>, Option<i64>)> = c
        .query_row(
            "SELECT received_ms, received_power_w FROM charging_panels WHERE panel = ?1",
            [panel],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((Some(at), Some(w))) = last {
        if now - at <= FRESH_MS {
            return Ok((w.clamp(0, site_w), true));
        }
    }
    let peak: Option<i64> = c.query_row(
        "SELECT MAX(power_w) FROM charging_panel_readings WHERE panel = ?1",
        params![panel],
        |r| r.get(0),
    )?;
    Ok((peak.unwrap_or(unknown_w).clamp(0, site_w), false))
}

/// The chargers' share of `site_w` at `now`.
pub fn charging_cap(
    c: &Connection,
    site_w: i64,
    panels: &[String],
    unknown_w: i64,
    now: i64,
) -> rusqlite::Result<SiteCap> {
    let mut cap = SiteCap {
        site_w,
        ..SiteCap::default()
    };
    let mut peaks = 0;
    for p in panels {
        let (w, fresh) = panel_load(c, p, now, site_w, unknown_w)?;
        cap.other_w += w;
        if !fresh {
            cap.stale.push(p.clone());
        }
        let week: Option<i64> = c.query_row(
            "SELECT MAX(power_w) FROM charging_panel_readings WHERE panel = ?1 AND ts_ms >= ?2",
            params![p, now - 7 * 86_400_000],
            |r| r.get(0),
        )?;
        peaks += week.unwrap_or(0).clamp(0, site_w).max(w);
    }
    cap.charging_w = (site_w - cap.other_w).max(0);
    cap.fallback_w = (site_w - peaks).max(0);
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(super::super::meters::MIGRATION.sql)
            .unwrap();
        c.execute_batch(MIGRATION.sql).unwrap();
        c
    }

    /// A reading the meter stamped `ts` and the edge received at `at`.
    fn reading(c: &Connection, panel: &str, ts: i64, at: i64, w: i64) {
        c.execute(
            "INSERT INTO charging_panel_readings (panel, ts_ms, energy_wh, power_w, received_ms) VALUES (?1, ?2, 0, ?3, ?4)",
            params![panel, ts, w, at],
        )
        .unwrap();
        c.execute(
            "INSERT INTO charging_panels (panel, last_ms, power_w, received_ms, received_power_w) VALUES (?1, ?2, ?3, ?4, ?3)
             ON CONFLICT(panel) DO UPDATE SET received_ms = excluded.received_ms, received_power_w = excluded.received_power_w",
            params![panel, ts, w, at],
        )
        .unwrap();
    }

    #[test]
    fn the_other_load_now_comes_off_and_a_silent_panel_counts_at_its_peak() {
        let c = db();
        let now = 1_800_000_000_000;
        reading(&c, "WS", now - 3_600_000, now - 3_600_000, 90_000);
        // The meter's clock is 9 minutes fast: received now, it is still now's load.
        reading(&c, "WS", now + 540_000, now - 30_000, 40_000);
        let panels = vec!["WS".to_string()];
        let cap = charging_cap(&c, 400_000, &panels, 0, now).unwrap();
        assert_eq!((cap.other_w, cap.charging_w), (40_000, 360_000));
        assert!(cap.stale.is_empty());
        // Cut off from the edge, the chargers keep room for the workshop's week's peak.
        assert_eq!(cap.fallback_w, 310_000);
        assert_eq!(
            charging_cap(&c, 400_000, &[], 0, now).unwrap().fallback_w,
            400_000
        );
        // Five minutes later with nothing received: its peak (90 kW) counts.
        let later = charging_cap(&c, 400_000, &panels, 0, now + 300_000).unwrap();
        assert_eq!((later.other_w, later.charging_w), (90_000, 310_000));
        assert_eq!(later.stale, panels);
        // A panel never heard from counts at the configured worst case, and is named.
        let two = vec!["WS".to_string(), "NEVER".to_string()];
        let cap = charging_cap(&c, 400_000, &two, 50_000, now).unwrap();
        assert_eq!(
            (cap.charging_w, cap.stale.clone()),
            (310_000, vec!["NEVER".to_string()])
        );
        // A glitch far above the site cap counts as the cap: charging 0, not negative.
        reading(&c, "WS", now + 600_000, now, 100_000_000);
        let cap = charging_cap(&c, 400_000, &panels, 0, now).unwrap();
        assert_eq!((cap.other_w, cap.charging_w), (400_000, 0));
    }
}
