//! dispatch's Prometheus metrics, registered by the module at start in the node's
//! registry (names unchanged: `garasi_dispatch_*`). Labels stay low-cardinality.

use prometheus::{IntCounterVec, Opts, Registry};

pub struct DispatchMetrics {
    pub signons_total: IntCounterVec,
    pub events_total: IntCounterVec,
}

impl DispatchMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let signons_total = IntCounterVec::new(
            Opts::new(
                "dispatch_signons_total",
                "Driver sign-ons recorded, by method (badge, pin)",
            ),
            &["method"],
        )?;
        let events_total = IntCounterVec::new(
            Opts::new(
                "dispatch_events_total",
                "Dispatch events recorded, by kind (assign, pull_out, pull_in, swap, out_of_service)",
            ),
            &["kind"],
        )?;
        r.register(Box::new(signons_total.clone()))?;
        r.register(Box::new(events_total.clone()))?;
        Ok(DispatchMetrics {
            signons_total,
            events_total,
        })
    }
}
