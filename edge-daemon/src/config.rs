//! Node configuration: flags over `GARASI_*` environment variables over a TOML file over
//! defaults. Parsing has no side effects and reports every problem at once.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::http::config::HttpConfig;

use crate::modules::dispatch::config::{DispatchConfig, FileDispatch};
use crate::modules::telemetry::config::{FileTelemetry, TelemetryConfig};

/// Exit code for configuration errors (EX_USAGE from sysexits.h).
pub const EXIT_CONFIG: i32 = 64;

/// Settings a running node uses. Built only through [`Settings::resolve`].
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub key_file: Option<PathBuf>,
    pub http_listen: SocketAddr,
    /// Host names the HTTP API answers to besides IP addresses and `localhost`.
    pub http_hosts: Vec<String>,
    pub mqtt_listen: SocketAddr,
    pub mqtt5_listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    /// Connection caps, timeouts, stream caps and HTTPS (`http/config.rs`).
    pub http: HttpConfig,
    pub disabled_modules: Vec<String>,
    /// `[modules.NAME]` sections, already checked by their modules (`Config::module`).
    pub module_sections: BTreeMap<String, toml::Table>,
    pub shutdown_grace_secs: u64,
    /// How often the sync worker pushes and pulls while the link is up.
    pub sync_interval_ms: u64,
    /// Outbox size above which stream rows are thinned, then dropped (never changes).
    pub sync_outbox_quota_mb: u64,
    pub telemetry: TelemetryConfig,
    pub broker: BrokerConfig,
    pub dispatch: DispatchConfig,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Device connections at most, through the gate (pending ones included, lowered to
    /// what the open-files limit allows) and in rumqttd (plus its modules' links).
    pub max_connections: usize,
    /// Router log segment size; memory bound is size x count per topic filter.
    pub segment_bytes: usize,
    pub segment_count: usize,
    /// MQTT packets above this close the connection.
    pub max_packet_bytes: usize,
    /// Gate connections that have not sent a complete CONNECT yet, at most; when full, the
    /// oldest of the client holding the most is closed, among equals first one that
    /// misbehaved in the last minute (`front/admit.rs`).
    pub max_pending_connects: usize,
    /// The same per client (IPv4 address or IPv6 /64).
    pub max_pending_per_client: usize,
    /// Open files the gate never uses: SQLite, the HTTP server, the broker and logs keep
    /// them. The gate's cap is lowered to fit the rest (3 descriptors per device).
    pub fd_reserve: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            max_connections: 2000,
            segment_bytes: 1024 * 1024,
            segment_count: 8,
            max_packet_bytes: 256 * 1024,
            max_pending_connects: 256,
            max_pending_per_client: 64,
            fd_reserve: 256,
        }
    }
}

