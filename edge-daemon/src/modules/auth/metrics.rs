//! Auth's Prometheus metrics (`garasi_auth_*`), registered by the module at start in the
//! node's registry. Labels are methods and reasons, never a person or device id.

use prometheus::{IntCounterVec, Opts, Registry};

pub struct AuthMetrics {
    pub refusals_total: IntCounterVec,
}

impl AuthMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let refusals_total = IntCounterVec::new(
            Opts::new(
                "auth_refusals_total",
                "Refused logins and sign-ons, by method (password, pin, badge) and reason",
            ),
            &["method", "reason"],
        )?;
        r.register(Box::new(refusals_total.clone()))?;
        Ok(AuthMetrics { refusals_total })
    }
}
