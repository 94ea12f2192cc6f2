//! Devices (vehicles' telematics units, scanners): credentials, the cloud's device
//! master data, and `DeviceAuth`, which the MQTT gate asks who a connecting device is.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;
use blake2::{Blake2b512, Digest};
use parking_lot::Mutex;
use rand::RngCore;
use rusqlite::{params, OptionalExtension};

use crate::limit::{ClientLimiter, LimitPolicy};
use crate::modules::sync::service::apply_master;
use crate::modules::sync::service::ApplyError;
use crate::store::{Store, StoreCallError};

/// What a device is, which decides its MQTT namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Vehicle,
    /// An OCPP charge point: authenticates on the charging module's WebSocket door
    /// (HTTP Basic, the charge box id as user), never on MQTT.
    Charger,
    /// An energy panel meter: publishes its readings to exactly one topic, the auth
    /// section's `meter_topic` with its id (the seed format's `DATA/PM/<panel>`).
    Meter,
}

impl DeviceKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vehicle" => Some(DeviceKind::Vehicle),
            "charger" => Some(DeviceKind::Charger),
            "meter" => Some(DeviceKind::Meter),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Vehicle => "vehicle",
            DeviceKind::Charger => "charger",
            DeviceKind::Meter => "meter",
        }
    }
    /// Whether this kind of device may connect to the MQTT broker.
    pub fn uses_mqtt(self) -> bool {
        matches!(self, DeviceKind::Vehicle | DeviceKind::Meter)
    }
}

/// An authenticated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub id: String,
    pub kind: DeviceKind,
    /// Where it may publish: a prefix ending in `/` (a vehicle's namespace), or one
    /// exact topic (a meter's, from the topic map).
    pub namespace: String,
}

impl DeviceIdentity {
    /// The device's namespace (see the field).
    pub fn namespace(&self) -> String {
        self.namespace.clone()
    }
}

/// The default topic map of panel meters: the seed's energy-monitoring topics.
pub const METER_TOPIC: &str = "DATA/PM/{id}";