/// Values from flags and environment (clap fills these; `None` means "not given").
/// Kept as strings so every bad value is reported, not just the first.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Settings {
    /// TOML configuration file.
    #[arg(long, env = "GARASI_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database key file [default: DIR/db.key].
    #[arg(long, env = "GARASI_DB_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// HTTP API and pages [default: 127.0.0.1:8080].
    #[arg(long, env = "GARASI_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// A host name tablets and consoles use for this node, e.g. garasi.depot (repeatable;
    /// IP addresses and localhost always work; any other name is refused, which stops
    /// DNS rebinding).
    #[arg(long = "http-host", env = "GARASI_HTTP_HOSTS", value_delimiter = ',')]
    pub http_host: Vec<String>,
    /// MQTT 3.1.1 listener for devices [default: 127.0.0.1:1884].
    #[arg(long, env = "GARASI_MQTT_LISTEN")]
    pub mqtt_listen: Option<String>,
    /// MQTT 5 listener for devices [default: 127.0.0.1:1885].
    #[arg(long, env = "GARASI_MQTT5_LISTEN")]
    pub mqtt5_listen: Option<String>,
    /// MQTT over TLS listener (3.1.1 and 5); needs --tls-cert and --tls-key.
    #[arg(long, env = "GARASI_MQTTS_LISTEN")]
    pub mqtts_listen: Option<String>,
    /// PEM certificate chain for the TLS listener.
    #[arg(long, env = "GARASI_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listener.
    #[arg(long, env = "GARASI_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Module to leave out (repeatable, or comma-separated).
    #[arg(
        long = "disable-module",
        env = "GARASI_DISABLE_MODULES",
        value_delimiter = ','
    )]
    pub disable_module: Vec<String>,
    /// Seconds to drain on SIGTERM before giving up [default: 10].
    #[arg(long, env = "GARASI_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<String>,
    /// Sync with the cloud every this many ms while the link is up [default: 2000].
    #[arg(long, env = "GARASI_SYNC_INTERVAL_MS")]
    pub sync_interval_ms: Option<String>,
    /// Outbox quota in MiB: above it, unsent stream rows (telemetry) are thinned, then
    /// the oldest dropped; operational changes never are [default: 2048].
    #[arg(long, env = "GARASI_SYNC_OUTBOX_QUOTA_MB")]
    pub sync_outbox_quota_mb: Option<String>,
    /// telemetry's flags (`modules/telemetry/config.rs`).
    #[command(flatten)]
    pub telemetry: crate::modules::telemetry::config::TelemetryFlags,
    /// dispatch's flags (`modules/dispatch/config.rs`).
    #[command(flatten)]
    pub dispatch: crate::modules::dispatch::config::DispatchFlags,
    /// The HTTP server's flags (`http/config.rs`).
    #[command(flatten)]
    pub http: crate::http::config::HttpFlags,
}

/// The TOML file. Unknown keys are errors, so a typo never silently keeps a default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    key_file: Option<PathBuf>,
    http_listen: Option<String>,
    #[serde(default)]
    http_hosts: Vec<String>,
    shutdown_grace_secs: Option<u64>,
    sync_interval_ms: Option<u64>,
    sync_outbox_quota_mb: Option<u64>,
    #[serde(default)]
    mqtt: FileMqtt,
    #[serde(default)]
    http: crate::http::config::FileHttp,
    #[serde(default)]
    telemetry: FileTelemetry,
    #[serde(default)]
    modules: FileModules,
    #[serde(default)]
    dispatch: FileDispatch,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMqtt {
    listen: Option<String>,
    listen_v5: Option<String>,
    tls_listen: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    max_connections: Option<usize>,
    segment_bytes: Option<usize>,
    segment_count: Option<usize>,
    max_packet_bytes: Option<usize>,
    max_pending_connects: Option<usize>,
    max_pending_per_client: Option<usize>,
    fd_reserve: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
struct FileModules {
    #[serde(default)]
    disabled: Vec<String>,
    /// `[modules.NAME]`: a module's own settings, checked by that module
    /// (`Module::check_config`). Any other key is refused by `check_module_sections`:
    /// it must be a table, and its name a module of this build.
    #[serde(flatten)]
    sections: BTreeMap<String, toml::Value>,
}

/// Each `[modules.NAME]` section goes to its module's check; a key that is not a table,
/// or a section for no module of this build, is an error (a typo must never silently
/// keep defaults). Returns the sections.
fn check_module_sections(
    c: &mut Collect,
    sections: &BTreeMap<String, toml::Value>,
) -> BTreeMap<String, toml::Table> {
    let modules = crate::modules::all();
    let mut out = BTreeMap::new();
    for (name, value) in sections {
        let toml::Value::Table(table) = value else {
            c.0.push(format!(
                "[modules] {name}: neither `disabled` nor a module's section ([modules.NAME] table)"
            ));
            continue;
        };
        out.insert(name.clone(), table.clone());
        match modules.iter().find(|m| m.name() == name) {
            Some(m) => c.0.extend(
                m.check_config(table)
                    .into_iter()
                    .map(|e| format!("[modules.{name}]: {e}")),
            ),
            None => {
                let known: Vec<&str> = modules.iter().map(|m| m.name()).collect();
                c.0.push(format!(
                    "[modules.{name}]: no module {name:?} in this build: known modules are {}",
                    known.join(", ")
                ));
            }
        }
    }
    out
}

/// The configured host names (file and flags), lower case; a malformed one is an error.
fn http_hosts(c: &mut Collect, file: &[String], flags: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for h in file.iter().chain(flags) {
        let name = h.trim().to_ascii_lowercase();
        let ok = !name.is_empty()
            && name.len() <= 253
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '.');
        if ok {
            out.push(name);
        } else {
            c.0.push(format!(
                "http host {:?} is not a host name: use letters, digits, '-' and '.'",
                h.chars().take(80).collect::<String>()
            ));
        }
    }
    out
}

