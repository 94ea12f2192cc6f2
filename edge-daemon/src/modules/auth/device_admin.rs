//! A standalone depot's own device credential changes (`garasi-edge device rotate`,
//! `disable`, `enable`): on an enrolled depot devices are cloud master data and are
//! changed there. The gate reads the credential at every new connection (and forgets
//! what it remembered of a device whose credential changed), so a rotation or a disable
//! takes effect at the device's next connect, also while the node runs.

use rusqlite::params;

use super::devices::{hash_password, DeviceError};
use crate::store::Store;

/// Gives an existing device a new random password, returned once.
pub fn rotate(store: &Store, id: &str) -> Result<String, DeviceError> {
    let password = super::devices::new_password();
    let hash = hash_password(&password)?;
    let n = store.write_blocking(|c| {
        c.execute(
            "UPDATE auth_devices SET password_hash = ?1 WHERE id = ?2",
            params![hash, id],
        )
    })?;
    if n == 0 {
        return Err(DeviceError::Unknown(id.into()));
    }
    Ok(password)
}

/// Refuses (or allows again) every connection with this device's credential.
pub fn set_disabled(store: &Store, id: &str, disabled: bool) -> Result<(), DeviceError> {
    let n = store.write_blocking(|c| {
        c.execute(
            "UPDATE auth_devices SET disabled = ?1 WHERE id = ?2",
            params![disabled, id],
        )
    })?;
    if n == 0 {
        return Err(DeviceError::Unknown(id.into()));
    }
    Ok(())
}
