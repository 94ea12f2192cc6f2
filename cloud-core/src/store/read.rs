//! The read model: the read-only queries the ops views and (soon) the dashboard's pages
//! need, apart from the write-side [`CloudStore`](super::CloudStore). A page or handler
//! that only reads takes `S: ReadModel`, so it can neither write nor grow the write
//! side's interface; `CloudStore` extends it, so everything holding a full store reads
//! through the same methods.
//!
//! Each backend writes these queries as inherent methods (its `read.rs`) and implements
//! the trait with [`forward_read_model`]: code holding a concrete store (tests, tools)
//! keeps calling them without importing this trait, as it did when they were
//! `CloudStore` methods.

use std::future::Future;

use super::{ChangePosition, DepotInfo, Quarantined, StoreError, StreamRowIn, TimetableInfo};

/// Read-only queries over depots, materialised records, quarantine, streams and
/// timetables. Both stores implement it; `tests/conformance.rs` covers it.
pub trait ReadModel: Send + Sync {
    /// Every depot with its enrolment and last sync report, by name.
    fn depots(&self) -> impl Future<Output = Result<Vec<DepotInfo>, StoreError>> + Send;
    /// Whether the depot exists (one indexed look-up: every admin route of a depot asks).
    fn depot_exists(&self, depot: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Where each depot's changes stand (stored and materialised), by depot; only
    /// `depot`'s when given. Depots that never stored a change are absent.
    fn change_positions(
        &self,
        depot: Option<&str>,
    ) -> impl Future<Output = Result<Vec<ChangePosition>, StoreError>> + Send;
    /// A depot's quarantined records, newest first (at most `limit`).
    fn quarantined(
        &self,
        depot: &str,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Quarantined>, StoreError>> + Send;
    /// Visible fields (JSON object text) of a depot's records of one type, by id.
    fn list_records(
        &self,
        depot: &str,
        record_type: &str,
    ) -> impl Future<Output = Result<Vec<(String, String)>, StoreError>> + Send;
    /// Rows of one stream of one depot with seq > `after`, in seq order.
    fn stream_rows(
        &self,
        depot: &str,
        stream: &str,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<StreamRowIn>, StoreError>> + Send;
    /// Number of stored rows of one stream of one depot.
    fn stream_len(
        &self,
        depot: &str,
        stream: &str,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;
    /// Every timetable, newest first (without the zip).
    fn timetables(&self) -> impl Future<Output = Result<Vec<TimetableInfo>, StoreError>> + Send;
}

/// Implements [`ReadModel`] for a store type by calling its inherent query methods of the
/// same names (inherent methods win over trait methods in `Type::name` paths).
macro_rules! forward_read_model {
    ($store:ty) => {
        impl $crate::store::ReadModel for $store {
            async fn depots(
                &self,
            ) -> Result<Vec<$crate::store::DepotInfo>, $crate::store::StoreError> {
                <$store>::depots(self).await
            }
            async fn depot_exists(&self, depot: &str) -> Result<bool, $crate::store::StoreError> {
                <$store>::depot_exists(self, depot).await
            }
            async fn change_positions(
                &self,
                depot: Option<&str>,
            ) -> Result<Vec<$crate::store::ChangePosition>, $crate::store::StoreError> {
                <$store>::change_positions(self, depot).await
            }
            async fn quarantined(
                &self,
                depot: &str,
                limit: i64,
            ) -> Result<Vec<$crate::store::Quarantined>, $crate::store::StoreError> {
                <$store>::quarantined(self, depot, limit).await
            }
            async fn list_records(
                &self,
                depot: &str,
                record_type: &str,
            ) -> Result<Vec<(String, String)>, $crate::store::StoreError> {
                <$store>::list_records(self, depot, record_type).await
            }
            async fn stream_rows(
                &self,
                depot: &str,
                stream: &str,
                after: i64,
                limit: i64,
            ) -> Result<Vec<$crate::store::StreamRowIn>, $crate::store::StoreError> {
                <$store>::stream_rows(self, depot, stream, after, limit).await
            }
            async fn stream_len(
                &self,
                depot: &str,
                stream: &str,
            ) -> Result<i64, $crate::store::StoreError> {
                <$store>::stream_len(self, depot, stream).await
            }
            async fn timetables(
                &self,
            ) -> Result<Vec<$crate::store::TimetableInfo>, $crate::store::StoreError> {
                <$store>::timetables(self).await
            }
        }
    };
}
pub(crate) use forward_read_model;
