//! The service configuration: a TOML file, then `SOCIAL_STUDIO_*` environment overrides.
//!
//! [`Config::load`] reads the file (if any), lays the environment over it (the environment
//! wins), and refuses at start — naming the key and where it came from — anything it does
//! not understand: an unknown key or `[platforms.<id>]` section, an unknown
//! `SOCIAL_STUDIO_*` variable (so a typo such as `SOCIAL_STUDIO_LISTN` is caught rather
//! than silently ignored), a value of the wrong shape, or values that cannot work
//! together (a client id without its secret, plain `http://` to a host that is not
//! loopback). Secrets (`admin_token`, `client_secret`) are [`Secret`]s: they never
//! appear in an error or in `Debug`.
//!
//! ```toml
//! data_dir = "/var/lib/social-studio"
//! listen = "0.0.0.0:8080"
//! public_url = "https://studio.example.com"     # redirect URI: {public_url}/v1/oauth/callback
//! app_origin = "https://app.example.com"        # default: the origin of public_url
//!
//! [platforms.x]
//! client_id = "…"
//! client_secret = "…"
//! token_url = "https://api.x.com/2/oauth2/token" # every endpoint can be overridden
//!
//! [platforms.bluesky]
//! service = "https://bsky.social"
//! ```
//!
//! The same keys as environment variables: `SOCIAL_STUDIO_LISTEN`,
//! `SOCIAL_STUDIO_PUBLIC_URL`, …, and per platform `SOCIAL_STUDIO_<PLATFORM>_<KEY>`
//! (`SOCIAL_STUDIO_X_CLIENT_ID`, `SOCIAL_STUDIO_BLUESKY_SERVICE`). Variables without the
//! `SOCIAL_STUDIO_` prefix are never looked at.
//!
//! Each platform's real endpoints are the defaults, in one table ([`Config::platform_settings`]);
//! with the `sandbox` feature, `Config::use_sandbox_for_unconfigured` points every
//! platform without credentials at the local sandbox, from the sandbox's own table.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use social_studio_storage::{Platform, Secret};
use url::Url;

use crate::platforms::oauth::check_endpoint;
use crate::platforms::{PlatformSettings, SettingsError};

/// Every environment variable this module reads starts with this.
pub const ENV_PREFIX: &str = "SOCIAL_STUDIO_";

/// `SOCIAL_STUDIO_*` variables that belong to someone else and are not errors here: the
/// master key (read by the storage crate's vault) and the config file path (read by the
/// binary). A new variable read elsewhere must be added here, or `load` refuses it.
pub const IGNORED_ENV_VARS: [&str; 2] = ["SOCIAL_STUDIO_MASTER_KEY", "SOCIAL_STUDIO_CONFIG"];

/// Where the service keeps its database and key files unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "social-studio-data";

/// Loopback only by default: exposing the service is a deliberate choice.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));

/// How long an OAuth `state` stays redeemable: long enough to log in and consent, short
/// enough that a leaked authorize URL soon goes stale.
pub const DEFAULT_OAUTH_STATE_TTL: Duration = Duration::from_secs(600);

/// The largest request body the HTTP service accepts.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// How many days ahead a grant that cannot be renewed is reported as expiring soon.
pub const DEFAULT_EXPIRING_SOON_DAYS: u32 = 7;

/// How many platform calls each platform queue runs at once.
pub const DEFAULT_PUBLISH_CONCURRENCY: usize = 8;

/// The path under `public_url` where platforms send the author back.
pub const CALLBACK_PATH: &str = "/v1/oauth/callback";

/// The shortest admin token accepted: the admin API acts on every pen name.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

// The Graph API version lives in a macro so that `concat!` can build the endpoint table
// from it at compile time; `GRAPH_API_VERSION` is the one place to change it.
macro_rules! graph_version {
    () => {
        "v25.0"
    };
}
macro_rules! threads_version {
    () => {
        "v1.0"
    };
}

/// The Meta Graph API version every Facebook and Instagram endpoint is pinned to
/// (released February 2026, available until July 2028).
pub const GRAPH_API_VERSION: &str = graph_version!();

/// The Threads API version its `api_base` is pinned to.
pub const THREADS_API_VERSION: &str = threads_version!();

/// The Bluesky PDS entryway used when `[platforms.bluesky] service` is not set.
pub const BLUESKY_DEFAULT_SERVICE: &str = "https://bsky.social";

/// The DID PLC directory used to resolve `did:plc` identities to their PDS.
pub const BLUESKY_DEFAULT_PLC_DIRECTORY: &str = "https://plc.directory";

/// XRPC methods behind Bluesky's session lifecycle, relative to the service.
const BLUESKY_CREATE_SESSION: &str = "/xrpc/com.atproto.server.createSession";
const BLUESKY_REFRESH_SESSION: &str = "/xrpc/com.atproto.server.refreshSession";
const BLUESKY_DELETE_SESSION: &str = "/xrpc/com.atproto.server.deleteSession";

/// Top-level keys of the file (and, upper-cased behind [`ENV_PREFIX`], of the environment).
const TOP_KEYS: [&str; 11] = [
    "data_dir",
    "listen",
    "public_url",
    "app_origin",
    "admin_token",
    "master_key_file",
    "oauth_state_ttl_secs",
    "max_body_bytes",
    "expiring_soon_days",
    "lateness_window_secs",
    "publish_concurrency",
];

/// The file's one table-valued top-level key.
const PLATFORMS_KEY: &str = "platforms";

/// Keys of an OAuth platform's section.
const OAUTH_KEYS: [&str; 6] = [
    "client_id",
    "client_secret",
    "auth_url",
    "token_url",
    "revoke_url",
    "api_base",
];

/// Keys of the Bluesky section: it signs in with app passwords, so it has no app
/// credentials, only the hosts it talks to.
const BLUESKY_KEYS: [&str; 2] = ["service", "plc_directory"];