impl Config {
    /// A module's own `[modules.NAME]` section (empty when the file has none).
    pub fn module(&self, name: &str) -> toml::Table {
        self.module_sections.get(name).cloned().unwrap_or_default()
    }
}

/// All configuration problems found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("configuration is invalid:\n  - {}", .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

pub(crate) struct Collect(pub(crate) Vec<String>);

impl Collect {
    /// Flag/env value if given, else the file's, else the default.
    pub(crate) fn pick<T>(
        &mut self,
        what: &str,
        cli: &Option<String>,
        file: Option<T>,
        default: T,
    ) -> T
    where
        T: FromStr,
        T::Err: Display,
    {
        match cli {
            Some(s) => match s.parse() {
                Ok(v) => v,
                Err(e) => {
                    self.0.push(format!("{what} = {s:?}: {e}"));
                    default
                }
            },
            None => file.unwrap_or(default),
        }
    }

    pub(crate) fn addr(
        &mut self,
        what: &str,
        cli: &Option<String>,
        file: &Option<String>,
        default: &str,
    ) -> Option<SocketAddr> {
        let raw = cli
            .as_ref()
            .or(file.as_ref())
            .map(String::as_str)
            .unwrap_or(default);
        match raw.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.0.push(format!(
                    "{what} = {raw:?} is not a socket address: write IP:PORT, e.g. 0.0.0.0:1884"
                ));
                None
            }
        }
    }
}

