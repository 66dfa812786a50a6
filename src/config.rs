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
//! app_origin = "https://app.example.com"        # default: the origin of public_url; or a list:
//!                                               # ["https://app.example.com", "https://admin.example.com"]
//! allow_private_media_urls = false             # true only where media is served locally (a sandbox)
//! page_link_ttl_secs = 900                      # how long a Social Accounts page link can be opened
//! page_frame_ancestors = "https://app.example.com"  # who may frame the page (comma-separated); default: nobody
//!
//! [retention]                                   # what the engine forgets, checked hourly
//! events_days = 30                              # 0: keep every event
//! idempotency_hours = 24                        # at least 1
//! finished_posts_days = 90                      # Published and Cancelled posts; 0: keep them
//!
//! [store]                                       # where the engine's data lives
//! backend = "sled"                              # or "postgres" (a build with `--features postgres`)
//! url = "postgres://user:pw@db.internal/studio" # postgres only; a secret (its password)
//! node_id = "studio-1"                          # default: host name and process id
//! lease_secs = 15                               # a node's lease on its connections
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
//! (`SOCIAL_STUDIO_X_CLIENT_ID`, `SOCIAL_STUDIO_BLUESKY_SERVICE`); a key of a future
//! `[<section>]` is `SOCIAL_STUDIO_<SECTION>_<KEY>`. Variables without the
//! `SOCIAL_STUDIO_` prefix are never looked at.
//!
//! How it is built: the file's shape is data — serde structs that deny unknown fields —
//! and the layers are merged key by key by `figment`, taken because a refusal must say
//! where its value came from: figment's errors carry the key's path and the metadata of
//! the layer that gave the value, and `find_metadata` answers the same for any key, which
//! the checks after deserialization (ranges, pairs, URL shapes) need as well. Its bundled
//! TOML and environment providers are not used: the first echoes a line of the file (a
//! secret) in its parse error, the second guesses types from the text and cannot spell
//! today's variable names, so a file layer and one layer per variable are written in
//! the `load` submodule, with the serde structs. This file holds the types and what
//! deserialization cannot say: [`Config::validate`], which hosts building a [`Config`]
//! in code call too.
//!
//! Each platform's real endpoints, kept beside its adapter
//! ([`crate::platforms::real_endpoints`]), are the defaults ([`Config::platform_settings`]);
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
use crate::platforms::{bluesky, real_endpoints, PlatformSettings, Reach, SettingsError};

mod load;

/// Every environment variable this module reads starts with this.
pub const ENV_PREFIX: &str = "SOCIAL_STUDIO_";

/// `SOCIAL_STUDIO_*` variables that belong to someone else and are not errors here: the
/// master key and the previous master keys of a rotation (read by the storage crate's
/// vault), the config file path and the log format (read by the binary, before any
/// configuration: the log must work to report a configuration that does not). A new
/// variable read elsewhere must be added here, or `load` refuses it.
pub const IGNORED_ENV_VARS: [&str; 4] = [
    "SOCIAL_STUDIO_MASTER_KEY",
    "SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS",
    "SOCIAL_STUDIO_CONFIG",
    "SOCIAL_STUDIO_LOG_FORMAT",
];

/// Where the service keeps its database and key files unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "social-studio-data";

/// Loopback only by default: exposing the service is a deliberate choice.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));

/// How long an OAuth `state` stays redeemable: long enough to log in and consent, short
/// enough that a leaked authorize URL soon goes stale.
pub const DEFAULT_OAUTH_STATE_TTL: Duration = Duration::from_secs(600);
/// How long a page link can be opened unless `page_link_ttl_secs` says otherwise.
pub const DEFAULT_PAGE_LINK_TTL: Duration = Duration::from_secs(900);

/// The largest request body the HTTP service accepts.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// How many days ahead a grant that cannot be renewed is reported as expiring soon.
pub const DEFAULT_EXPIRING_SOON_DAYS: u32 = 7;

/// How many platform calls each platform queue runs at once.
pub const DEFAULT_PUBLISH_CONCURRENCY: usize = 8;

/// How many days events are kept by default.
pub const DEFAULT_EVENTS_DAYS: u32 = 30;

/// How many hours an `Idempotency-Key` is remembered by default: a client retrying later
/// makes a new post.
pub const DEFAULT_IDEMPOTENCY_HOURS: u32 = 24;

/// How many days a finished post is kept by default.
pub const DEFAULT_FINISHED_POSTS_DAYS: u32 = 90;

/// How long a node's lease on its connections lasts by default (`store.lease_secs`).
pub const DEFAULT_LEASE_SECS: u32 = 15;

/// The path under `public_url` where platforms send the author back.
pub const CALLBACK_PATH: &str = "/v1/oauth/callback";

