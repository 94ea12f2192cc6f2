//! The paths code outside this crate has used since the API was one `http.rs`
//! (`garasi_cloud::http::{router, AppState, serve_tls, tls_acceptor}`), kept so the fleet
//! tests and benchmarks compile unchanged. New code uses `api` and `tls`.

pub use crate::api::{router, ApiError, AppState};
pub use crate::tls::{serve_tls, tls_acceptor};