fn namespace_of(id: &str, kind: DeviceKind, meter_topic: &str) -> String {
    match kind {
        DeviceKind::Vehicle => format!("garasi/v1/vehicles/{id}/"),
        // Never used: the gate refuses chargers (`uses_mqtt`); a prefix no topic has.
        DeviceKind::Charger => format!("garasi/v1/chargers/{id}/"),
        DeviceKind::Meter => meter_topic.replace("{id}", id),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device id {0:?} is invalid: use 1-64 letters, digits, '-' or '_', starting with a letter or digit")]
    BadId(String),
    #[error("device kind {0:?} is unknown: use vehicle, charger or meter")]
    BadKind(String),
    #[error("device {0} already exists")]
    Exists(String),
    #[error("no device {0}: list them with the cloud's device API, or add it with `device add`")]
    Unknown(String),
    #[error("could not hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreCallError),
}

/// Ids become MQTT topic levels, so they must not contain separators or wildcards (the
/// rule is shared with the cloud).
use garasi_sync_protocol::ids::valid_id;

/// Master data: a device credential as the cloud defines it (kind, argon2id hash of the
/// password, disabled). The password itself never leaves the cloud's one response.
pub const DEVICE_RECORD: &str = garasi_sync_protocol::records::DEVICE;

/// Applies the cloud's master data for one device (sync transaction).
pub(super) fn apply_master_device(
    tx: &rusqlite::Transaction<'_>,
    id: &str,
    changes: &[Vec<u8>],
) -> Result<(), ApplyError> {
    use garasi_sync_protocol::record::FieldValue;
    let f = apply_master(tx, DEVICE_RECORD, id, changes)?;
    let text = |k: &str| match f.get(k) {
        Some(FieldValue::Text(t)) => Some(t.clone()),
        _ => None,
    };
    let (Some(kind), Some(hash)) = (text("kind"), text("password_hash")) else {
        tracing::warn!(
            device = id,
            "cloud device record is incomplete; not usable yet"
        );
        return Ok(());
    };
    if !valid_id(id) || DeviceKind::parse(&kind).is_none() || PasswordHash::new(&hash).is_err() {
        tracing::warn!(device = id, "cloud device record is invalid; ignored");
        return Ok(());
    }
    let disabled = matches!(f.get("disabled"), Some(FieldValue::Bool(true)));
    tx.execute(
        "INSERT INTO auth_devices (id, kind, password_hash, created_ms, disabled) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, password_hash = excluded.password_hash,
           disabled = excluded.disabled",
        params![id, kind, hash, crate::util::now_ms(), disabled],
    )
    .map_err(ApplyError::from)?;
    Ok(())
}

/// Creates a device and returns its generated password (shown once, stored only hashed).
pub fn add_device(store: &Store, id: &str, kind: &str) -> Result<String, DeviceError> {
    if !valid_id(id) {
        return Err(DeviceError::BadId(id.into()));
    }
    let kind = DeviceKind::parse(kind).ok_or_else(|| DeviceError::BadKind(kind.into()))?;
    let password = new_password();
    let hash = hash_password(&password)?;
    let inserted = store.write_blocking(|c| {
        c.execute(
            "INSERT OR IGNORE INTO auth_devices (id, kind, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![id, kind.as_str(), hash, crate::util::now_ms()],
        )
    })?;
    if inserted == 0 {
        return Err(DeviceError::Exists(id.into()));
    }
    Ok(password)
}

/// The kind of a device that exists (None: no such device). For modules that pair
/// their own records with a device (a charger's connectors with its credential).
pub fn device_kind(store: &Store, id: &str) -> Result<Option<DeviceKind>, StoreCallError> {
    let kind: Option<String> = store.read_blocking(|c| {
        c.query_row(
            "SELECT kind FROM auth_devices WHERE id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()
    })?;
    Ok(kind.as_deref().and_then(DeviceKind::parse))
}

/// A generated device password: 160 random bits as 40 hex digits, which every kind can
/// take (OCPP 1.6 security profile 1 allows Basic auth passwords, the AuthorizationKey,
/// of 16-40 characters).
pub fn new_password() -> String {
    let mut raw = [0u8; 20];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

/// Creates the device, or gives an existing one a new password (returned once). The demo
/// uses this so each run knows its simulated devices' passwords.
pub fn reset_device(store: &Store, id: &str, kind: &str) -> Result<String, DeviceError> {
    match add_device(store, id, kind) {
        Err(DeviceError::Exists(_)) => {}
        other => return other,
    }
    let mut raw = [0u8; 24];
    rand::rng().fill_bytes(&mut raw);
    let password = hex::encode(raw);
    let hash = hash_password(&password)?;
    store.write_blocking(|c| {
        c.execute(
            "UPDATE auth_devices SET password_hash = ?1, disabled = 0 WHERE id = ?2",
            params![hash, id],
        )
    })?;
    Ok(password)
}

/// argon2id parameters for device credentials: 4 MiB, 3 passes. Device passwords are
/// 192-bit random secrets, so no amount of hashing work changes how guessable they are;
/// the hash only has to be one-way and salted. People's passwords (typed, low entropy)
/// will use the full OWASP parameters. Parameters live in each stored hash, so either
/// verifies.
pub(super) const DEVICE_M_KIB: u32 = 4096;
pub(super) const DEVICE_T: u32 = 3;

pub(super) fn hash_password(password: &str) -> Result<String, DeviceError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| DeviceError::Hash(e.to_string()))?;
    let params = argon2::Params::new(DEVICE_M_KIB, DEVICE_T, 1, None)
        .map_err(|e| DeviceError::Hash(e.to_string()))?;
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DeviceError::Hash(e.to_string()))
}