/// The service configuration. Build it with [`Config::load`]; [`Config::default`] gives
/// every default and no platform sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the database, the generated admin token and the master key file live.
    pub data_dir: PathBuf,
    /// The address the HTTP service binds.
    pub listen: SocketAddr,
    /// The address browsers reach the service at, without a trailing slash; redirect URIs
    /// are built from it, so it must match what is registered with each platform.
    /// Default `http://{listen}`.
    pub public_url: String,
    /// The only origin (`scheme://host[:port]`) the OAuth callback page posts its result
    /// to, so no other window can read it. Default: the origin of `public_url`.
    pub app_origin: String,
    /// Guards the admin API. `None`: the service generates one into the data dir.
    pub admin_token: Option<Secret>,
    /// Where the master key is kept when `SOCIAL_STUDIO_MASTER_KEY` is not set (that
    /// variable is read by the storage crate, not here). `None`: `{data_dir}/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// How long an OAuth `state` can be redeemed (key `oauth_state_ttl_secs`).
    pub oauth_state_ttl: Duration,
    /// The largest request body the HTTP service accepts.
    pub max_body_bytes: usize,
    /// How many days ahead a grant nothing can renew is reported as expiring soon.
    pub expiring_soon_days: u32,
    /// How late a post may still be published unreviewed; later ones are held. `None`:
    /// never held for lateness.
    pub lateness_window_secs: Option<u64>,
    /// How many platform calls each platform queue runs at once.
    pub publish_concurrency: usize,
    /// The `[platforms.<id>]` sections present (from the file or the environment).
    /// Instagram has its own even where it shares Facebook's app: nothing is inherited.
    pub platforms: BTreeMap<Platform, PlatformConfig>,
}

/// One `[platforms.<id>]` section: app credentials and endpoint overrides. Every field
/// left `None` takes the platform's real value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformConfig {
    /// The app's client id; without it (and the secret) the platform is `not_configured`.
    pub client_id: Option<String>,
    /// The app's client secret; `Debug` prints `[redacted]`.
    pub client_secret: Option<Secret>,
    /// Overrides the consent page.
    pub auth_url: Option<String>,
    /// Overrides the token endpoint.
    pub token_url: Option<String>,
    /// Overrides the revocation endpoint.
    pub revoke_url: Option<String>,
    /// Overrides the API base (no trailing slash).
    pub api_base: Option<String>,
    /// Bluesky only: the PDS or entryway to sign in at (no trailing slash).
    pub service: Option<String>,
    /// Bluesky only: the PLC directory that resolves `did:plc` identities.
    pub plc_directory: Option<String>,
}

/// Where a configuration value came from, so an error can say where to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// No one set it: a default derived from other values.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "in {}", path.display()),
            Origin::Env(name) => write!(f, "from {name}"),
            Origin::Default => f.write_str("by default"),
        }
    }
}

/// The configuration was refused. Every variant but the file-level ones names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read the config file {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not TOML. Only the parser's message is kept — not its excerpt
    /// of the line, which could hold a secret.
    #[error("{}:{line}:{column}: not valid TOML: {message}", .path.display())]
    InvalidToml {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A key or `[platforms.<id>]` section this version does not know.
    #[error("unknown key `{key}` {origin}{}; expected one of: {}", did_you_mean(.suggestion), .expected.join(", "))]
    UnknownKey {
        key: String,
        origin: Origin,
        suggestion: Option<String>,
        expected: Vec<&'static str>,
    },
    /// A `SOCIAL_STUDIO_*` environment variable that matches no key.
    #[error("unknown environment variable {name}{}; expected SOCIAL_STUDIO_<KEY> or SOCIAL_STUDIO_<PLATFORM>_<KEY>", did_you_mean(.suggestion))]
    UnknownVariable {
        name: String,
        suggestion: Option<String>,
    },
    /// A value of the wrong type or out of range. `value` is `None` for secrets.
    #[error("bad value for `{key}` {origin}: {}expected {expected}", shown(.value))]
    BadValue {
        key: String,
        origin: Origin,
        value: Option<String>,
        expected: String,
    },
    /// A value that cannot work: alone (a URL that is not absolute, plain http to a host
    /// that is not loopback) or with another (a client id without its secret).
    #[error("`{key}` {origin}: {problem}")]
    Inconsistent {
        key: String,
        origin: Origin,
        problem: String,
    },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => String::new(),
    }
}

fn shown(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("got {v}, "),
        None => "value hidden, ".to_owned(),
    }
}

impl ConfigError {
    /// The key at fault (`listen`, `platforms.x.client_id`; the variable's name for an
    /// unknown variable); `None` when the file as a whole is at fault.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Unreadable { .. } | ConfigError::InvalidToml { .. } => None,
            ConfigError::UnknownKey { key, .. }
            | ConfigError::BadValue { key, .. }
            | ConfigError::Inconsistent { key, .. } => Some(key),
            ConfigError::UnknownVariable { name, .. } => Some(name),
        }
    }

    /// Where the offending value came from, where one value is at fault.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            ConfigError::UnknownKey { origin, .. }
            | ConfigError::BadValue { origin, .. }
            | ConfigError::Inconsistent { origin, .. } => Some(origin),
            _ => None,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConfigError::Unreadable { .. } => "unreadable_file",
            ConfigError::InvalidToml { .. } => "invalid_toml",
            ConfigError::UnknownKey { .. } => "unknown_key",
            ConfigError::UnknownVariable { .. } => "unknown_variable",
            ConfigError::BadValue { .. } => "bad_value",
            ConfigError::Inconsistent { .. } => "inconsistent",
        }
    }
}

/// A platform's real endpoints.
struct Endpoints {
    auth_url: &'static str,
    token_url: &'static str,
    revoke_url: Option<&'static str>,
    api_base: &'static str,
}