/// The shortest admin token accepted: the admin API acts on every pen name.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// The service configuration. Build it with [`Config::load`]; [`Config::default`] gives
/// every default and no platform sections. A host that builds or changes one in code
/// checks it with [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where the database, the generated admin token and the master key file live (on
    /// sled; a node on PostgreSQL keeps none of them there).
    pub data_dir: PathBuf,
    /// The address the HTTP service binds.
    pub listen: SocketAddr,
    /// The address browsers reach the service at, without a trailing slash; redirect URIs
    /// are built from it, so it must match what is registered with each platform.
    /// Default `http://{listen}`.
    pub public_url: String,
    /// The host application's origin (`scheme://host[:port]`) the OAuth callback page posts
    /// its result to, so no other window can read it — the first of key `app_origin`, a
    /// string or a list. Default: the origin of `public_url`. The callback also posts to
    /// [`extra_app_origins`](Config::extra_app_origins) and to the Social Accounts page's
    /// own origin, and to no other ([`Config::message_origins`]).
    pub app_origin: String,
    /// The origins after the first when `app_origin` is a list (in the environment,
    /// comma-separated). Empty by default.
    pub extra_app_origins: Vec<String>,
    /// Guards the admin API. `None`: the service generates one into the data dir — on
    /// sled only: with `store.backend = "postgres"` it is required.
    pub admin_token: Option<Secret>,
    /// Admin tokens still accepted while clients move to a new one (key
    /// `previous_admin_tokens`: comma-separated). Empty outside a rotation.
    pub previous_admin_tokens: Vec<Secret>,
    /// Where the master key is kept when `SOCIAL_STUDIO_MASTER_KEY` is not set (that
    /// variable is read by the storage crate, not here). `None`: `{data_dir}/master.key`.
    /// Sled only: refused with `store.backend = "postgres"`, whose key is never a file.
    pub master_key_file: Option<PathBuf>,
    /// How long an OAuth `state` can be redeemed (key `oauth_state_ttl_secs`).
    pub oauth_state_ttl: Duration,
    /// How long a link to the Social Accounts page can be opened, once (key
    /// `page_link_ttl_secs`, default 15 minutes, at most 7 days).
    pub page_link_ttl: Duration,
    /// The origins allowed to show the Social Accounts page in a frame, its
    /// Content-Security-Policy's `frame-ancestors` (key `page_frame_ancestors`:
    /// comma-separated origins). Empty, the default: no page may frame it.
    pub page_frame_ancestors: Vec<String>,
    /// The largest request body the HTTP service accepts.
    pub max_body_bytes: usize,
    /// How many days ahead a grant nothing can renew is reported as expiring soon.
    pub expiring_soon_days: u32,
    /// How late a post may still be published unreviewed; later ones are held. `None`:
    /// never held for lateness.
    pub lateness_window_secs: Option<u64>,
    /// How many platform calls each platform queue runs at once.
    pub publish_concurrency: usize,
    /// Whether media may be fetched from (and a Bluesky account's PDS reached at)
    /// addresses outside the public internet: loopback, private networks, link-local
    /// (a cloud's metadata service), and names that resolve only to those. Off by
    /// default, so that a post's media URL cannot make the engine reach inside its own
    /// network; `--sandbox` and the demo turn it on, their media being on 127.0.0.1.
    pub allow_private_media_urls: bool,
    /// How many bytes of fetched media (videos and images the engine uploads itself) it
    /// holds in memory at once, across every platform: a fetch waits for room, and a file
    /// larger than this is refused (key `media_memory_bytes`).
    pub media_memory_bytes: usize,
    /// The `[platforms.<id>]` sections present (from the file or the environment).
    /// Instagram has its own even where it shares Facebook's app: nothing is inherited.
    pub platforms: BTreeMap<Platform, PlatformConfig>,
    /// How long events, idempotency keys and finished posts are kept (`[retention]`).
    pub retention: Retention,
    /// Which backend holds the engine's data (`[store]`).
    pub store: StoreSettings,
}

/// The `[store]` section: which backend holds the engine's data, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// `store.backend`: the embedded sled store in `data_dir` (the default), or a
    /// PostgreSQL database (only in a build with the `postgres` feature).
    pub backend: Backend,
    /// `store.url` (`SOCIAL_STUDIO_STORE_URL`): the PostgreSQL database,
    /// `postgres://user:password@host:port/database` or the key-value form, `sslmode` in
    /// it. A secret (it may hold the password): never shown in an error, `Debug` or the
    /// log. Required with `backend = "postgres"`, refused with sled.
    pub url: Option<Secret>,
    /// `store.node_id`: this process's name among the nodes sharing a database; `None`:
    /// the host name and the process id ([`StoreSettings::node_id`]).
    pub node_id: Option<String>,
    /// `store.lease_secs`: how long a node's lease on its connections lasts before
    /// another node may take them over (renewed every third of it). Checked: 5 to 300.
    pub lease_secs: u32,
}

/// Where the engine's data lives (`store.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The embedded sled store, in `data_dir`.
    #[default]
    Sled,
    /// A PostgreSQL database (`store.url`).
    Postgres,
}

impl Backend {
    /// The name `store.backend` spells it with.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sled => "sled",
            Backend::Postgres => "postgres",
        }
    }
}

impl Default for StoreSettings {
    fn default() -> StoreSettings {
        StoreSettings {
            backend: Backend::Sled,
            url: None,
            node_id: None,
            lease_secs: DEFAULT_LEASE_SECS,
        }
    }
}

impl StoreSettings {
    /// This node's name as the engine takes it: [`StoreSettings::node_id`], checked at
    /// load; a default too long for a node id (a very long host name) is cut.
    pub fn node(&self) -> social_studio_storage::NodeId {
        let mut id = self.node_id();
        while social_studio_storage::NodeId::parse(&id).is_err() && !id.is_empty() {
            id.pop();
        }
        social_studio_storage::NodeId::parse(&id)
            .unwrap_or_else(|_| social_studio_storage::NodeId::parse("node").expect("a node id"))
    }

    /// This node's name: `store.node_id`, or `{host name}-{process id}`.
    pub fn node_id(&self) -> String {
        match &self.node_id {
            Some(id) => id.clone(),
            None => {
                let host = whoami::hostname().unwrap_or_else(|_| "localhost".to_owned());
                format!("{host}-{}", std::process::id())
            }
        }
    }
}

/// The `[retention]` section: how long the engine keeps what it no longer needs. The
/// studio's upkeep purges what is older, hourly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days an event is kept (`retention.events_days`); 0 keeps every event. A client
    /// resuming the event stream from before what was purged is told so.
    pub events_days: u32,
    /// Hours an `Idempotency-Key` is remembered (`retention.idempotency_hours`, at least
    /// 1, at most `finished_posts_days` × 24 when those are purged): a request retried
    /// later with the same key is a new request and makes new posts.
    pub idempotency_hours: u32,
    /// Days a finished post — Published or Cancelled — is kept after it finished
    /// (`retention.finished_posts_days`); 0 keeps them. Failed, Held and Unconfirmed posts
    /// wait for a person and are never purged by age.
    pub finished_posts_days: u32,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            events_days: DEFAULT_EVENTS_DAYS,
            idempotency_hours: DEFAULT_IDEMPOTENCY_HOURS,
            finished_posts_days: DEFAULT_FINISHED_POSTS_DAYS,
        }
    }
}

impl Retention {
    const DAY: Duration = Duration::from_secs(86_400);

    /// How long events are kept; `None`: forever.
    pub fn events(&self) -> Option<Duration> {
        (self.events_days > 0).then(|| Retention::DAY * self.events_days)
    }

    /// How long an `Idempotency-Key` is remembered.
    pub fn idempotency(&self) -> Duration {
        Duration::from_secs(3_600) * self.idempotency_hours
    }

    /// How long a finished post is kept after it finished; `None`: forever.
    pub fn finished_posts(&self) -> Option<Duration> {
        (self.finished_posts_days > 0).then(|| Retention::DAY * self.finished_posts_days)
    }
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
    /// The host set it on a [`Config`] it built in code (what [`Config::validate`] reports).
    Code,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "in {}", path.display()),
            Origin::Env(name) => write!(f, "from {name}"),
            Origin::Default => f.write_str("by default"),
            Origin::Code => f.write_str("as set in code"),
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

/// The name of the table of platform sections.
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

/// Keys of the Bluesky section.
const BLUESKY_KEYS: [&str; 2] = ["service", "plc_directory"];

/// The keys a platform's section accepts.
fn platform_keys(p: Platform) -> &'static [&'static str] {
    match p {
        Platform::Bluesky => &BLUESKY_KEYS,
        _ => &OAUTH_KEYS,
    }
}