impl Settings {
    /// Merges every source into a [`Config`], or lists every problem found.
    pub fn resolve(&self, data_dir: &Path) -> Result<Config, ConfigErrors> {
        let mut c = Collect(Vec::new());
        let file = match &self.config {
            None => FileConfig::default(),
            Some(path) => match std::fs::read_to_string(path) {
                Err(e) => {
                    c.0.push(format!("config file {}: {e}", path.display()));
                    FileConfig::default()
                }
                Ok(text) => match toml::from_str::<FileConfig>(&text) {
                    Ok(f) => f,
                    Err(e) => {
                        c.0.push(format!(
                            "config file {}: {}",
                            path.display(),
                            e.to_string().trim()
                        ));
                        FileConfig::default()
                    }
                },
            },
        };
        let http = c.addr(
            "--http-listen",
            &self.http_listen,
            &file.http_listen,
            "127.0.0.1:8080",
        );
        let http_hosts = http_hosts(&mut c, &file.http_hosts, &self.http_host);
        let mqtt = c.addr(
            "--mqtt-listen",
            &self.mqtt_listen,
            &file.mqtt.listen,
            "127.0.0.1:1884",
        );
        let mqtt5 = c.addr(
            "--mqtt5-listen",
            &self.mqtt5_listen,
            &file.mqtt.listen_v5,
            "127.0.0.1:1885",
        );
        let tls = self.mqtt_tls(&mut c, &file);
        let http_config = self.http_section(&mut c, &file, data_dir);
        let telemetry =
            crate::modules::telemetry::config::resolve(&mut c, &self.telemetry, &file.telemetry);
        let b = BrokerConfig::default();
        let broker = BrokerConfig {
            max_connections: file.mqtt.max_connections.unwrap_or(b.max_connections),
            segment_bytes: file.mqtt.segment_bytes.unwrap_or(b.segment_bytes),
            segment_count: file.mqtt.segment_count.unwrap_or(b.segment_count),
            max_packet_bytes: file.mqtt.max_packet_bytes.unwrap_or(b.max_packet_bytes),
            max_pending_connects: file
                .mqtt
                .max_pending_connects
                .unwrap_or(b.max_pending_connects),
            max_pending_per_client: file
                .mqtt
                .max_pending_per_client
                .unwrap_or(b.max_pending_per_client),
            fd_reserve: file.mqtt.fd_reserve.unwrap_or(b.fd_reserve),
        };
        for (key, v) in [
            ("max_connections", broker.max_connections),
            ("max_pending_connects", broker.max_pending_connects),
            ("max_pending_per_client", broker.max_pending_per_client),
        ] {
            if v == 0 {
                c.0.push(format!(
                    "[mqtt] {key} = 0 lets no device connect: use at least 1"
                ));
            }
        }
        let shutdown_grace_secs = c.pick(
            "--shutdown-grace-secs",
            &self.shutdown_grace_secs,
            file.shutdown_grace_secs,
            10,
        );
        let sync_interval_ms = c.pick(
            "--sync-interval-ms",
            &self.sync_interval_ms,
            file.sync_interval_ms,
            2000,
        );
        if sync_interval_ms < 100 {
            c.0.push(format!(
                "sync interval {sync_interval_ms} ms is too short: use at least 100"
            ));
        }
        let sync_outbox_quota_mb = c.pick(
            "--sync-outbox-quota-mb",
            &self.sync_outbox_quota_mb,
            file.sync_outbox_quota_mb,
            2048,
        );
        if sync_outbox_quota_mb == 0 {
            c.0.push(
                "sync outbox quota 0 MiB leaves no room to work offline: use at least 1".into(),
            );
        }
        let dispatch =
            crate::modules::dispatch::config::resolve(&mut c, &self.dispatch, &file.dispatch);
        let module_sections = check_module_sections(&mut c, &file.modules.sections);
        let mut disabled_modules = file.modules.disabled.clone();
        disabled_modules.extend(
            self.disable_module
                .iter()
                .filter(|s| !s.is_empty())
                .cloned(),
        );
        if let (Some(a), Some(b)) = (mqtt, mqtt5) {
            if a == b && a.port() != 0 {
                c.0.push(format!(
                    "--mqtt-listen and --mqtt5-listen are both {a}: give each its own port"
                ));
            }
        }
        match (http, mqtt, mqtt5, c.0.is_empty()) {
            (Some(http_listen), Some(mqtt_listen), Some(mqtt5_listen), true) => Ok(Config {
                data_dir: data_dir.to_path_buf(),
                key_file: self.key_file.clone().or(file.key_file),
                http_listen,
                http_hosts,
                mqtt_listen,
                mqtt5_listen,
                tls,
                http: http_config,
                disabled_modules,
                module_sections,
                shutdown_grace_secs,
                sync_interval_ms,
                sync_outbox_quota_mb,
                telemetry,
                broker,
                dispatch,
            }),
            _ => Err(ConfigErrors(c.0)),
        }
    }
}

impl Settings {
    /// MQTT over TLS: its address and the certificate and key it needs.
    fn mqtt_tls(&self, c: &mut Collect, file: &FileConfig) -> Option<TlsConfig> {
        let raw = self.mqtts_listen.clone().or(file.mqtt.tls_listen.clone())?;
        let listen = c.addr("--mqtts-listen", &Some(raw), &None, "");
        let cert = self.tls_cert.clone().or(file.mqtt.tls_cert.clone());
        let key = self.tls_key.clone().or(file.mqtt.tls_key.clone());
        for (name, p) in [("--tls-cert", &cert), ("--tls-key", &key)] {
            match p {
                None => c.0.push(format!(
                    "{name} is required when the TLS listener is enabled"
                )),
                Some(p) if !p.is_file() => {
                    c.0.push(format!("{name} {}: file not found", p.display()))
                }
                Some(_) => {}
            }
        }
        match (listen, cert, key) {
            (Some(listen), Some(cert), Some(key)) => Some(TlsConfig { listen, cert, key }),
            _ => None,
        }
    }