/// How a platform is reached: OAuth 2.0 endpoints, or an AT Protocol service.
enum Reach {
    OAuth(Endpoints),
    AtProto { service: &'static str },
}

/// The platforms' real endpoints (PLATFORMS.md, from each platform's documentation).
/// `revoke_url` is an RFC 7009-style endpoint only: Meta revokes through the Graph API
/// (`DELETE /{user-id}/permissions`), Threads documents none, and Pinterest's revokes
/// only system-user tokens.
fn real_endpoints(p: Platform) -> Reach {
    Reach::OAuth(match p {
        Platform::X => Endpoints {
            auth_url: "https://x.com/i/oauth2/authorize",
            token_url: "https://api.x.com/2/oauth2/token",
            revoke_url: Some("https://api.x.com/2/oauth2/revoke"),
            api_base: "https://api.x.com",
        },
        Platform::Linkedin => Endpoints {
            auth_url: "https://www.linkedin.com/oauth/v2/authorization",
            token_url: "https://www.linkedin.com/oauth/v2/accessToken",
            revoke_url: Some("https://www.linkedin.com/oauth/v2/revoke"),
            api_base: "https://api.linkedin.com",
        },
        Platform::Pinterest => Endpoints {
            auth_url: "https://www.pinterest.com/oauth/",
            token_url: "https://api.pinterest.com/v5/oauth/token",
            revoke_url: None,
            api_base: "https://api.pinterest.com",
        },
        Platform::Tiktok => Endpoints {
            auth_url: "https://www.tiktok.com/v2/auth/authorize/",
            token_url: "https://open.tiktokapis.com/v2/oauth/token/",
            revoke_url: Some("https://open.tiktokapis.com/v2/oauth/revoke/"),
            api_base: "https://open.tiktokapis.com",
        },
        Platform::Youtube => Endpoints {
            auth_url: "https://accounts.google.com/o/oauth2/v2/auth",
            token_url: "https://oauth2.googleapis.com/token",
            revoke_url: Some("https://oauth2.googleapis.com/revoke"),
            api_base: "https://www.googleapis.com",
        },
        // Instagram through Facebook Login for Business: the same hosts as Facebook.
        Platform::Facebook | Platform::Instagram => Endpoints {
            auth_url: concat!(
                "https://www.facebook.com/",
                graph_version!(),
                "/dialog/oauth"
            ),
            token_url: concat!(
                "https://graph.facebook.com/",
                graph_version!(),
                "/oauth/access_token"
            ),
            revoke_url: None,
            api_base: concat!("https://graph.facebook.com/", graph_version!()),
        },
        Platform::Threads => Endpoints {
            auth_url: "https://threads.net/oauth/authorize",
            token_url: "https://graph.threads.net/oauth/access_token",
            revoke_url: None,
            api_base: concat!("https://graph.threads.net/", threads_version!()),
        },
        Platform::Bluesky => {
            return Reach::AtProto {
                service: BLUESKY_DEFAULT_SERVICE,
            }
        }
    })
}

/// The keys a platform's section accepts.
fn platform_keys(p: Platform) -> &'static [&'static str] {
    match p {
        Platform::Bluesky => &BLUESKY_KEYS,
        _ => &OAUTH_KEYS,
    }
}

impl Default for Config {
    fn default() -> Config {
        let origin = format!("http://{DEFAULT_LISTEN}");
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN,
            public_url: origin.clone(),
            app_origin: origin,
            admin_token: None,
            master_key_file: None,
            oauth_state_ttl: DEFAULT_OAUTH_STATE_TTL,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            expiring_soon_days: DEFAULT_EXPIRING_SOON_DAYS,
            lateness_window_secs: None,
            publish_concurrency: DEFAULT_PUBLISH_CONCURRENCY,
            platforms: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Reads the TOML file (if given), then applies the `SOCIAL_STUDIO_*` overrides from
    /// `env` (pass `std::env::vars()` in production; tests pass a `Vec`). The environment
    /// wins over the file. Relative paths are relative to the working directory.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut layers = Layers::default();
        if let Some(path) = file {
            layers.read_file(path)?;
        }
        layers.read_env(env)?;
        layers.build()
    }

    /// The one redirect URI registered with every platform.
    pub fn redirect_uri(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.public_url)
    }

    /// Where the master key file is: `master_key_file`, or `{data_dir}/master.key`.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// Whether a platform can be connected: it has app credentials (client id and
    /// secret). Bluesky needs none — its own `service`, or `bsky.social` by default.
    pub fn is_configured(&self, p: Platform) -> bool {
        if p == Platform::Bluesky {
            return true;
        }
        self.platforms.get(&p).is_some_and(|section| {
            section
                .client_id
                .as_deref()
                .is_some_and(|id| !id.is_empty())
                && section
                    .client_secret
                    .as_ref()
                    .is_some_and(|s| !s.is_empty())
        })
    }

    /// The adapter's settings: the platform's real endpoints, overridden key by key by
    /// its section. `None` when the platform is not configured. For Bluesky the
    /// endpoints are the session methods of its service (`createSession`,
    /// `refreshSession`, `deleteSession`), `api_base` is the service, and the client id
    /// and secret are empty.
    pub fn platform_settings(&self, p: Platform) -> Option<PlatformSettings> {
        if !self.is_configured(p) {
            return None;
        }
        let section = self.platforms.get(&p).cloned().unwrap_or_default();
        match real_endpoints(p) {
            Reach::AtProto { service } => {
                let service = section.service.unwrap_or_else(|| service.to_owned());
                Some(PlatformSettings {
                    client_id: String::new(),
                    client_secret: Secret::new(""),
                    auth_url: format!("{service}{BLUESKY_CREATE_SESSION}"),
                    token_url: format!("{service}{BLUESKY_REFRESH_SESSION}"),
                    revoke_url: Some(format!("{service}{BLUESKY_DELETE_SESSION}")),
                    api_base: service,
                })
            }
            Reach::OAuth(real) => Some(PlatformSettings {
                client_id: section.client_id?,
                client_secret: section.client_secret?,
                auth_url: section.auth_url.unwrap_or_else(|| real.auth_url.to_owned()),
                token_url: section
                    .token_url
                    .unwrap_or_else(|| real.token_url.to_owned()),
                revoke_url: section
                    .revoke_url
                    .or_else(|| real.revoke_url.map(str::to_owned)),
                api_base: section.api_base.unwrap_or_else(|| real.api_base.to_owned()),
            }),
        }
    }

    /// The PLC directory the Bluesky adapter resolves `did:plc` identities at.
    pub fn bluesky_plc_directory(&self) -> String {
        self.platforms
            .get(&Platform::Bluesky)
            .and_then(|section| section.plc_directory.clone())
            .unwrap_or_else(|| BLUESKY_DEFAULT_PLC_DIRECTORY.to_owned())
    }
}

/// A value as it was written, before it is checked.
enum Raw {
    Toml(toml::Value),
    Env(String),
}

/// A value and where it came from.
struct Entry {
    raw: Raw,
    origin: Origin,
}

/// Everything set, file first and the environment over it, keyed by known keys only.
#[derive(Default)]
struct Layers {
    top: BTreeMap<&'static str, Entry>,
    platforms: BTreeMap<Platform, BTreeMap<&'static str, Entry>>,
}