/// Keys whose values are never shown (the last part of the dotted key).
const SECRET_KEYS: [&str; 4] = [
    "admin_token",
    "previous_admin_tokens",
    "client_secret",
    // `store.url`: it may hold the database's password.
    "url",
];

fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key.rsplit('.').next().unwrap_or(key))
}

/// The name of the retention section.
const RETENTION_KEY: &str = "retention";

/// The name of the store section.
const STORE_KEY: &str = "store";

/// Whole-number keys and the values they accept, inclusive.
const RANGES: &[(&str, u64, u64)] = &[
    ("oauth_state_ttl_secs", 1, 86_400),
    ("page_link_ttl_secs", 1, 604_800),
    ("max_body_bytes", 1, u64::MAX),
    ("expiring_soon_days", 1, 365),
    ("lateness_window_secs", 1, u64::MAX),
    ("publish_concurrency", 1, 1024),
    ("media_memory_bytes", MIN_MEDIA_MEMORY_BYTES, u64::MAX),
    ("retention.events_days", 0, 36_500),
    ("retention.idempotency_hours", 1, 87_600),
    ("retention.finished_posts_days", 0, 36_500),
    ("store.lease_secs", 5, 300),
];

/// The smallest media budget: below it even an image for X or Bluesky may not fit.
const MIN_MEDIA_MEMORY_BYTES: u64 = 16 * 1024 * 1024;

/// Keys that are true or false: in the file a TOML boolean, in the environment the word
/// `true` or `false`.
const BOOLEANS: [&str; 1] = ["allow_private_media_urls"];

/// What a key expects, for a refusal of its value.
fn expected(key: &str) -> String {
    if let Some((_, min, max)) = RANGES.iter().find(|(k, _, _)| *k == key) {
        return if *max == u64::MAX {
            format!("a whole number of at least {min}")
        } else {
            format!("a whole number from {min} to {max}")
        };
    }
    if BOOLEANS.contains(&key) {
        return "true or false".to_owned();
    }
    match key.split('.').collect::<Vec<_>>().as_slice() {
        ["listen"] => "an IP address and port such as 127.0.0.1:8080".to_owned(),
        [PLATFORMS_KEY] => "a table of [platforms.<id>] sections".to_owned(),
        [PLATFORMS_KEY, _] | [RETENTION_KEY] | [STORE_KEY] => "a table of keys".to_owned(),
        [STORE_KEY, "backend"] => "\"sled\" or \"postgres\"".to_owned(),
        _ => "a string".to_owned(),
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
            extra_app_origins: Vec::new(),
            admin_token: None,
            previous_admin_tokens: Vec::new(),
            master_key_file: None,
            oauth_state_ttl: DEFAULT_OAUTH_STATE_TTL,
            page_link_ttl: DEFAULT_PAGE_LINK_TTL,
            page_frame_ancestors: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            expiring_soon_days: DEFAULT_EXPIRING_SOON_DAYS,
            lateness_window_secs: None,
            publish_concurrency: DEFAULT_PUBLISH_CONCURRENCY,
            allow_private_media_urls: false,
            media_memory_bytes:
                crate::platforms::outbound::media_budget::DEFAULT_MEDIA_MEMORY_BYTES,
            platforms: BTreeMap::new(),
            retention: Retention::default(),
            store: StoreSettings::default(),
        }
    }
}