    /// `[http]` and its flags; HTTPS falls back to MQTT's TLS files.
    fn http_section(&self, c: &mut Collect, f: &FileConfig, dir: &Path) -> HttpConfig {
        let cert = self.tls_cert.clone().or(f.mqtt.tls_cert.clone());
        let key = self.tls_key.clone().or(f.mqtt.tls_key.clone());
        let mqtt = crate::http::config::MqttTlsFiles { cert, key };
        crate::http::config::resolve(c, &self.http, &f.http, dir, mqtt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_flag_over_file_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "http_listen = \"127.0.0.1:9000\"\n[mqtt]\nlisten = \"127.0.0.1:9001\"\n",
        )
        .unwrap();
        let s = Settings {
            config: Some(f),
            http_listen: Some("127.0.0.1:9100".into()),
            ..Default::default()
        };
        let c = s.resolve(dir.path()).unwrap();
        assert_eq!(c.http_listen.port(), 9100, "flag beats file");
        assert_eq!(c.mqtt_listen.port(), 9001, "file beats default");
        assert_eq!(c.mqtt5_listen.port(), 1885, "default");
    }

    #[test]
    fn all_errors_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "htp_listen = \"x\"\n").unwrap();
        let s = Settings {
            config: Some(f),
            http_listen: Some("nonsense".into()),
            mqtt_listen: Some("also:bad".into()),
            telemetry: crate::modules::telemetry::config::TelemetryFlags {
                telemetry_commit_interval_ms: Some("5000".into()),
                ..Default::default()
            },
            mqtts_listen: Some("127.0.0.1:8883".into()),
            dispatch: crate::modules::dispatch::config::DispatchFlags {
                depot_geofence: Some("north of here".into()),
                depot_timezone: Some("Mars/Olympus".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = s.resolve(dir.path()).unwrap_err();
        let text = e.to_string();
        assert!(e.0.len() >= 5, "{text}");
        for needle in [
            "htp_listen",
            "--http-listen",
            "--mqtt-listen",
            "commit interval",
            "--tls-cert",
            "--depot-geofence",
            "--depot-timezone",
        ] {
            assert!(text.contains(needle), "missing {needle} in {text}");
        }
    }

    #[test]
    fn module_sections_are_checked_by_their_modules() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[modules]\ndisabled = []\n[modules.nosuch]\nx = 1\n[modules.dispatch]\ngeofence = \"1,2,3\"\n",
        )
        .unwrap();
        let s = Settings {
            config: Some(f.clone()),
            ..Default::default()
        };
        let text = s.resolve(dir.path()).unwrap_err().to_string();
        assert!(
            text.contains("[modules.nosuch]: no module \"nosuch\""),
            "{text}"
        );
        // dispatch takes its settings from [dispatch], not [modules.dispatch].
        assert!(
            text.contains("[modules.dispatch]: module dispatch takes no settings here"),
            "{text}"
        );
        // A key under [modules] that is not a table is refused too, and named.
        std::fs::write(&f, "[modules]\ndisbled = [\"x\"]\n[modules.fleet]\n").unwrap();
        let text = s.resolve(dir.path()).unwrap_err().to_string();
        assert!(
            text.contains("[modules] disbled: neither `disabled`"),
            "{text}"
        );
        // An empty section of a module that takes no settings is refused as well.
        assert!(
            text.contains("[modules.fleet]: module fleet takes no settings here"),
            "{text}"
        );
        std::fs::write(&f, "[modules]\ndisabled = []\n").unwrap();
        assert!(s.resolve(dir.path()).is_ok());
    }
}