impl Layers {
    fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let (line, column) = e
                .span()
                .map(|span| line_col(&text, span.start))
                .unwrap_or((1, 1));
            ConfigError::InvalidToml {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let origin = Origin::File(path.to_owned());
        for (key, value) in table {
            if key == PLATFORMS_KEY {
                self.read_platforms(value, &origin)?;
                continue;
            }
            let known = known(&key, &TOP_KEYS).ok_or_else(|| {
                let mut expected = TOP_KEYS.to_vec();
                expected.push(PLATFORMS_KEY);
                unknown_key(key.clone(), &key, &origin, expected)
            })?;
            self.top.insert(known, toml_entry(value, &origin));
        }
        Ok(())
    }

    fn read_platforms(&mut self, value: toml::Value, origin: &Origin) -> Result<(), ConfigError> {
        let toml::Value::Table(sections) = value else {
            return Err(bad_value(
                PLATFORMS_KEY,
                &Entry {
                    raw: Raw::Toml(value),
                    origin: origin.clone(),
                },
                false,
                "a table of [platforms.<id>] sections",
            ));
        };
        for (id, section) in sections {
            let key = format!("{PLATFORMS_KEY}.{id}");
            let Some(p) = Platform::from_id(&id) else {
                let ids = Platform::ALL.map(Platform::id).to_vec();
                return Err(unknown_key(key, &id, origin, ids));
            };
            let toml::Value::Table(section) = section else {
                return Err(bad_value(
                    &key,
                    &Entry {
                        raw: Raw::Toml(section),
                        origin: origin.clone(),
                    },
                    false,
                    "a table of keys",
                ));
            };
            let entries = self.platforms.entry(p).or_default();
            for (name, value) in section {
                let known = known(&name, platform_keys(p)).ok_or_else(|| {
                    let key = format!("{key}.{name}");
                    unknown_key(key, &name, origin, platform_keys(p).to_vec())
                })?;
                entries.insert(known, toml_entry(value, origin));
            }
        }
        Ok(())
    }

    fn read_env(
        &mut self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        // Sorted so that, of several bad variables, the same one is reported every time.
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (name, value) in vars {
            if IGNORED_ENV_VARS.contains(&name.as_str()) {
                continue;
            }
            let entry = Entry {
                raw: Raw::Env(value),
                origin: Origin::Env(name.clone()),
            };
            let rest = &name[ENV_PREFIX.len()..];
            if let Some(key) = TOP_KEYS.into_iter().find(|k| k.to_uppercase() == rest) {
                self.top.insert(key, entry);
                continue;
            }
            let platform_key = Platform::ALL.into_iter().find_map(|p| {
                let key = rest.strip_prefix(&format!("{}_", p.id().to_uppercase()))?;
                let known = platform_keys(p).iter().find(|k| k.to_uppercase() == key)?;
                Some((p, *known))
            });
            match platform_key {
                Some((p, key)) => {
                    self.platforms.entry(p).or_default().insert(key, entry);
                }
                None => {
                    let candidates = env_names();
                    let suggestion = closest(&name, candidates.iter().map(String::as_str));
                    return Err(ConfigError::UnknownVariable { name, suggestion });
                }
            }
        }
        Ok(())
    }

    fn build(mut self) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let mut take = |key: &str| self.top.remove(key);

        let data_dir = match take("data_dir") {
            Some(entry) => PathBuf::from(text("data_dir", &entry, false)?),
            None => defaults.data_dir,
        };
        let listen = match take("listen") {
            Some(entry) => {
                let value = text("listen", &entry, false)?;
                value.parse::<SocketAddr>().map_err(|_| {
                    bad_value(
                        "listen",
                        &entry,
                        false,
                        "an IP address and port such as 127.0.0.1:8080",
                    )
                })?
            }
            None => defaults.listen,
        };
        let public_url = match take("public_url") {
            Some(entry) => {
                let value = text("public_url", &entry, false)?;
                web_url("public_url", &value, &entry.origin, false)?
            }
            None => {
                let value = format!("http://{listen}");
                web_url("public_url", &value, &Origin::Default, false).map_err(|_| {
                    ConfigError::Inconsistent {
                        key: "public_url".to_owned(),
                        origin: Origin::Default,
                        problem: format!(
                            "listen is {listen}, not a loopback address, so public_url must be \
                             set to the https:// address browsers reach the service at"
                        ),
                    }
                })?
            }
        };
        let app_origin = match take("app_origin") {
            Some(entry) => {
                let value = text("app_origin", &entry, false)?;
                let url = web_url("app_origin", &value, &entry.origin, false)?;
                if url.path() != "/" {
                    return Err(ConfigError::Inconsistent {
                        key: "app_origin".to_owned(),
                        origin: entry.origin,
                        problem: format!(
                            "{value:?} has a path; an origin is scheme://host[:port] only"
                        ),
                    });
                }
                url.origin().ascii_serialization()
            }
            None => public_url.origin().ascii_serialization(),
        };
        let admin_token = match take("admin_token") {
            Some(entry) => {
                let value = text("admin_token", &entry, true)?;
                if value.chars().count() < MIN_ADMIN_TOKEN_LEN {
                    return Err(bad_value(
                        "admin_token",
                        &entry,
                        true,
                        &format!("at least {MIN_ADMIN_TOKEN_LEN} characters"),
                    ));
                }
                Some(Secret::new(value))
            }
            None => None,
        };
        let master_key_file = match take("master_key_file") {
            Some(entry) => Some(PathBuf::from(text("master_key_file", &entry, false)?)),
            None => None,
        };
        let oauth_state_ttl = match take("oauth_state_ttl_secs") {
            Some(entry) => Duration::from_secs(integer("oauth_state_ttl_secs", &entry, 1, 86_400)?),
            None => defaults.oauth_state_ttl,
        };
        let max_body_bytes = match take("max_body_bytes") {
            Some(entry) => {
                let max = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
                let value = integer("max_body_bytes", &entry, 1, max)?;
                usize::try_from(value).unwrap_or(usize::MAX)
            }
            None => defaults.max_body_bytes,
        };
        let expiring_soon_days = match take("expiring_soon_days") {
            Some(entry) => {
                let value = integer("expiring_soon_days", &entry, 1, 365)?;
                u32::try_from(value).unwrap_or(365)
            }
            None => defaults.expiring_soon_days,
        };
        let lateness_window_secs = match take("lateness_window_secs") {
            Some(entry) => Some(integer("lateness_window_secs", &entry, 1, u64::MAX)?),
            None => None,
        };
        let publish_concurrency = match take("publish_concurrency") {
            Some(entry) => {
                let value = integer("publish_concurrency", &entry, 1, 1024)?;
                usize::try_from(value).unwrap_or(1024)
            }
            None => defaults.publish_concurrency,
        };