/// Public API used by the MQTT gate. Verified passwords are remembered as a keyed digest
/// (never the password), tied to the stored hash, so a reconnect storm costs one argon2
/// run per device and a rotated or disabled credential stops matching at once.
pub struct DeviceAuth {
    store: Store,
    /// The topic map of panel meters (`{id}` is the meter's id).
    meter_topic: String,
    pepper: [u8; 32],
    verified: Mutex<HashMap<String, (String, [u8; 64])>>,
    /// argon2 working memory, allocated once and reused: a fresh allocation per
    /// verification was kept by the allocator per thread (measured: ~2 MiB of RSS per
    /// connected device with 19 MiB parameters). One buffer per verification that may
    /// run at once (`running`), so two really run in parallel.
    memory: Arc<[Mutex<Vec<argon2::Block>>; VERIFY_AT_ONCE]>,
    /// Verifications waiting or running at once, in arrival order: with one per client
    /// address (`clients`), an attacker holds one place in this queue, never all of it.
    running: Arc<tokio::sync::Semaphore>,
    clients: ClientLimiter,
    /// Verified for an unknown or disabled device, so it takes as long as a known one.
    decoy: String,
}

/// Argon2 verifications of device passwords run at once (the machine's cores).
const VERIFY_AT_ONCE: usize = 2;

/// Verifies `password` against a PHC-format argon2 hash using `memory` as working space.
pub(super) fn verify_with_memory(
    hash: &str,
    password: &str,
    memory: &mut Vec<argon2::Block>,
) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = parsed
        .version
        .and_then(|v| argon2::Version::try_from(v).ok())
        .unwrap_or_default();
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let a = Argon2::new(algorithm, version, params);
    if a.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_err()
    {
        return false;
    }
    subtle::ConstantTimeEq::ct_eq(&out[..], expected.as_bytes()).into()
}

impl DeviceAuth {
    pub fn new(store: Store, meter_topic: &str) -> Self {
        let mut pepper = [0u8; 32];
        rand::rng().fill_bytes(&mut pepper);
        DeviceAuth {
            store,
            meter_topic: meter_topic.to_string(),
            pepper,
            verified: Mutex::new(HashMap::new()),
            memory: Arc::new(std::array::from_fn(|_| Mutex::new(Vec::new()))),
            running: Arc::new(tokio::sync::Semaphore::new(VERIFY_AT_ONCE)),
            // A device with a wrong password is misconfigured or an attacker: 20 tries,
            // then one every 3 s per address. Devices with the right one never wait.
            clients: ClientLimiter::new(LimitPolicy {
                burst: 20,
                refill: Duration::from_secs(3),
                ..LimitPolicy::default()
            }),
            decoy: hash_password(&hex::encode(pepper)).unwrap_or_default(),
        }
    }

    /// The topic map of panel meters (`{id}` stands for the meter's id).
    pub fn meter_topic(&self) -> &str {
        &self.meter_topic
    }

