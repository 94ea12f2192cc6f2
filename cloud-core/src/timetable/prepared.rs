//! A parsed feed with the look-ups publishing needs (stop positions, trips by id, trip
//! lengths), and how external ids become record ids.

use std::collections::{BTreeSet, HashMap};

use garasi_sync_protocol::ids::valid_id;

use crate::gtfs::{self, Feed};

/// Turns an external id into a record id (the sync id rule): kept as is when valid,
/// otherwise unsafe characters become '_' and a short digest keeps it unique.
pub fn record_id(prefix: &str, raw: &str) -> String {
    let candidate = format!("{prefix}{raw}");
    if valid_id(&candidate) {
        return candidate;
    }
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    use blake2::{Blake2b512, Digest};
    let d = Blake2b512::digest(raw.as_bytes());
    let suffix: String = d[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{clean}-{suffix}")
}

fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

fn path_km(points: &[(f64, f64)]) -> f64 {
    points.windows(2).map(|w| haversine_km(w[0], w[1])).sum()
}

/// A parsed feed with the look-ups publishing needs.
pub struct Prepared {
    pub feed: Feed,
    pub(super) stops: HashMap<String, (f64, f64)>,
    pub(super) trips: HashMap<String, usize>,
}

impl Prepared {
    pub fn new(feed: Feed) -> Self {
        let stops = feed
            .stops
            .iter()
            .map(|s| (s.id.clone(), (s.lat, s.lon)))
            .collect();
        let trips = feed
            .trips
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        Prepared { feed, stops, trips }
    }

    /// Trip length: along its shape where the feed has one, else stop to stop.
    pub(super) fn trip_km(&self, t: &gtfs::Trip) -> f64 {
        if let Some(points) = t.shape_id.as_ref().and_then(|s| self.feed.shapes.get(s)) {
            if points.len() >= 2 {
                return path_km(points);
            }
        }
        let pts: Vec<(f64, f64)> = t
            .stop_times
            .iter()
            .filter_map(|st| self.stops.get(&st.stop_id).copied())
            .collect();
        path_km(&pts)
    }

    pub fn route_ids(&self) -> BTreeSet<&str> {
        self.feed.routes.iter().map(|r| r.id.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_follow_the_sync_rule() {
        assert_eq!(record_id("stop-", "S1"), "stop-S1");
        let odd = record_id("stop-", "Main St / 3rd");
        assert!(valid_id(&odd), "{odd}");
        assert_ne!(
            odd,
            record_id("stop-", "Main St _ 3rd"),
            "digest keeps them apart"
        );
        let long = record_id("20260101-", &"x".repeat(200));
        assert!(valid_id(&long), "{long}");
    }

    #[test]
    fn distance_uses_haversine() {
        // One degree of latitude is ~111.2 km.
        let d = path_km(&[(0.0, 0.0), (1.0, 0.0)]);
        assert!((d - 111.19).abs() < 0.1, "{d}");
    }
}