        let mut platforms = BTreeMap::new();
        for (p, entries) in self.platforms {
            platforms.insert(p, platform_section(p, entries)?);
        }

        Ok(Config {
            data_dir,
            listen,
            public_url: public_url.as_str().trim_end_matches('/').to_owned(),
            app_origin,
            admin_token,
            master_key_file,
            oauth_state_ttl,
            max_body_bytes,
            expiring_soon_days,
            lateness_window_secs,
            publish_concurrency,
            platforms,
        })
    }
}

/// Checks one platform's section: values, URLs, and credentials given in pairs.
fn platform_section(
    p: Platform,
    mut entries: BTreeMap<&'static str, Entry>,
) -> Result<PlatformConfig, ConfigError> {
    let key = |name: &str| format!("{PLATFORMS_KEY}.{}.{name}", p.id());
    let mut section = PlatformConfig::default();

    let client_id = entries.remove("client_id");
    let client_secret = entries.remove("client_secret");
    match (&client_id, &client_secret) {
        (Some(present), None) => return Err(unpaired(&key("client_secret"), "client_id", present)),
        (None, Some(present)) => return Err(unpaired(&key("client_id"), "client_secret", present)),
        _ => {}
    }
    if let Some(entry) = client_id {
        section.client_id = Some(text(&key("client_id"), &entry, false)?);
    }
    if let Some(entry) = client_secret {
        section.client_secret = Some(Secret::new(text(&key("client_secret"), &entry, true)?));
    }

    // Endpoints the adapter appends paths to lose a trailing slash; the others are kept
    // exactly as written (TikTok's end in one).
    for (name, is_base) in [
        ("auth_url", false),
        ("token_url", false),
        ("revoke_url", false),
        ("api_base", true),
        ("service", true),
        ("plc_directory", true),
    ] {
        let Some(entry) = entries.remove(name) else {
            continue;
        };
        let key = key(name);
        let value = text(&key, &entry, false)?;
        web_url(&key, &value, &entry.origin, true)?;
        let value = if is_base {
            value.trim_end_matches('/').to_owned()
        } else {
            value
        };
        let slot = match name {
            "auth_url" => &mut section.auth_url,
            "token_url" => &mut section.token_url,
            "revoke_url" => &mut section.revoke_url,
            "api_base" => &mut section.api_base,
            "service" => &mut section.service,
            _ => &mut section.plc_directory,
        };
        *slot = Some(value);
    }
    Ok(section)
}

fn unpaired(missing_key: &str, present: &str, entry: &Entry) -> ConfigError {
    ConfigError::Inconsistent {
        key: missing_key.to_owned(),
        origin: entry.origin.clone(),
        problem: format!(
            "is not set, but {present} is; set both client_id and client_secret, or neither"
        ),
    }
}

/// Parses an http(s) URL that will carry codes or tokens: absolute, https or plain http
/// to loopback only (the same rule the adapters apply), no credentials or fragment, and
/// no query unless `query`.
fn web_url(key: &str, value: &str, origin: &Origin, query: bool) -> Result<Url, ConfigError> {
    let refuse = |problem: String| ConfigError::Inconsistent {
        key: key.to_owned(),
        origin: origin.clone(),
        problem,
    };
    let url = check_endpoint("url", value).map_err(|e| match e {
        SettingsError::InvalidUrl { source, .. } => {
            refuse(format!("{value:?} is not an absolute URL ({source})"))
        }
        SettingsError::InsecureUrl { .. } => refuse(format!(
            "{value:?} must be an https:// URL (plain http only to a loopback address)"
        )),
        other => refuse(other.to_string()),
    })?;
    if url.host().is_none() {
        return Err(refuse(format!("{value:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(format!(
            "{:?} must not carry a user name or password",
            url.origin().ascii_serialization()
        )));
    }
    if url.fragment().is_some() {
        return Err(refuse(format!("{value:?} must not have a #fragment")));
    }
    if !query && url.query().is_some() {
        return Err(refuse(format!("{value:?} must not have a ?query")));
    }
    Ok(url)
}

fn toml_entry(value: toml::Value, origin: &Origin) -> Entry {
    Entry {
        raw: Raw::Toml(value),
        origin: origin.clone(),
    }
}