    fn digest(&self, password: &str) -> [u8; 64] {
        let mut h = Blake2b512::new();
        h.update(self.pepper);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether this username and password are the ones a device connected with before
    /// (in memory only, no argon2, constant time): the gate then protects the connection
    /// at once. `verify` still decides (the device may be disabled since; the first
    /// `verify` that sees it forgets the device, so its old password is recognised at
    /// most until then).
    pub fn recognised(&self, username: &str, password: &str) -> bool {
        if password.len() > 1024 {
            return false;
        }
        let digest = self.digest(password);
        self.verified
            .lock()
            .get(username)
            .is_some_and(|(_, d)| subtle::ConstantTimeEq::ct_eq(&d[..], &digest[..]).into())
    }

    /// Checks a username (device id) and password from a client at `peer`. `Ok(None)`
    /// for unknown, disabled or wrong, or a client over its failure budget;
    /// `Err(Held::Busy)` when the password could not be checked now because too many
    /// attempts from that address wait already (many devices behind one address after a
    /// restart): the device should come back, it was not refused.
    pub async fn verify(
        &self,
        peer: IpAddr,
        username: &str,
        password: &str,
    ) -> Result<Option<DeviceIdentity>, crate::limit::Held> {
        self.check(peer, username, password).await
    }

    async fn check(
        &self,
        peer: IpAddr,
        username: &str,
        password: &str,
    ) -> Result<Option<DeviceIdentity>, crate::limit::Held> {
        if !valid_id(username) || password.len() > 1024 {
            return Ok(None);
        }
        let id = username.to_string();
        let row: Option<(String, String)> = self
            .store
            .read(move |c| {
                c.query_row(
                    "SELECT kind, password_hash FROM auth_devices WHERE id = ?1 AND disabled = 0",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
            })
            .await
            .ok()
            .flatten();
        let known = row.and_then(|(kind, hash)| Some((DeviceKind::parse(&kind)?, hash)));
        let digest = self.digest(password);
        {
            // A device disabled, removed or given a new password since it was verified
            // (here, by the cloud, or by the CLI in another process) is forgotten, so its
            // old password is not `recognised` any more either.
            let mut v = self.verified.lock();
            let stale = v
                .get(username)
                .is_some_and(|(h, _)| known.as_ref().is_none_or(|(_, now)| now != h));
            if stale {
                v.remove(username);
            }
        }
        if let Some((kind, hash)) = &known {
            let cached = self.verified.lock().get(username).cloned();
            if let Some((cached_hash, cached_digest)) = cached {
                if &cached_hash == hash
                    && subtle::ConstantTimeEq::ct_eq(&cached_digest[..], &digest[..]).into()
                {
                    return Ok(Some(DeviceIdentity {
                        id: username.to_string(),
                        kind: *kind,
                        namespace: namespace_of(username, *kind, &self.meter_topic),
                    }));
                }
            }
        }
        // The slow path: one argon2 run, queued per client address and capped overall.
        let attempt = match self.clients.begin_queued(peer).await {
            Ok(a) => a,
            Err(crate::limit::Held::Busy) => return Err(crate::limit::Held::Busy),
            Err(crate::limit::Held::Wait(_)) => return Ok(None),
        };
        let hash = known
            .as_ref()
            .map_or(self.decoy.clone(), |(_, h)| h.clone());
        let ok = {
            let Ok(_running) = self.running.acquire().await else {
                return Ok(None);
            };
            let (pw, hash2, memory) = (password.to_string(), hash.clone(), self.memory.clone());
            tokio::task::spawn_blocking(move || {
                // A free buffer: the semaphore lets at most VERIFY_AT_ONCE in, so one is.
                let mut buf = memory
                    .iter()
                    .find_map(|m| m.try_lock())
                    .unwrap_or_else(|| memory[0].lock());
                verify_with_memory(&hash2, &pw, &mut buf)
            })
            .await
            .unwrap_or(false)
        };
        let Some((kind, hash)) = known.filter(|_| ok) else {
            attempt.failed();
            return Ok(None);
        };
        let identity = DeviceIdentity {
            id: username.to_string(),
            kind,
            namespace: namespace_of(username, kind, &self.meter_topic),
        };
        self.verified
            .lock()
            .insert(username.to_string(), (hash, digest));
        Ok(Some(identity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_topic_safe() {
        for ok in ["bus-001", "B_7", "9"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", "a/b", "+", "#", "bus 1", "-x", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn verification_with_reused_memory_matches_argon2() {
        let hash = hash_password("correct horse").unwrap();
        let mut mem = Vec::new();
        assert!(verify_with_memory(&hash, "correct horse", &mut mem));
        assert!(!verify_with_memory(&hash, "correct horsf", &mut mem));
        assert!(!verify_with_memory("not a hash", "x", &mut mem));
        // The reference implementation agrees, and full-strength hashes verify too.
        let parsed = PasswordHash::new(&hash).unwrap();
        assert!(argon2::PasswordVerifier::verify_password(
            &Argon2::default(),
            b"correct horse",
            &parsed
        )
        .is_ok());
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let strong = Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(verify_with_memory(&strong, "pw", &mut mem));
    }

    #[test]
    fn namespace_is_per_device() {
        assert_eq!(
            namespace_of("bus-1", DeviceKind::Vehicle, METER_TOPIC),
            "garasi/v1/vehicles/bus-1/"
        );
        assert_eq!(
            namespace_of("P-1", DeviceKind::Meter, METER_TOPIC),
            "DATA/PM/P-1"
        );
    }
}