impl Config {
    /// Reads the TOML file (if given), then applies the `SOCIAL_STUDIO_*` overrides from
    /// `env` (pass `std::env::vars()` in production; tests pass a `Vec`). The environment
    /// wins over the file, key by key. Relative paths are relative to the working
    /// directory. What is loaded is then [`validate`](Config::validate)d, each refusal
    /// naming the file or variable the value came from.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        load::load(file, env)
    }

    /// Checks a configuration built or changed in code, as [`load`](Config::load) checks
    /// what it reads: every value in range, URLs absolute and https (plain http only to
    /// loopback) without credentials or fragment, `app_origin` an origin, an admin token
    /// of at least [`MIN_ADMIN_TOKEN_LEN`] characters, client ids and secrets in pairs,
    /// each platform's section holding only its own keys, and a `[store]` that can work
    /// (PostgreSQL: built in, a URL with an `sslmode` the store speaks and readable
    /// `sslrootcert` roots, an admin token, no key file). Refusals name the key,
    /// with [`Origin::Code`] as where it came from.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&|_| Origin::Code)
    }

    /// [`validate`](Config::validate), with `origin` saying where each key came from.
    fn check(&self, origin: &dyn Fn(&str) -> Origin) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::BadValue {
                key: "data_dir".to_owned(),
                origin: origin("data_dir"),
                value: Some("\"\"".to_owned()),
                expected: "a non-empty path".to_owned(),
            });
        }
        let public_url_origin = origin("public_url");
        if let Err(refusal) = web_url("public_url", &self.public_url, &public_url_origin, false) {
            return Err(match public_url_origin {
                Origin::Default => ConfigError::Inconsistent {
                    key: "public_url".to_owned(),
                    origin: Origin::Default,
                    problem: format!(
                        "listen is {}, not a loopback address, so public_url must be set to \
                         the https:// address browsers reach the service at",
                        self.listen
                    ),
                },
                _ => refusal,
            });
        }
        web_origin("app_origin", &self.app_origin, &origin("app_origin"))?;
        for extra in &self.extra_app_origins {
            web_origin("app_origin", extra, &origin("app_origin"))?;
        }
        let tokens = self.admin_token.iter().map(|t| ("admin_token", t)).chain(
            self.previous_admin_tokens
                .iter()
                .map(|t| ("previous_admin_tokens", t)),
        );
        for (key, token) in tokens {
            if token.expose().chars().count() < MIN_ADMIN_TOKEN_LEN {
                return Err(ConfigError::BadValue {
                    key: key.to_owned(),
                    origin: origin(key),
                    value: None,
                    expected: format!("at least {MIN_ADMIN_TOKEN_LEN} characters"),
                });
            }
        }
        let numbers = [
            ("oauth_state_ttl_secs", Some(self.oauth_state_ttl.as_secs())),
            ("page_link_ttl_secs", Some(self.page_link_ttl.as_secs())),
            ("max_body_bytes", u64::try_from(self.max_body_bytes).ok()),
            (
                "expiring_soon_days",
                Some(u64::from(self.expiring_soon_days)),
            ),
            ("lateness_window_secs", self.lateness_window_secs),
            (
                "publish_concurrency",
                u64::try_from(self.publish_concurrency).ok(),
            ),
            (
                "media_memory_bytes",
                u64::try_from(self.media_memory_bytes).ok(),
            ),
            (
                "retention.events_days",
                Some(u64::from(self.retention.events_days)),
            ),
            (
                "retention.idempotency_hours",
                Some(u64::from(self.retention.idempotency_hours)),
            ),
            (
                "retention.finished_posts_days",
                Some(u64::from(self.retention.finished_posts_days)),
            ),
            ("store.lease_secs", Some(u64::from(self.store.lease_secs))),
        ];
        for (key, value) in numbers {
            let Some(value) = value else { continue };
            let in_range = RANGES
                .iter()
                .find(|(k, _, _)| *k == key)
                .is_none_or(|(_, min, max)| (*min..=*max).contains(&value));
            if !in_range {
                return Err(ConfigError::BadValue {
                    key: key.to_owned(),
                    origin: origin(key),
                    value: Some(value.to_string()),
                    expected: expected(key),
                });
            }
        }
        let posts_hours = u64::from(self.retention.finished_posts_days) * 24;
        if posts_hours > 0 && u64::from(self.retention.idempotency_hours) > posts_hours {
            // A retry would be answered with the posts it made missing from the answer.
            let key = "retention.idempotency_hours";
            return Err(ConfigError::Inconsistent {
                key: key.to_owned(),
                origin: origin(key),
                problem: format!(
                    "{} hours outlives the posts a keyed request made (retention.finished_posts_days is {}, {posts_hours} hours): keep it at most {posts_hours}",
                    self.retention.idempotency_hours, self.retention.finished_posts_days
                ),
            });
        }
        for (p, section) in &self.platforms {
            check_platform(*p, section, origin)?;
        }
        self.check_store(origin)
    }

    /// The `[store]` section, and what a PostgreSQL store asks of the rest: every node
    /// must share the admin token, so none is generated into a file.
    fn check_store(&self, origin: &dyn Fn(&str) -> Origin) -> Result<(), ConfigError> {
        let refuse = |key: &str, problem: String| ConfigError::Inconsistent {
            key: key.to_owned(),
            origin: origin(key),
            problem,
        };
        if let Some(id) = &self.store.node_id {
            if id.trim().is_empty() {
                return Err(ConfigError::BadValue {
                    key: "store.node_id".to_owned(),
                    origin: origin("store.node_id"),
                    value: Some("\"\"".to_owned()),
                    expected: "a non-empty string".to_owned(),
                });
            }
        }
        match self.store.backend {
            Backend::Sled => {
                if self.store.url.is_some() {
                    return Err(refuse(
                        "store.url",
                        "it is set but store.backend is \"sled\": set store.backend = \"postgres\" to use the database, or remove store.url".to_owned(),
                    ));
                }
                Ok(())
            }
            Backend::Postgres => {
                if !cfg!(feature = "postgres") {
                    return Err(refuse(
                        "store.backend",
                        "this build has no PostgreSQL backend: build social-studio with `--features postgres`".to_owned(),
                    ));
                }
                let Some(url) = &self.store.url else {
                    return Err(refuse(
                        "store.url",
                        "store.backend is \"postgres\": set store.url (or SOCIAL_STUDIO_STORE_URL) to the database's postgres:// URL".to_owned(),
                    ));
                };
                #[cfg(feature = "postgres")]
                if let Err(e) = social_studio_storage::check_pg_url(url.expose()) {
                    return Err(refuse("store.url", e.to_string()));
                }
                #[cfg(not(feature = "postgres"))]
                let _ = url;
                if self.admin_token.is_none() {
                    return Err(refuse(
                        "admin_token",
                        "store.backend is \"postgres\": set admin_token (or SOCIAL_STUDIO_ADMIN_TOKEN). Every node must accept the same token, so none is generated into the data directory".to_owned(),
                    ));
                }
                if self.master_key_file.is_some() {
                    return Err(refuse(
                        "master_key_file",
                        "store.backend is \"postgres\": the master key comes from SOCIAL_STUDIO_MASTER_KEY (or the host), the same on every node; a key file is not read".to_owned(),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The one redirect URI registered with every platform.
    pub fn redirect_uri(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.public_url)
    }

    /// Every origin the OAuth callback page posts its message to: `app_origin`, the
    /// further ones of its list, and the Social Accounts page's own (the origin of
    /// `public_url`), each once, in that order.
    pub fn message_origins(&self) -> Vec<String> {
        let mut origins = vec![self.app_origin.clone()];
        let own = Url::parse(&self.public_url)
            .ok()
            .map(|u| u.origin().ascii_serialization());
        for origin in self.extra_app_origins.iter().cloned().chain(own) {
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        origins
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
            Reach::AtProto { service, .. } => {
                let service = section.service.unwrap_or_else(|| service.to_owned());
                Some(PlatformSettings {
                    client_id: String::new(),
                    client_secret: Secret::new(""),
                    auth_url: format!("{service}{}", bluesky::CREATE_SESSION),
                    token_url: format!("{service}{}", bluesky::REFRESH_SESSION),
                    revoke_url: Some(format!("{service}{}", bluesky::DELETE_SESSION)),
                    api_base: service,
                    allow_private_media_urls: self.allow_private_media_urls,
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
                allow_private_media_urls: self.allow_private_media_urls,
            }),
        }
    }

    /// The PLC directory the Bluesky adapter resolves `did:plc` identities at.
    pub fn bluesky_plc_directory(&self) -> String {
        self.platforms
            .get(&Platform::Bluesky)
            .and_then(|section| section.plc_directory.clone())
            .unwrap_or_else(|| bluesky::DEFAULT_PLC_DIRECTORY.to_owned())
    }
}

/// Checks one platform's section: only its own keys, credentials in pairs and not empty,
/// endpoints that can carry codes and tokens.
fn check_platform(
    p: Platform,
    section: &PlatformConfig,
    origin: &dyn Fn(&str) -> Origin,
) -> Result<(), ConfigError> {
    let key = |name: &str| format!("{PLATFORMS_KEY}.{}.{name}", p.id());
    let values = [
        ("client_id", section.client_id.as_deref()),
        (
            "client_secret",
            section.client_secret.as_ref().map(Secret::expose),
        ),
        ("auth_url", section.auth_url.as_deref()),
        ("token_url", section.token_url.as_deref()),
        ("revoke_url", section.revoke_url.as_deref()),
        ("api_base", section.api_base.as_deref()),
        ("service", section.service.as_deref()),
        ("plc_directory", section.plc_directory.as_deref()),
    ];
    for (name, value) in values {
        let Some(value) = value else { continue };
        let key = key(name);
        if !platform_keys(p).contains(&name) {
            return Err(ConfigError::UnknownKey {
                suggestion: None,
                origin: origin(&key),
                key,
                expected: platform_keys(p).to_vec(),
            });
        }
        if value.trim().is_empty() {
            return Err(ConfigError::BadValue {
                value: (!is_secret(&key)).then(|| format!("{value:?}")),
                origin: origin(&key),
                key,
                expected: "a non-empty string".to_owned(),
            });
        }
    }
    let unpaired = |missing: &str, present: &str| ConfigError::Inconsistent {
        key: key(missing),
        origin: origin(&key(present)),
        problem: format!(
            "is not set, but {present} is; set both client_id and client_secret, or neither"
        ),
    };
    match (&section.client_id, &section.client_secret) {
        (Some(_), None) => return Err(unpaired("client_secret", "client_id")),
        (None, Some(_)) => return Err(unpaired("client_id", "client_secret")),
        _ => {}
    }
    for (name, value) in values.into_iter().skip(2) {
        if let Some(value) = value {
            let key = key(name);
            web_url(&key, value, &origin(&key), true)?;
        }
    }
    Ok(())
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

/// Parses an origin (`scheme://host[:port]`) the way [`web_url`] parses a URL, and gives
/// its canonical form; a path is refused rather than dropped.
fn web_origin(key: &str, value: &str, origin: &Origin) -> Result<String, ConfigError> {
    let url = web_url(key, value, origin, false)?;
    if url.path() != "/" {
        return Err(ConfigError::Inconsistent {
            key: key.to_owned(),
            origin: origin.clone(),
            problem: format!("{value:?} has a path; an origin is scheme://host[:port] only"),
        });
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::platforms::graph::GRAPH_API_VERSION;

    /// An environment made of `vars`, for `Config::load`.
    pub(super) fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
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

    /// `allow_private_media_urls`: off by default; a TOML boolean in the file, the word
    /// `true` or `false` in the environment; carried into every adapter's settings.
    #[test]
    fn private_media_urls_are_allowed_only_when_said() {
        let key = "SOCIAL_STUDIO_ALLOW_PRIVATE_MEDIA_URLS";
        assert!(!Config::default().allow_private_media_urls);
        assert!(!load("", &[]).unwrap().allow_private_media_urls);
        assert!(
            load("allow_private_media_urls = true", &[])
                .unwrap()
                .allow_private_media_urls
        );
        assert!(
            Config::load(None, env(&[(key, " true ")]))
                .unwrap()
                .allow_private_media_urls
        );
        assert!(
            !load("allow_private_media_urls = true", &[(key, "false")])
                .unwrap()
                .allow_private_media_urls,
            "the environment wins"
        );
        let cases: [(&str, &[(&str, &str)]); 3] = [
            ("allow_private_media_urls = \"true\"", &[]),
            ("allow_private_media_urls = 1", &[]),
            ("", &[(key, "yes")]),
        ];
        for (text, vars) in cases {
            let error = refused(text, vars);
            assert_eq!(error.code(), "bad_value", "{text} {vars:?}: {error}");
            assert_eq!(error.key(), Some("allow_private_media_urls"));
            assert!(error.to_string().contains("true or false"), "{error}");
        }

        let config = Config {
            allow_private_media_urls: true,
            ..Config::default()
        };
        assert!(
            config
                .platform_settings(Platform::Bluesky)
                .unwrap()
                .allow_private_media_urls
        );
        assert!(
            !Config::default()
                .platform_settings(Platform::Bluesky)
                .unwrap()
                .allow_private_media_urls
        );
    }

    /// `media_memory_bytes`: 1 GiB by default, at least 16 MiB, from the file or the
    /// environment.
    #[test]
    fn the_media_memory_budget_is_a_number_of_bytes_with_a_floor() {
        assert_eq!(load("", &[]).unwrap().media_memory_bytes, 1 << 30);
        assert_eq!(
            load("media_memory_bytes = 268435456", &[])
                .unwrap()
                .media_memory_bytes,
            256 << 20
        );
        assert_eq!(
            Config::load(
                None,
                env(&[("SOCIAL_STUDIO_MEDIA_MEMORY_BYTES", "33554432")])
            )
            .unwrap()
            .media_memory_bytes,
            32 << 20
        );
        for text in [
            "media_memory_bytes = 1024",
            "media_memory_bytes = \"1 GiB\"",
        ] {
            let error = refused(text, &[]);
            assert_eq!(error.code(), "bad_value", "{text}: {error}");
            assert_eq!(error.key(), Some("media_memory_bytes"), "{text}");
        }
        let small = Config {
            media_memory_bytes: 1024,
            ..Config::default()
        };
        assert_eq!(
            small.validate().unwrap_err().key(),
            Some("media_memory_bytes")
        );
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

    #[test]
    fn previous_admin_tokens_are_a_list_of_secrets_each_long_enough() {
        let config = load(
            "admin_token = \"the-new-admin-token-01\"\nprevious_admin_tokens = \"old-admin-token-0001, older-admin-token-02\"",
            &[("SOCIAL_STUDIO_PREVIOUS_MASTER_KEYS", "read-by-the-storage-vault")],
        )
        .unwrap();
        assert_eq!(
            config
                .previous_admin_tokens
                .iter()
                .map(Secret::expose)
                .collect::<Vec<_>>(),
            ["old-admin-token-0001", "older-admin-token-02"]
        );
        let from_env = load(
            "",
            &[(
                "SOCIAL_STUDIO_PREVIOUS_ADMIN_TOKENS",
                "old-admin-token-0001",
            )],
        )
        .unwrap();
        assert_eq!(from_env.previous_admin_tokens.len(), 1);
        let error = refused(
            "previous_admin_tokens = \"old-admin-token-0001,short\"",
            &[],
        );
        let text = error.to_string();
        assert!(text.contains("previous_admin_tokens"), "{text}");
        assert!(!text.contains("old-admin-token-0001"), "{text}");
        assert!(!format!("{config:?}").contains("old-admin-token-0001"));
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

    /// A whole number is a number in the file; only a variable, which is always text,
    /// is read for the number it spells.
    #[test]
    fn a_quoted_number_in_the_file_is_refused_and_a_variable_is_read() {
        let err = load("max_body_bytes = \"2048\"", &[]).unwrap_err();
        assert_eq!(err.code(), "bad_value", "{err}");
        assert_eq!(err.key(), Some("max_body_bytes"));
        assert!(matches!(err.origin(), Some(Origin::File(_))), "{err}");

        let config = load("", &[("SOCIAL_STUDIO_MAX_BODY_BYTES", " 2048 ")]).unwrap();
        assert_eq!(config.max_body_bytes, 2048);
        let err = load("", &[("SOCIAL_STUDIO_MAX_BODY_BYTES", "lots")]).unwrap_err();
        assert_eq!(err.code(), "bad_value", "{err}");
        assert_eq!(
            err.origin(),
            Some(&Origin::Env("SOCIAL_STUDIO_MAX_BODY_BYTES".into()))
        );
        // A text key keeps a number-like value as text.
        let config = load(
            "",
            &[
                ("SOCIAL_STUDIO_X_CLIENT_ID", "12345"),
                ("SOCIAL_STUDIO_X_CLIENT_SECRET", "s"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.platforms[&Platform::X].client_id.as_deref(),
            Some("12345")
        );
    }

    /// A configuration built in code, refused by `validate` with the key at fault and
    /// `Origin::Code`.
    #[test]
    fn validate_judges_a_config_built_in_code() {
        assert!(Config::default().validate().is_ok());

        let mut good = Config {
            listen: "0.0.0.0:8080".parse().unwrap(),
            public_url: "https://studio.example.com".to_owned(),
            app_origin: "https://app.example.com".to_owned(),
            admin_token: Some(Secret::new("0123456789abcdef")),
            lateness_window_secs: Some(60),
            ..Config::default()
        };
        good.platforms.insert(
            Platform::X,
            PlatformConfig {
                client_id: Some("id".to_owned()),
                client_secret: Some(Secret::new("secret")),
                token_url: Some("https://x.example.com/token?v=2".to_owned()),
                ..PlatformConfig::default()
            },
        );
        good.platforms.insert(
            Platform::Bluesky,
            PlatformConfig {
                service: Some("http://127.0.0.1:2583".to_owned()),
                ..PlatformConfig::default()
            },
        );
        good.validate().unwrap();

        type Change = fn(&mut Config);
        let cases: &[(Change, &str, &str)] = &[
            (
                |c| c.public_url = format!("http://{}", c.listen),
                "public_url",
                "inconsistent",
            ),
            (
                |c| c.public_url = "http://studio.example.com".to_owned(),
                "public_url",
                "inconsistent",
            ),
            (
                |c| c.public_url = "studio.example.com".to_owned(),
                "public_url",
                "inconsistent",
            ),
            (
                |c| c.app_origin = "https://app.example.com/studio".to_owned(),
                "app_origin",
                "inconsistent",
            ),
            (
                |c| c.admin_token = Some(Secret::new("short-s3cr3t")),
                "admin_token",
                "bad_value",
            ),
            (|c| c.data_dir = PathBuf::new(), "data_dir", "bad_value"),
            (
                |c| c.oauth_state_ttl = Duration::ZERO,
                "oauth_state_ttl_secs",
                "bad_value",
            ),
            (|c| c.max_body_bytes = 0, "max_body_bytes", "bad_value"),
            (
                |c| c.expiring_soon_days = 400,
                "expiring_soon_days",
                "bad_value",
            ),
            (
                |c| c.lateness_window_secs = Some(0),
                "lateness_window_secs",
                "bad_value",
            ),
            (
                |c| c.publish_concurrency = 2000,
                "publish_concurrency",
                "bad_value",
            ),
            (
                |c| {
                    c.platforms.get_mut(&Platform::X).unwrap().client_secret = None;
                },
                "platforms.x.client_secret",
                "inconsistent",
            ),
            (
                |c| {
                    c.platforms.get_mut(&Platform::X).unwrap().client_secret =
                        Some(Secret::new(" "));
                },
                "platforms.x.client_secret",
                "bad_value",
            ),
            (
                |c| {
                    c.platforms.get_mut(&Platform::X).unwrap().api_base =
                        Some("http://x.example.com".to_owned());
                },
                "platforms.x.api_base",
                "inconsistent",
            ),
            (
                |c| {
                    c.platforms.get_mut(&Platform::X).unwrap().service =
                        Some("https://pds.example.com".to_owned());
                },
                "platforms.x.service",
                "unknown_key",
            ),
            (
                |c| {
                    c.platforms.get_mut(&Platform::Bluesky).unwrap().client_id =
                        Some("id".to_owned());
                },
                "platforms.bluesky.client_id",
                "unknown_key",
            ),
            (
                |c| {
                    c.platforms
                        .get_mut(&Platform::Bluesky)
                        .unwrap()
                        .plc_directory = Some("https://plc.example.com/#top".to_owned());
                },
                "platforms.bluesky.plc_directory",
                "inconsistent",
            ),
        ];
        for (change, key, code) in cases {
            let mut config = good.clone();
            change(&mut config);
            let Err(error) = config.validate() else {
                panic!("{key}: accepted");
            };
            let message = error.to_string();
            assert_eq!(error.key(), Some(*key), "{message}");
            assert_eq!(error.code(), *code, "{message}");
            assert_eq!(error.origin(), Some(&Origin::Code), "{message}");
            assert!(message.contains(key), "{message}");
            assert!(message.contains("as set in code"), "{message}");
            assert!(
                !format!("{message} {error:?}").contains("s3cr3t"),
                "{message}"
            );
        }
    }

    /// `load` refuses what `validate` refuses, but names the file or variable instead.
    #[test]
    fn load_and_validate_agree() {
        let error = refused("", &[("SOCIAL_STUDIO_PUBLISH_CONCURRENCY", "2000")]);
        assert_eq!(error.key(), Some("publish_concurrency"));
        assert_eq!(
            error.origin(),
            Some(&Origin::Env("SOCIAL_STUDIO_PUBLISH_CONCURRENCY".to_owned()))
        );
        assert!(error.to_string().contains("got 2000"), "{error}");

        let error = refused("", &[("SOCIAL_STUDIO_PUBLISH_CONCURRENCY", "lots")]);
        assert_eq!(
            error.origin(),
            Some(&Origin::Env("SOCIAL_STUDIO_PUBLISH_CONCURRENCY".to_owned()))
        );
        assert!(error.to_string().contains("got \"lots\""), "{error}");

        let error = refused("expiring_soon_days = 5000000000", &[]);
        assert_eq!(error.key(), Some("expiring_soon_days"));
        assert!(error.to_string().contains("got 5000000000"), "{error}");

        let error = refused("max_body_bytes = -1", &[]);
        assert!(matches!(error.origin(), Some(Origin::File(_))), "{error}");
        assert!(error.to_string().contains("got -1"), "{error}");

        let error = refused("listen = \"0.0.0.0:8080\"", &[]);
        assert_eq!(error.origin(), Some(&Origin::Default));
        assert!(
            error.to_string().contains("listen is 0.0.0.0:8080"),
            "{error}"
        );

        let config = load("", &[("SOCIAL_STUDIO_PUBLISH_CONCURRENCY", " 3 ")]).unwrap();
        assert_eq!(
            config.publish_concurrency, 3,
            "whole numbers read from text"
        );
        let config = load(
            "",
            &[
                ("SOCIAL_STUDIO_X_CLIENT_ID", "1234567890"),
                ("SOCIAL_STUDIO_X_CLIENT_SECRET", " s "),
            ],
        )
        .unwrap();
        let x = &config.platforms[&Platform::X];
        assert_eq!(
            x.client_id.as_deref(),
            Some("1234567890"),
            "a numeric id stays text"
        );
        assert_eq!(
            x.client_secret.as_ref().map(Secret::expose),
            Some(" s "),
            "secrets kept exactly"
        );
    }
    #[test]
    fn app_origin_is_one_origin_or_a_list() {
        // One string, as before.
        let config = load("app_origin = \"https://app.example.com\"", &[]).unwrap();
        assert_eq!(config.app_origin, "https://app.example.com");
        assert!(config.extra_app_origins.is_empty());
        assert_eq!(
            config.message_origins(),
            ["https://app.example.com", "http://127.0.0.1:8080"],
            "the page's own origin (public_url's) is always one of them"
        );
        // A list in the file, a comma-separated one in the environment.
        let config = load(
            "app_origin = [\"https://app.example.com/\", \"https://Admin.example.com\"]\npublic_url = \"https://studio.example.com/social\"",
            &[],
        )
        .unwrap();
        assert_eq!(config.app_origin, "https://app.example.com");
        assert_eq!(config.extra_app_origins, ["https://admin.example.com"]);
        assert_eq!(
            config.message_origins(),
            [
                "https://app.example.com",
                "https://admin.example.com",
                "https://studio.example.com"
            ]
        );
        let config = load(
            "",
            &[(
                "SOCIAL_STUDIO_APP_ORIGIN",
                "http://127.0.0.1:8080, https://app.example.com",
            )],
        )
        .unwrap();
        assert_eq!(config.app_origin, "http://127.0.0.1:8080");
        assert_eq!(config.extra_app_origins, ["https://app.example.com"]);
        assert_eq!(
            config.message_origins(),
            ["http://127.0.0.1:8080", "https://app.example.com"]
        );
        for text in [
            "app_origin = []",
            "app_origin = [\"https://app.example.com\", \"https://app.example.com/path\"]",
            "app_origin = [\"https://app.example.com\", \"\"]",
        ] {
            assert_eq!(refused(text, &[]).key(), Some("app_origin"), "{text}");
        }
    }

    #[test]
    fn the_page_keys_from_the_file_and_the_environment() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.page_link_ttl, DEFAULT_PAGE_LINK_TTL);
        assert!(config.page_frame_ancestors.is_empty());

        let config = load(
            "page_link_ttl_secs = 3600\npage_frame_ancestors = \"https://App.example.com/, https://cms.example.com:8443\"",
            &[],
        )
        .unwrap();
        assert_eq!(config.page_link_ttl, Duration::from_secs(3600));
        assert_eq!(
            config.page_frame_ancestors,
            ["https://app.example.com", "https://cms.example.com:8443"]
        );
        let config = load(
            "page_link_ttl_secs = 3600",
            &[("SOCIAL_STUDIO_PAGE_LINK_TTL_SECS", "120")],
        )
        .unwrap();
        assert_eq!(config.page_link_ttl, Duration::from_secs(120));

        for (text, key) in [
            ("page_link_ttl_secs = 0", "page_link_ttl_secs"),
            ("page_link_ttl_secs = 604801", "page_link_ttl_secs"),
            (
                "page_frame_ancestors = \"https://app.example.com/frame\"",
                "page_frame_ancestors",
            ),
            ("page_frame_ancestors = \"*\"", "page_frame_ancestors"),
        ] {
            assert_eq!(refused(text, &[]).key(), Some(key), "{text}");
        }
    }
}

#[cfg(test)]
mod retention_tests {
    use super::tests::env;
    use super::*;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("social-studio.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), env(vars))
    }

    #[test]
    fn retention_has_defaults_a_section_and_variables() {
        let defaults = Config::default().retention;
        assert_eq!(
            defaults,
            Retention {
                events_days: 30,
                idempotency_hours: 24,
                finished_posts_days: 90,
            }
        );
        assert_eq!(defaults.events(), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(defaults.idempotency(), Duration::from_secs(24 * 3_600));
        assert_eq!(
            defaults.finished_posts(),
            Some(Duration::from_secs(90 * 86_400))
        );

        let config = load(
            "[retention]\nevents_days = 7\nidempotency_hours = 48\nfinished_posts_days = 0\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.retention.events_days, 7);
        assert_eq!(config.retention.idempotency_hours, 48);
        assert_eq!(config.retention.finished_posts(), None, "0 keeps them");

        let config = load(
            "[retention]\nevents_days = 7\n",
            &[
                ("SOCIAL_STUDIO_RETENTION_EVENTS_DAYS", "0"),
                ("SOCIAL_STUDIO_RETENTION_IDEMPOTENCY_HOURS", " 12 "),
            ],
        )
        .unwrap();
        assert_eq!(config.retention.events(), None, "the environment wins");
        assert_eq!(config.retention.idempotency_hours, 12);
        assert_eq!(config.retention.finished_posts_days, 90);
    }

    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
        &'static str,
    );

    #[test]
    fn retention_refusals_name_their_key() {
        // (file, variables, the key refused, the refusal's code)
        let cases: [Case; 6] = [
            (
                "[retention]\nidempotency_hours = 0",
                &[],
                "retention.idempotency_hours",
                "bad_value",
            ),
            (
                "",
                &[("SOCIAL_STUDIO_RETENTION_EVENTS_DAYS", "a month")],
                "retention.events_days",
                "bad_value",
            ),
            (
                "[retention]\nfinished_posts_days = 100000",
                &[],
                "retention.finished_posts_days",
                "bad_value",
            ),
            (
                "[retention]\nevents_day = 3",
                &[],
                "retention.events_day",
                "unknown_key",
            ),
            ("retention = 3", &[], "retention", "bad_value"),
            (
                "[retention]\nfinished_posts_days = 1\nidempotency_hours = 25",
                &[],
                "retention.idempotency_hours",
                "inconsistent",
            ),
        ];
        for (text, vars, key, code) in cases {
            let error = load(text, vars).expect_err(text);
            assert_eq!(error.key(), Some(key), "{text:?} {vars:?}: {error}");
            assert_eq!(error.code(), code, "{text:?}: {error}");
        }
        let error = load("", &[("SOCIAL_STUDIO_RETENTION_EVENT_DAYS", "3")]).unwrap_err();
        assert_eq!(error.code(), "unknown_variable");
        assert!(
            error
                .to_string()
                .contains("SOCIAL_STUDIO_RETENTION_EVENTS_DAYS"),
            "{error}"
        );

        let mut config = Config::default();
        config.retention.idempotency_hours = 0;
        let error = config.validate().unwrap_err();
        assert_eq!(error.key(), Some("retention.idempotency_hours"));
        assert_eq!(error.origin(), Some(&Origin::Code));
        config.retention.idempotency_hours = 24 * 90 + 1;
        assert_eq!(config.validate().unwrap_err().code(), "inconsistent");
        config.retention.finished_posts_days = 0;
        assert!(
            config.validate().is_ok(),
            "posts kept forever outlive any key"
        );
    }
}

#[cfg(test)]
mod store_tests {
    use super::tests::env;
    use super::*;

    fn load(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("social-studio.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), env(vars))
    }

    const TOKEN: &str = "an-admin-token-of-some-length";
    #[cfg(feature = "postgres")]
    const PASSWORD: &str = "hunter2-db-password";

    #[test]
    fn the_store_defaults_to_sled_with_a_node_id_of_host_and_process() {
        let store = Config::default().store;
        assert_eq!(store.backend, Backend::Sled);
        assert_eq!(store.url, None);
        assert_eq!(store.lease_secs, 15);
        let id = store.node_id();
        assert!(
            id.ends_with(&format!("-{}", std::process::id())),
            "{id}: the host name and the process id"
        );
        let named = load("[store]\nnode_id = \" studio-1 \"\nlease_secs = 20\n", &[]).unwrap();
        assert_eq!(named.store.node_id(), "studio-1");
        assert_eq!(named.store.lease_secs, 20);
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_is_read_from_the_file_and_the_environment() {
        let url = format!("postgres://studio:{PASSWORD}@db.internal:5433/studio?sslmode=disable");
        let config = load(
            &format!(
                "admin_token = \"{TOKEN}\"\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"
            ),
            &[],
        )
        .unwrap();
        assert_eq!(config.store.backend, Backend::Postgres);
        assert_eq!(
            config.store.url.as_ref().map(|u| u.expose()),
            Some(url.as_str())
        );
        assert!(
            !format!("{config:?}").contains(PASSWORD),
            "the URL's password in Debug"
        );

        let config = load(
            "",
            &[
                ("SOCIAL_STUDIO_STORE_BACKEND", "postgres"),
                (
                    "SOCIAL_STUDIO_STORE_URL",
                    "postgres://studio@localhost/studio",
                ),
                ("SOCIAL_STUDIO_STORE_NODE_ID", "node-b"),
                ("SOCIAL_STUDIO_STORE_LEASE_SECS", "30"),
                ("SOCIAL_STUDIO_ADMIN_TOKEN", TOKEN),
            ],
        )
        .unwrap();
        assert_eq!(config.store.backend, Backend::Postgres);
        assert_eq!(config.store.node_id(), "node-b");
        assert_eq!(config.store.lease_secs, 30);
    }

    /// (file, variables, the key refused, the refusal's code, words of the refusal)
    #[cfg(feature = "postgres")]
    type Case = (
        String,
        Vec<(&'static str, &'static str)>,
        &'static str,
        &'static str,
        &'static str,
    );

    #[cfg(feature = "postgres")]
    #[test]
    fn postgres_refusals_name_their_key_and_never_the_password() {
        let token = ("SOCIAL_STUDIO_ADMIN_TOKEN", TOKEN);
        let pg = ("SOCIAL_STUDIO_STORE_BACKEND", "postgres");
        let with_url = |url: &str| format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n");
        let cases: Vec<Case> = vec![
            (
                "[store]\nbackend = \"mysql\"".into(),
                vec![],
                "store.backend",
                "bad_value",
                "\"sled\" or \"postgres\"",
            ),
            (
                "".into(),
                vec![pg, token],
                "store.url",
                "inconsistent",
                "SOCIAL_STUDIO_STORE_URL",
            ),
            (
                "[store]\nurl = \"postgres://localhost/studio\"".into(),
                vec![token],
                "store.url",
                "inconsistent",
                "store.backend is \"sled\"",
            ),
            (
                with_url(&format!(
                    "postgres://u:{PASSWORD}@localhost/db?sslmode=allow"
                )),
                vec![token],
                "store.url",
                "inconsistent",
                "sslmode=allow",
            ),
            (
                with_url(&format!(
                    "postgres://u:{PASSWORD}@localhost/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"
                )),
                vec![token],
                "store.url",
                "inconsistent",
                "sslrootcert",
            ),
            (
                with_url(&format!("postgres://u:{PASSWORD}@localhost:notaport/db")),
                vec![token],
                "store.url",
                "inconsistent",
                "cannot be used",
            ),
            (
                with_url("postgres://localhost/db"),
                vec![],
                "admin_token",
                "inconsistent",
                "SOCIAL_STUDIO_ADMIN_TOKEN",
            ),
            (
                format!(
                    "master_key_file = \"/k\"\n{}",
                    with_url("postgres://localhost/db")
                ),
                vec![token],
                "master_key_file",
                "inconsistent",
                "SOCIAL_STUDIO_MASTER_KEY",
            ),
            (
                "[store]\nlease_secs = 2".into(),
                vec![],
                "store.lease_secs",
                "bad_value",
                "5 to 300",
            ),
            (
                "[store]\nnode_id = \" \"".into(),
                vec![],
                "store.node_id",
                "bad_value",
                "non-empty",
            ),
            (
                "[store]\nbackend = \"sled\"\nurls = 1".into(),
                vec![],
                "store.urls",
                "unknown_key",
                "store.url",
            ),
        ];
        for (text, vars, key, code, words) in cases {
            let error = load(&text, &vars).expect_err(&text);
            let shown = error.to_string();
            assert_eq!(error.key(), Some(key), "{text:?} {vars:?}: {shown}");
            assert_eq!(error.code(), code, "{text:?}: {shown}");
            assert!(shown.contains(words), "{text:?}: {shown}");
            assert!(!shown.contains(PASSWORD), "the password in {shown}");
            assert!(
                !format!("{error:?}").contains(PASSWORD),
                "the password in {error:?}"
            );
        }
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn postgres_in_a_build_without_it_says_how_to_build_it() {
        let error = load(
            &format!("admin_token = \"{TOKEN}\"\n[store]\nbackend = \"postgres\"\nurl = \"postgres://localhost/db\"\n"),
            &[],
        )
        .unwrap_err();
        assert_eq!(error.key(), Some("store.backend"));
        assert!(error.to_string().contains("--features postgres"), "{error}");
    }
}