/// The known key spelled `name`, as the `'static` str the tables hold.
fn known(name: &str, keys: &[&'static str]) -> Option<&'static str> {
    keys.iter().find(|k| **k == name).copied()
}

fn unknown_key(
    key: String,
    name: &str,
    origin: &Origin,
    expected: Vec<&'static str>,
) -> ConfigError {
    ConfigError::UnknownKey {
        suggestion: closest(name, expected.iter().copied()),
        key,
        origin: origin.clone(),
        expected,
    }
}

/// A non-empty string value. Secrets are kept exactly as given; other values are trimmed.
fn text(key: &str, entry: &Entry, secret: bool) -> Result<String, ConfigError> {
    let value = match &entry.raw {
        Raw::Toml(toml::Value::String(s)) | Raw::Env(s) => s,
        Raw::Toml(_) => return Err(bad_value(key, entry, secret, "a string")),
    };
    if value.trim().is_empty() {
        return Err(bad_value(key, entry, secret, "a non-empty string"));
    }
    Ok(if secret {
        value.clone()
    } else {
        value.trim().to_owned()
    })
}

/// A whole number in `min..=max`: a TOML integer, or decimal digits in the environment.
fn integer(key: &str, entry: &Entry, min: u64, max: u64) -> Result<u64, ConfigError> {
    let expected = if max == u64::MAX {
        format!("a whole number of at least {min}")
    } else {
        format!("a whole number from {min} to {max}")
    };
    let value = match &entry.raw {
        Raw::Toml(toml::Value::Integer(i)) => u64::try_from(*i).ok(),
        Raw::Toml(_) => None,
        Raw::Env(s) => s.trim().parse::<u64>().ok(),
    };
    match value {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(bad_value(key, entry, false, &expected)),
    }
}

fn bad_value(key: &str, entry: &Entry, secret: bool, expected: &str) -> ConfigError {
    let value = (!secret).then(|| match &entry.raw {
        Raw::Toml(value) => value.to_string(),
        Raw::Env(value) => format!("{value:?}"),
    });
    ConfigError::BadValue {
        key: key.to_owned(),
        origin: entry.origin.clone(),
        value,
        expected: expected.to_owned(),
    }
}

/// Every variable name `load` understands, for suggestions.
fn env_names() -> Vec<String> {
    let mut names: Vec<String> = TOP_KEYS
        .iter()
        .map(|k| format!("{ENV_PREFIX}{}", k.to_uppercase()))
        .collect();
    for p in Platform::ALL {
        for k in platform_keys(p) {
            names.push(format!(
                "{ENV_PREFIX}{}_{}",
                p.id().to_uppercase(),
                k.to_uppercase()
            ));
        }
    }
    names.extend(IGNORED_ENV_VARS.iter().map(|s| s.to_string()));
    names
}

/// The candidate nearest to `name` by edit distance, if it is near enough to be a typo.
fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_owned())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Writes `text` as a config file and loads it with `vars`.
    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("social-studio.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), env(vars))
    }

    fn refused(text: &str, vars: &[(&str, &str)]) -> ConfigError {
        match load(text, vars) {
            Ok(config) => panic!("accepted {text:?} {vars:?}: {config:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn defaults() {
        let config = Config::default();
        assert_eq!(config.data_dir, PathBuf::from("social-studio-data"));
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.public_url, "http://127.0.0.1:8080");
        assert_eq!(config.app_origin, "http://127.0.0.1:8080");
        assert_eq!(config.admin_token, None);
        assert_eq!(config.master_key_file, None);
        assert_eq!(
            config.master_key_path(),
            PathBuf::from("social-studio-data/master.key")
        );
        assert_eq!(config.oauth_state_ttl, Duration::from_secs(600));
        assert_eq!(config.max_body_bytes, 1024 * 1024);
        assert_eq!(config.expiring_soon_days, 7);
        assert_eq!(config.lateness_window_secs, None);
        assert_eq!(config.publish_concurrency, 8);
        assert!(config.platforms.is_empty());
        assert_eq!(Config::load(None, Vec::new()).unwrap(), config);
        assert_eq!(load("", &[]).unwrap(), config);
    }

    #[test]
    fn every_key_from_the_file() {
        let config = load(
            r#"
            data_dir = "/var/lib/studio"
            listen = "0.0.0.0:9000"
            public_url = "https://Studio.example.com/app/"
            app_origin = "https://app.example.com/"
            admin_token = "0123456789abcdef-admin"
            master_key_file = "/etc/studio/master.key"
            oauth_state_ttl_secs = 300
            max_body_bytes = 2048
            expiring_soon_days = 10
            lateness_window_secs = 3600
            publish_concurrency = 2

            [platforms.x]
            client_id = "x-id"
            client_secret = "x-secret"
            token_url = "https://x.example.com/token"
            api_base = "https://x.example.com/api/"

            [platforms.bluesky]
            service = "https://pds.example.com/"
            plc_directory = "https://plc.example.com"
            "#,
            &[],
        )
        .unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/studio"));
        assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(config.public_url, "https://studio.example.com/app");
        assert_eq!(config.app_origin, "https://app.example.com");
        assert_eq!(
            config.admin_token.as_ref().map(Secret::expose),
            Some("0123456789abcdef-admin")
        );
        assert_eq!(
            config.master_key_path(),
            PathBuf::from("/etc/studio/master.key")
        );
        assert_eq!(config.oauth_state_ttl, Duration::from_secs(300));
        assert_eq!(config.max_body_bytes, 2048);
        assert_eq!(config.expiring_soon_days, 10);
        assert_eq!(config.lateness_window_secs, Some(3600));
        assert_eq!(config.publish_concurrency, 2);
        assert_eq!(
            config.platforms.keys().copied().collect::<Vec<_>>(),
            [Platform::X, Platform::Bluesky]
        );

        let x = config.platform_settings(Platform::X).unwrap();
        assert_eq!(x.client_id, "x-id");
        assert_eq!(x.client_secret.expose(), "x-secret");
        assert_eq!(
            x.auth_url, "https://x.com/i/oauth2/authorize",
            "not overridden"
        );
        assert_eq!(x.token_url, "https://x.example.com/token");
        assert_eq!(
            x.revoke_url.as_deref(),
            Some("https://api.x.com/2/oauth2/revoke")
        );
        assert_eq!(x.api_base, "https://x.example.com/api", "no trailing slash");

        let bluesky = config.platform_settings(Platform::Bluesky).unwrap();
        assert_eq!(bluesky.api_base, "https://pds.example.com");
        assert_eq!(
            bluesky.auth_url,
            "https://pds.example.com/xrpc/com.atproto.server.createSession"
        );
        assert_eq!(config.bluesky_plc_directory(), "https://plc.example.com");
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let config = load(
            r#"
            listen = "127.0.0.1:9000"
            data_dir = "from-file"
            max_body_bytes = 10
            [platforms.x]
            client_id = "file-id"
            client_secret = "file-secret"
            "#,
            &[
                ("SOCIAL_STUDIO_LISTEN", "127.0.0.1:9001"),
                ("SOCIAL_STUDIO_MAX_BODY_BYTES", "20"),
                ("SOCIAL_STUDIO_X_CLIENT_ID", "env-id"),
                ("SOCIAL_STUDIO_LINKEDIN_CLIENT_ID", "li-id"),
                ("SOCIAL_STUDIO_LINKEDIN_CLIENT_SECRET", "li-secret"),
                ("SOCIAL_STUDIO_BLUESKY_SERVICE", "https://pds.example.com"),
                ("SOCIAL_STUDIO_LATENESS_WINDOW_SECS", "900"),
                ("SOCIAL_STUDIO_ADMIN_TOKEN", "an-admin-token-of-some-length"),
            ],
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(
            config.public_url, "http://127.0.0.1:9001",
            "derived from the winner"
        );
        assert_eq!(
            config.data_dir,
            PathBuf::from("from-file"),
            "file kept where env is silent"
        );
        assert_eq!(config.max_body_bytes, 20);
        assert_eq!(config.lateness_window_secs, Some(900));
        let x = &config.platforms[&Platform::X];
        assert_eq!(x.client_id.as_deref(), Some("env-id"));
        assert_eq!(
            x.client_secret.as_ref().map(Secret::expose),
            Some("file-secret"),
            "one key overridden, not the whole section"
        );
        assert!(
            config.is_configured(Platform::Linkedin),
            "a section from env alone"
        );
        assert_eq!(
            config.platforms[&Platform::Bluesky].service.as_deref(),
            Some("https://pds.example.com")
        );
    }

    #[test]
    fn foreign_and_reserved_variables_are_ignored() {
        let config = Config::load(
            None,
            env(&[
                ("PATH", "/usr/bin"),
                ("HOME", "/root"),
                ("CI", "true"),
                ("social_studio_listn", "lowercase is not ours"),
                ("SOCIAL_STUDIO_MASTER_KEY", "base64-key-read-by-storage"),
                ("SOCIAL_STUDIO_CONFIG", "/etc/studio.toml"),
            ]),
        )
        .unwrap();
        assert_eq!(config, Config::default());
    }

    /// A config file, environment variables, the key the refusal must name, its code.
    type RefusalCase = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );

    /// Every refusal names its key (in `key()` and in the message) and has a stable code.
    #[test]
    fn every_refusal_names_its_key() {
        let cases: &[RefusalCase] = &[
            ("listn = \"127.0.0.1:1\"", &[], "listn", "unknown_key"),
            (
                "[platforms.x]\nclinet_id = \"a\"",
                &[],
                "platforms.x.clinet_id",
                "unknown_key",
            ),
            (
                "[platforms.myspace]\nclient_id = \"a\"",
                &[],
                "platforms.myspace",
                "unknown_key",
            ),
            (
                "[platforms.x]\nservice = \"https://a.example\"",
                &[],
                "platforms.x.service",
                "unknown_key",
            ),
            (
                "[platforms.bluesky]\nclient_id = \"a\"",
                &[],
                "platforms.bluesky.client_id",
                "unknown_key",
            ),
            (
                "",
                &[("SOCIAL_STUDIO_LISTN", "x")],
                "SOCIAL_STUDIO_LISTN",
                "unknown_variable",
            ),
            (
                "",
                &[("SOCIAL_STUDIO_X_CLINET_ID", "x")],
                "SOCIAL_STUDIO_X_CLINET_ID",
                "unknown_variable",
            ),
            (
                "",
                &[("SOCIAL_STUDIO_MYSPACE_CLIENT_ID", "x")],
                "SOCIAL_STUDIO_MYSPACE_CLIENT_ID",
                "unknown_variable",
            ),
            ("listen = \"localhost\"", &[], "listen", "bad_value"),
            ("listen = 8080", &[], "listen", "bad_value"),
            (
                "max_body_bytes = \"big\"",
                &[],
                "max_body_bytes",
                "bad_value",
            ),
            ("max_body_bytes = -1", &[], "max_body_bytes", "bad_value"),
            (
                "oauth_state_ttl_secs = 0",
                &[],
                "oauth_state_ttl_secs",
                "bad_value",
            ),
            (
                "expiring_soon_days = 400",
                &[],
                "expiring_soon_days",
                "bad_value",
            ),
            ("data_dir = \"  \"", &[], "data_dir", "bad_value"),
            ("platforms = \"x\"", &[], "platforms", "bad_value"),
            ("[platforms]\nx = 1", &[], "platforms.x", "bad_value"),
            (
                "",
                &[("SOCIAL_STUDIO_PUBLISH_CONCURRENCY", "lots")],
                "publish_concurrency",
                "bad_value",
            ),
            (
                "",
                &[("SOCIAL_STUDIO_DATA_DIR", "")],
                "data_dir",
                "bad_value",
            ),
            ("admin_token = \"short\"", &[], "admin_token", "bad_value"),
            (
                "[platforms.x]\nclient_id = \"a\"",
                &[],
                "platforms.x.client_secret",
                "inconsistent",
            ),
            (
                "",
                &[("SOCIAL_STUDIO_LINKEDIN_CLIENT_SECRET", "s")],
                "platforms.linkedin.client_id",
                "inconsistent",
            ),
            (
                "public_url = \"studio.example.com\"",
                &[],
                "public_url",
                "inconsistent",
            ),
            (
                "public_url = \"ftp://studio.example.com\"",
                &[],
                "public_url",
                "inconsistent",
            ),
            (
                "public_url = \"http://studio.example.com\"",
                &[],
                "public_url",
                "inconsistent",
            ),
            (
                "public_url = \"https://studio.example.com/?a=b\"",
                &[],
                "public_url",
                "inconsistent",
            ),
            (
                "listen = \"0.0.0.0:8080\"",
                &[],
                "public_url",
                "inconsistent",
            ),
            (
                "app_origin = \"https://app.example.com/studio\"",
                &[],
                "app_origin",
                "inconsistent",
            ),
            (
                "app_origin = \"http://app.example.com\"",
                &[],
                "app_origin",
                "inconsistent",
            ),
            (
                "[platforms.x]\ntoken_url = \"/2/oauth2/token\"",
                &[],
                "platforms.x.token_url",
                "inconsistent",
            ),
            (
                "[platforms.linkedin]\nauth_url = \"http://linkedin.example.com/auth\"",
                &[],
                "platforms.linkedin.auth_url",
                "inconsistent",
            ),
            (
                "",
                &[("SOCIAL_STUDIO_BLUESKY_SERVICE", "http://10.0.0.5:2583")],
                "platforms.bluesky.service",
                "inconsistent",
            ),
        ];
        for (text, vars, key, code) in cases {
            let error = refused(text, vars);
            let message = error.to_string();
            assert_eq!(error.key(), Some(*key), "{text:?} {vars:?}: {message}");
            assert_eq!(error.code(), *code, "{text:?} {vars:?}: {message}");
            assert!(message.contains(key), "{message} does not name {key}");
        }
    }

    #[test]
    fn refusals_say_where_and_what() {
        let error = refused("[platforms.x]\nclinet_id = \"a\"", &[]);
        let message = error.to_string();
        assert!(
            message.starts_with("unknown key `platforms.x.clinet_id` in "),
            "{message}"
        );
        assert!(message.contains("did you mean `client_id`?"), "{message}");
        assert!(matches!(error.origin(), Some(Origin::File(_))));

        let error = refused("", &[("SOCIAL_STUDIO_LISTN", "127.0.0.1:1")]);
        assert!(
            error
                .to_string()
                .contains("did you mean `SOCIAL_STUDIO_LISTEN`?"),
            "{error}"
        );

        let error = refused("", &[("SOCIAL_STUDIO_LISTEN", "nowhere")]);
        let message = error.to_string();
        assert!(message.contains("from SOCIAL_STUDIO_LISTEN"), "{message}");
        assert!(
            message.contains("\"nowhere\""),
            "the value is shown: {message}"
        );
        assert_eq!(
            error.origin(),
            Some(&Origin::Env("SOCIAL_STUDIO_LISTEN".to_owned()))
        );

        let error = refused("[platforms.myspace]", &[]);
        assert!(
            error.to_string().contains("bluesky"),
            "lists the platforms: {error}"
        );
    }

    #[test]
    fn invalid_toml_gives_line_and_column() {
        let error = refused("listen = \"127.0.0.1:1\"\nadmin_token = oops-s3cr3t\n", &[]);
        let ConfigError::InvalidToml { line, column, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!((*line, *column), (2, 15), "{error}");
        assert_eq!(error.code(), "invalid_toml");
        assert!(!error.to_string().contains("oops-s3cr3t"), "{error}");
        assert!(!format!("{error:?}").contains("oops-s3cr3t"), "{error:?}");
    }

    #[test]
    fn an_unreadable_file_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.toml");
        let error = Config::load(Some(&path), Vec::new()).unwrap_err();
        assert_eq!(error.code(), "unreadable_file");
        assert!(error.to_string().contains("missing.toml"), "{error}");
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let config = load(
            "admin_token = \"admin-s3cr3t-0123456789\"\n[platforms.x]\nclient_id = \"id\"\nclient_secret = \"client-s3cr3t\"",
            &[],
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");

        for (text, vars) in [
            ("admin_token = \"s3cr3t\"", vec![]),
            ("admin_token = 123456", vec![]),
            ("", vec![("SOCIAL_STUDIO_ADMIN_TOKEN", "s3cr3t")]),
            (
                "[platforms.x]\nclient_id = \"id\"\nclient_secret = 77",
                vec![],
            ),
        ] {
            let error = refused(text, &vars);
            assert_eq!(error.code(), "bad_value");
            let shown = format!("{error} {error:?}");
            assert!(
                !shown.contains("s3cr3t") && !shown.contains("123456") && !shown.contains("77"),
                "{shown}"
            );
            assert!(shown.contains("value hidden"), "{shown}");
        }
    }

    #[test]
    fn redirect_uri_and_app_origin_follow_public_url() {
        assert_eq!(
            Config::default().redirect_uri(),
            "http://127.0.0.1:8080/v1/oauth/callback"
        );
        let config = load("public_url = \"https://studio.example.com:8443/app/\"", &[]).unwrap();
        assert_eq!(
            config.redirect_uri(),
            "https://studio.example.com:8443/app/v1/oauth/callback"
        );
        assert_eq!(config.app_origin, "https://studio.example.com:8443");
        let config = load("public_url = \"http://localhost:3000\"", &[]).unwrap();
        assert_eq!(
            config.redirect_uri(),
            "http://localhost:3000/v1/oauth/callback"
        );
    }

    #[test]
    fn platforms_without_credentials_are_not_configured() {
        let config = load(
            "[platforms.facebook]\nclient_id = \"fb\"\nclient_secret = \"fb-secret\"\n[platforms.tiktok]\napi_base = \"https://tt.example.com\"",
            &[],
        )
        .unwrap();
        assert!(config.is_configured(Platform::Facebook));
        assert!(
            !config.is_configured(Platform::Instagram),
            "nothing inherited from Facebook"
        );
        assert!(config.platform_settings(Platform::Instagram).is_none());
        assert!(
            !config.is_configured(Platform::Tiktok),
            "endpoints are not credentials"
        );
        assert!(config.platform_settings(Platform::Tiktok).is_none());
        assert!(
            config.is_configured(Platform::Bluesky),
            "Bluesky needs no credentials"
        );
        let bluesky = config.platform_settings(Platform::Bluesky).unwrap();
        assert_eq!(bluesky.api_base, "https://bsky.social");
        assert_eq!(config.bluesky_plc_directory(), "https://plc.directory");

        let facebook = config.platform_settings(Platform::Facebook).unwrap();
        assert_eq!(
            facebook.auth_url,
            format!("https://www.facebook.com/{GRAPH_API_VERSION}/dialog/oauth")
        );
        assert_eq!(
            facebook.api_base,
            format!("https://graph.facebook.com/{GRAPH_API_VERSION}")
        );
        assert_eq!(facebook.revoke_url, None);
    }

    #[test]
    fn default_endpoints_are_https_and_x_matches_its_docs() {
        let mut config = Config::default();
        for p in Platform::ALL {
            config.platforms.insert(
                p,
                PlatformConfig {
                    client_id: Some("id".into()),
                    client_secret: Some(Secret::new("secret")),
                    ..PlatformConfig::default()
                },
            );
        }
        for p in Platform::ALL {
            let s = config.platform_settings(p).unwrap();
            for url in [&s.auth_url, &s.token_url, &s.api_base]
                .into_iter()
                .chain(s.revoke_url.as_ref())
            {
                assert!(url.starts_with("https://"), "{p}: {url}");
                check_endpoint("url", url).unwrap();
                assert!(!s.api_base.ends_with('/'), "{p}: {}", s.api_base);
            }
        }
        let x = config.platform_settings(Platform::X).unwrap();
        assert_eq!(
            (
                x.auth_url.as_str(),
                x.token_url.as_str(),
                x.revoke_url.as_deref(),
                x.api_base.as_str()
            ),
            (
                "https://x.com/i/oauth2/authorize",
                "https://api.x.com/2/oauth2/token",
                Some("https://api.x.com/2/oauth2/revoke"),
                "https://api.x.com"
            )
        );
    }
}
