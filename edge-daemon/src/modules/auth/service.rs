//! auth's public API for other modules and the front doors: who a device is
//! (`DeviceAuth`), who a person is and who is signed in (`People`), and the helpers
//! the CLI uses to add devices and people.

pub use super::api::session_cookie;
pub use super::devices::{
    add_device, device_kind, reset_device, DeviceAuth, DeviceError, DeviceIdentity, DeviceKind,
    DEVICE_RECORD,
};
pub use super::people::{People, Person, Refusal, Session, SESSION_COOKIE};
pub use super::people_store::{upsert_local, NewPerson, PersonIn, PERSON_RECORD};
pub use garasi_sync_protocol::ids::valid_id;
