//! Loading: the file's shape as serde structs, the `SOCIAL_STUDIO_*` names, and the
//! figment layers that remember where each value came from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::error::Kind;
use figment::providers::Serialized;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::Deserialize;
use social_studio_storage::{Platform, Secret};
use url::Url;

use super::{
    expected, is_secret, platform_keys, web_origin, web_url, Config, ConfigError, Origin,
    PlatformConfig, Retention, StoreSettings, BOOLEANS, ENV_PREFIX, IGNORED_ENV_VARS,
    PLATFORMS_KEY, RANGES, RETENTION_KEY, STORE_KEY,
};
use crate::config::Backend;

/// [`Config::load`]: the file, the environment over it, then the checks.
pub(super) fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut figment = Figment::new();
    let file = file.map(FileLayer::read).transpose()?;
    if let Some(file) = &file {
        figment = figment.merge(file);
    }
    let mut written = BTreeMap::new();
    for var in ENV_NAMES.layers(env)? {
        figment = figment.merge(&var);
        written.insert(var.key, var.value);
    }
    let layers = Layers {
        figment,
        file,
        env: written,
    };
    let shape: FileShape = layers.figment.extract().map_err(|e| layers.refusal(e))?;
    let config = layers.config(shape)?;
    config.check(&|key| layers.origin(key))?;
    Ok(config)
}

// ---------------------------------------------------------------------------------------
// The file's shape. Every key is optional; an unknown one is refused by serde. The key
// tables (`TOP_KEYS` here, the platforms' in config.rs) spell the same names for the
// environment; a test holds them together.

/// A key that takes one string or a list of them (`app_origin`).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The file as written, before any value is checked: [`Config`]'s keys (whole numbers as
/// the file spells them), each optional.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    data_dir: Option<String>,
    listen: Option<String>,
    public_url: Option<String>,
    app_origin: Option<OneOrMany>,
    admin_token: Option<Secret>,
    previous_admin_tokens: Option<Secret>,
    master_key_file: Option<String>,
    oauth_state_ttl_secs: Option<u64>,
    page_link_ttl_secs: Option<u64>,
    page_frame_ancestors: Option<String>,
    max_body_bytes: Option<u64>,
    expiring_soon_days: Option<u64>,
    lateness_window_secs: Option<u64>,
    publish_concurrency: Option<u64>,
    allow_private_media_urls: Option<bool>,
    media_memory_bytes: Option<u64>,
    #[serde(default)]
    platforms: PlatformSections,
    #[serde(default)]
    retention: RetentionSection,
    #[serde(default)]
    store: StoreSection,
}

/// The `[store]` section, as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSection {
    backend: Option<String>,
    url: Option<Secret>,
    node_id: Option<String>,
    lease_secs: Option<u64>,
}

/// The `[retention]` section, as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSection {
    events_days: Option<u64>,
    idempotency_hours: Option<u64>,
    finished_posts_days: Option<u64>,
}

/// The `[platforms.<id>]` sections: one field per [`Platform::id`], so an unknown
/// platform is an unknown key and each platform takes only its own keys.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformSections {
    facebook: Option<OAuthSection>,
    instagram: Option<OAuthSection>,
    tiktok: Option<OAuthSection>,
    x: Option<OAuthSection>,
    linkedin: Option<OAuthSection>,
    pinterest: Option<OAuthSection>,
    youtube: Option<OAuthSection>,
    threads: Option<OAuthSection>,
    bluesky: Option<BlueskySection>,
}

/// An OAuth 2.0 platform's section.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OAuthSection {
    client_id: Option<String>,
    client_secret: Option<Secret>,
    auth_url: Option<String>,
    token_url: Option<String>,
    revoke_url: Option<String>,
    api_base: Option<String>,
}

/// Bluesky's section: it signs in with app passwords, so it has no app credentials, only
/// the hosts it talks to.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BlueskySection {
    service: Option<String>,
    plc_directory: Option<String>,
}

impl PlatformSections {
    /// The sections present, as written.
    fn present(self) -> Vec<(Platform, PlatformConfig)> {
        [
            (Platform::Facebook, self.facebook.map(PlatformConfig::from)),
            (
                Platform::Instagram,
                self.instagram.map(PlatformConfig::from),
            ),
            (Platform::Tiktok, self.tiktok.map(PlatformConfig::from)),
            (Platform::X, self.x.map(PlatformConfig::from)),
            (Platform::Linkedin, self.linkedin.map(PlatformConfig::from)),
            (
                Platform::Pinterest,
                self.pinterest.map(PlatformConfig::from),
            ),
            (Platform::Youtube, self.youtube.map(PlatformConfig::from)),
            (Platform::Threads, self.threads.map(PlatformConfig::from)),
            (Platform::Bluesky, self.bluesky.map(PlatformConfig::from)),
        ]
        .into_iter()
        .filter_map(|(p, section)| Some((p, section?)))
        .collect()
    }
}

impl From<OAuthSection> for PlatformConfig {
    fn from(s: OAuthSection) -> PlatformConfig {
        PlatformConfig {
            client_id: s.client_id,
            client_secret: s.client_secret,
            auth_url: s.auth_url,
            token_url: s.token_url,
            revoke_url: s.revoke_url,
            api_base: s.api_base,
            service: None,
            plc_directory: None,
        }
    }
}

impl From<BlueskySection> for PlatformConfig {
    fn from(s: BlueskySection) -> PlatformConfig {
        PlatformConfig {
            service: s.service,
            plc_directory: s.plc_directory,
            ..PlatformConfig::default()
        }
    }
}

/// Top-level keys of the file (and, upper-cased behind [`ENV_PREFIX`], of the environment).
const TOP_KEYS: &[&str] = &[
    "data_dir",
    "listen",
    "public_url",
    "app_origin",
    "admin_token",
    "previous_admin_tokens",
    "master_key_file",
    "oauth_state_ttl_secs",
    "page_link_ttl_secs",
    "page_frame_ancestors",
    "max_body_bytes",
    "expiring_soon_days",
    "lateness_window_secs",
    "publish_concurrency",
    "allow_private_media_urls",
    "media_memory_bytes",
];

/// `[<section>]` tables other than `platforms`, with their keys: each key is also
/// `SOCIAL_STUDIO_<SECTION>_<KEY>`. A new section adds a field to [`FileShape`] and a line
/// here.
const SECTIONS: &[(&str, &[&str])] = &[
    (
        RETENTION_KEY,
        &["events_days", "idempotency_hours", "finished_posts_days"],
    ),
    (STORE_KEY, &["backend", "url", "node_id", "lease_secs"]),
];

// ---------------------------------------------------------------------------------------
// The environment's names.

/// Which dotted key each `SOCIAL_STUDIO_*` variable sets: `SOCIAL_STUDIO_<KEY>` for a
/// top-level key, `SOCIAL_STUDIO_<SECTION>_<KEY>` for a key of a `[<section>]`, and
/// `SOCIAL_STUDIO_<PLATFORM>_<KEY>` for `[platforms.<id>] <key>` (the names they have
/// always had).
struct EnvNames {
    top: &'static [&'static str],
    sections: &'static [(&'static str, &'static [&'static str])],
}

/// The names this version reads.
const ENV_NAMES: EnvNames = EnvNames {
    top: TOP_KEYS,
    sections: SECTIONS,
};

impl EnvNames {
    /// Every variable and the dotted key it sets.
    fn variables(&self) -> Vec<(String, String)> {
        let name = |parts: &[&str]| format!("{ENV_PREFIX}{}", parts.join("_").to_uppercase());
        let mut vars: Vec<(String, String)> = self
            .top
            .iter()
            .map(|key| (name(&[key]), (*key).to_owned()))
            .collect();
        for (section, keys) in self.sections {
            for key in *keys {
                vars.push((name(&[section, key]), format!("{section}.{key}")));
            }
        }
        for p in Platform::ALL {
            for key in platform_keys(p) {
                vars.push((
                    name(&[p.id(), key]),
                    format!("{PLATFORMS_KEY}.{}.{key}", p.id()),
                ));
            }
        }
        vars
    }

    /// One layer per `SOCIAL_STUDIO_*` variable, sorted by name so that, of several bad
    /// variables, the same one is reported every time.
    fn layers(
        &self,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Vec<EnvVar>, ConfigError> {
        let known = self.variables();
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .filter(|(name, _)| !IGNORED_ENV_VARS.contains(&name.as_str()))
            .collect();
        vars.sort();
        vars.into_iter()
            .map(
                |(name, value)| match known.iter().find(|(n, _)| *n == name) {
                    Some((_, key)) => Ok(EnvVar {
                        name,
                        key: key.clone(),
                        value,
                    }),
                    None => {
                        let candidates = known
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .chain(IGNORED_ENV_VARS);
                        let suggestion = closest(&name, candidates);
                        Err(ConfigError::UnknownVariable { name, suggestion })
                    }
                },
            )
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The layers, as figment providers.

/// The config file, parsed here so that a syntax error keeps only the parser's message.
struct FileLayer {
    path: PathBuf,
    table: toml::Table,
}

impl FileLayer {
    fn read(path: &Path) -> Result<FileLayer, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        let table = text.parse().map_err(|e: toml::de::Error| {
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
        Ok(FileLayer {
            path: path.to_owned(),
            table,
        })
    }

    /// The value at a dotted key, as the file wrote it.
    fn written(&self, key: &str) -> Option<String> {
        let mut parts = key.split('.');
        let mut value = self.table.get(parts.next()?)?;
        for part in parts {
            value = value.get(part)?;
        }
        Some(value.to_string())
    }
}

impl Provider for FileLayer {
    fn metadata(&self) -> Metadata {
        Metadata::from("config file", Source::File(self.path.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(&self.table).data()
    }
}

/// One `SOCIAL_STUDIO_*` variable, a layer of its own so that the source figment keeps
/// for its value is the variable's name. Its value is text, trimmed unless it is a
/// secret; for a whole-number key, the number it spells.
struct EnvVar {
    name: String,
    key: String,
    value: String,
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::from(self.name.clone(), Source::Custom(self.name.clone()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let value = if is_secret(&self.key) {
            Value::from(self.value.clone())
        } else {
            let text = self.value.trim();
            // A variable is text; a whole-number key reads its number here, and a
            // true-or-false key its word, so that the file's numbers and booleans stay
            // strictly so (`"2048"` or `"true"` in the file is refused).
            match (text.parse::<u64>(), text.parse::<bool>()) {
                (Ok(n), _) if RANGES.iter().any(|(key, _, _)| *key == self.key) => Value::from(n),
                (_, Ok(b)) if BOOLEANS.contains(&self.key.as_str()) => Value::from(b),
                _ => Value::from(text.to_owned()),
            }
        };
        let dict = figment::util::nest(&self.key, value)
            .into_dict()
            .unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

/// The merged layers, kept to say where each value came from.
struct Layers {
    figment: Figment,
    file: Option<FileLayer>,
    env: BTreeMap<String, String>,
}

impl Layers {
    /// Which layer set `key` (dotted); [`Origin::Default`] when none did.
    fn origin(&self, key: &str) -> Origin {
        match self
            .figment
            .find_metadata(key)
            .and_then(|m| m.source.as_ref())
        {
            Some(Source::File(path)) => Origin::File(path.clone()),
            Some(Source::Custom(name)) => Origin::Env(name.clone()),
            _ => Origin::Default,
        }
    }

    /// The value at `key` as its layer wrote it; `None` for secrets.
    fn written(&self, key: &str, origin: &Origin) -> Option<String> {
        if is_secret(key) {
            return None;
        }
        match origin {
            Origin::Env(_) => self.env.get(key).map(|value| format!("{value:?}")),
            Origin::File(_) => self.file.as_ref().and_then(|file| file.written(key)),
            Origin::Default | Origin::Code => None,
        }
    }

    fn bad_value(&self, key: &str, expected: String) -> ConfigError {
        let origin = self.origin(key);
        ConfigError::BadValue {
            key: key.to_owned(),
            value: self.written(key, &origin),
            origin,
            expected,
        }
    }

    /// A refusal from deserialization, naming the key and its layer.
    fn refusal(&self, error: figment::Error) -> ConfigError {
        let key = error.path.join(".");
        match error.kind {
            Kind::UnknownField(name, expected) => ConfigError::UnknownKey {
                suggestion: closest(&name, expected.iter().copied()),
                origin: self.origin(&key),
                key,
                expected: expected.to_vec(),
            },
            _ => self.bad_value(&key, expected(&key)),
        }
    }

    /// A non-empty string, trimmed.
    fn text(&self, key: &str, value: Option<String>) -> Result<Option<String>, ConfigError> {
        match value {
            Some(value) if value.trim().is_empty() => {
                Err(self.bad_value(key, "a non-empty string".to_owned()))
            }
            value => Ok(value.map(|v| v.trim().to_owned())),
        }
    }

    /// A non-empty secret, kept exactly as given.
    fn secret(&self, key: &str, value: Option<Secret>) -> Result<Option<Secret>, ConfigError> {
        match value {
            Some(value) if value.expose().trim().is_empty() => {
                Err(self.bad_value(key, "a non-empty string".to_owned()))
            }
            value => Ok(value),
        }
    }

    /// A whole number in the type `Config` keeps it in; whether it is in range is for
    /// `check` to say.
    fn fit<T: TryFrom<u64>>(&self, key: &str, value: u64) -> Result<T, ConfigError> {
        T::try_from(value).map_err(|_| self.bad_value(key, expected(key)))
    }

    /// The [`Config`] the file and the environment describe: strings trimmed, URLs in
    /// their canonical form, defaults filled in. [`Config::check`] judges it afterwards.
    fn config(&self, shape: FileShape) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let listen = match self.text("listen", shape.listen)? {
            Some(value) => value
                .parse::<SocketAddr>()
                .map_err(|_| self.bad_value("listen", expected("listen")))?,
            None => defaults.listen,
        };
        let public_url = match self.text("public_url", shape.public_url)? {
            Some(value) => web_url("public_url", &value, &self.origin("public_url"), false)?,
            // Judged by `check`, which says why a non-loopback listen needs public_url.
            None => {
                Url::parse(&format!("http://{listen}")).map_err(|e| ConfigError::Inconsistent {
                    key: "public_url".to_owned(),
                    origin: Origin::Default,
                    problem: e.to_string(),
                })?
            }
        };
        // One origin, a list, or (as a variable) origins separated by commas.
        let listed: Vec<String> = match shape.app_origin {
            None => Vec::new(),
            Some(OneOrMany::One(text)) => text.split(',').map(str::to_owned).collect(),
            Some(OneOrMany::Many(list)) if list.is_empty() => vec![String::new()],
            Some(OneOrMany::Many(list)) => list,
        };
        let mut app_origins = Vec::with_capacity(listed.len());
        for value in listed {
            let value = self.text("app_origin", Some(value))?.unwrap_or_default();
            app_origins.push(web_origin(
                "app_origin",
                &value,
                &self.origin("app_origin"),
            )?);
        }
        let mut app_origins = app_origins.into_iter();
        let app_origin = app_origins
            .next()
            .unwrap_or_else(|| public_url.origin().ascii_serialization());
        let extra_app_origins: Vec<String> = app_origins.collect();
        let mut platforms = BTreeMap::new();
        for (p, section) in shape.platforms.present() {
            platforms.insert(p, self.platform(p, section)?);
        }
        Ok(Config {
            data_dir: self
                .text("data_dir", shape.data_dir)?
                .map_or(defaults.data_dir, PathBuf::from),
            listen,
            public_url: public_url.as_str().trim_end_matches('/').to_owned(),
            app_origin,
            extra_app_origins,
            admin_token: self.secret("admin_token", shape.admin_token)?,
            previous_admin_tokens: self
                .secret("previous_admin_tokens", shape.previous_admin_tokens)?
                .map(|list| split_tokens(list.expose()))
                .unwrap_or_default(),
            master_key_file: self
                .text("master_key_file", shape.master_key_file)?
                .map(PathBuf::from),
            oauth_state_ttl: shape
                .oauth_state_ttl_secs
                .map_or(defaults.oauth_state_ttl, Duration::from_secs),
            page_link_ttl: shape
                .page_link_ttl_secs
                .map_or(defaults.page_link_ttl, Duration::from_secs),
            page_frame_ancestors: match self
                .text("page_frame_ancestors", shape.page_frame_ancestors)?
            {
                Some(list) => list
                    .split(',')
                    .map(|o| {
                        web_origin(
                            "page_frame_ancestors",
                            o.trim(),
                            &self.origin("page_frame_ancestors"),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                None => defaults.page_frame_ancestors,
            },
            max_body_bytes: match shape.max_body_bytes {
                Some(v) => self.fit("max_body_bytes", v)?,
                None => defaults.max_body_bytes,
            },
            expiring_soon_days: match shape.expiring_soon_days {
                Some(v) => self.fit("expiring_soon_days", v)?,
                None => defaults.expiring_soon_days,
            },
            lateness_window_secs: shape.lateness_window_secs,
            publish_concurrency: match shape.publish_concurrency {
                Some(v) => self.fit("publish_concurrency", v)?,
                None => defaults.publish_concurrency,
            },
            allow_private_media_urls: shape
                .allow_private_media_urls
                .unwrap_or(defaults.allow_private_media_urls),
            media_memory_bytes: match shape.media_memory_bytes {
                Some(v) => self.fit("media_memory_bytes", v)?,
                None => defaults.media_memory_bytes,
            },
            platforms,
            retention: self.retention(shape.retention, defaults.retention)?,
            store: self.store(shape.store, defaults.store)?,
        })
    }

    /// The `[store]` section, each key absent taking its default.
    fn store(
        &self,
        s: StoreSection,
        defaults: StoreSettings,
    ) -> Result<StoreSettings, ConfigError> {
        let key = |name: &str| format!("{STORE_KEY}.{name}");
        let backend = match self.text(&key("backend"), s.backend)?.as_deref() {
            None => defaults.backend,
            Some("sled") => Backend::Sled,
            Some("postgres") => Backend::Postgres,
            Some(_) => return Err(self.bad_value(&key("backend"), expected(&key("backend")))),
        };
        Ok(StoreSettings {
            backend,
            url: self.secret(&key("url"), s.url)?,
            node_id: match self.text(&key("node_id"), s.node_id)? {
                Some(id) => match social_studio_storage::NodeId::parse(&id) {
                    Ok(_) => Some(id),
                    Err(e) => return Err(self.bad_value(&key("node_id"), e.to_string())),
                },
                None => None,
            },
            lease_secs: match s.lease_secs {
                Some(v) => self.fit(&key("lease_secs"), v)?,
                None => defaults.lease_secs,
            },
        })
    }

    /// The `[retention]` section, each key absent taking its default.
    fn retention(
        &self,
        s: RetentionSection,
        defaults: Retention,
    ) -> Result<Retention, ConfigError> {
        let days = |key: &str, value: Option<u64>, default: u32| match value {
            Some(v) => self.fit(&format!("{RETENTION_KEY}.{key}"), v),
            None => Ok(default),
        };
        Ok(Retention {
            events_days: days("events_days", s.events_days, defaults.events_days)?,
            idempotency_hours: days(
                "idempotency_hours",
                s.idempotency_hours,
                defaults.idempotency_hours,
            )?,
            finished_posts_days: days(
                "finished_posts_days",
                s.finished_posts_days,
                defaults.finished_posts_days,
            )?,
        })
    }

    /// One platform's section: values trimmed; the endpoints the adapter appends paths to
    /// lose a trailing slash, the others are kept exactly as written (TikTok's end in one).
    fn platform(&self, p: Platform, s: PlatformConfig) -> Result<PlatformConfig, ConfigError> {
        let key = |name: &str| format!("{PLATFORMS_KEY}.{}.{name}", p.id());
        let base = |value: Option<String>| value.map(|v| v.trim_end_matches('/').to_owned());
        Ok(PlatformConfig {
            client_id: self.text(&key("client_id"), s.client_id)?,
            client_secret: self.secret(&key("client_secret"), s.client_secret)?,
            auth_url: self.text(&key("auth_url"), s.auth_url)?,
            token_url: self.text(&key("token_url"), s.token_url)?,
            revoke_url: self.text(&key("revoke_url"), s.revoke_url)?,
            api_base: base(self.text(&key("api_base"), s.api_base)?),
            service: base(self.text(&key("service"), s.service)?),
            plc_directory: base(self.text(&key("plc_directory"), s.plc_directory)?),
        })
    }
}

/// The candidate nearest to `name` by edit distance, if it is near enough to be a typo.
fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_owned())
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

/// Tokens separated by commas or whitespace.
pub(crate) fn split_tokens(list: &str) -> Vec<Secret> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(Secret::new)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::env;

    /// The key tables the environment's names come from are the serde structs' fields.
    #[test]
    fn the_key_tables_match_the_file_shape() {
        let fields = |key: &str| -> Vec<&'static str> {
            let figment = Figment::new().merge((key, 1));
            match figment.extract::<FileShape>().map(|_| ()).unwrap_err().kind {
                Kind::UnknownField(_, expected) => expected.to_vec(),
                other => panic!("{key}: {other:?}"),
            }
        };
        let mut top = TOP_KEYS.to_vec();
        top.push(PLATFORMS_KEY);
        top.extend(SECTIONS.iter().map(|(section, _)| *section));
        assert_eq!(fields("unknown"), top);
        let mut ids = fields("platforms.unknown");
        ids.sort_unstable();
        let mut all = Platform::ALL.map(Platform::id).to_vec();
        all.sort_unstable();
        assert_eq!(ids, all);
        for p in Platform::ALL {
            assert_eq!(
                fields(&format!("platforms.{}.unknown", p.id())),
                platform_keys(p),
                "{p}"
            );
        }

        let names: Vec<String> = ENV_NAMES.variables().into_iter().map(|(n, _)| n).collect();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "two keys share a variable name");
        assert!(names
            .iter()
            .all(|n| !IGNORED_ENV_VARS.contains(&n.as_str())));
        assert!(names.contains(&"SOCIAL_STUDIO_DATA_DIR".to_owned()));
        assert!(names.contains(&"SOCIAL_STUDIO_BLUESKY_PLC_DIRECTORY".to_owned()));
    }

    /// A `[<section>]` other than `platforms` is read from `SOCIAL_STUDIO_<SECTION>_<KEY>`,
    /// and a value from one names its variable.
    #[test]
    fn a_new_section_is_read_from_its_variables() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Shape {
            limits: Limits,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Limits {
            max_posts: u64,
            label: String,
        }
        let names = EnvNames {
            top: &["listen"],
            sections: &[("limits", &["max_posts", "label"])],
        };
        let vars = names
            .variables()
            .into_iter()
            .filter(|(_, key)| !key.starts_with("platforms."))
            .collect::<Vec<_>>();
        assert_eq!(
            vars,
            [
                ("SOCIAL_STUDIO_LISTEN", "listen"),
                ("SOCIAL_STUDIO_LIMITS_MAX_POSTS", "limits.max_posts"),
                ("SOCIAL_STUDIO_LIMITS_LABEL", "limits.label"),
            ]
            .map(|(n, k)| (n.to_owned(), k.to_owned()))
        );

        let layers = names
            .layers(env(&[
                ("SOCIAL_STUDIO_LIMITS_MAX_POSTS", "12"),
                ("SOCIAL_STUDIO_LIMITS_LABEL", " 42 "),
                ("SOCIAL_STUDIO_CONFIG", "ignored.toml"),
            ]))
            .unwrap();
        let figment = layers
            .iter()
            .fold(Figment::new(), |figment, var| figment.merge(var));
        let shape: Shape = figment.extract_lossy().unwrap();
        assert_eq!(shape.limits.max_posts, 12);
        assert_eq!(shape.limits.label, "42");
        let source = figment
            .find_metadata("limits.max_posts")
            .unwrap()
            .source
            .clone();
        assert_eq!(
            source,
            Some(Source::Custom("SOCIAL_STUDIO_LIMITS_MAX_POSTS".to_owned()))
        );

        let Err(ConfigError::UnknownVariable { name, suggestion }) =
            names.layers(env(&[("SOCIAL_STUDIO_LIMITS_MAX_POST", "1")]))
        else {
            panic!("an unknown variable of the section was accepted");
        };
        assert_eq!(name, "SOCIAL_STUDIO_LIMITS_MAX_POST");
        assert_eq!(
            suggestion.as_deref(),
            Some("SOCIAL_STUDIO_LIMITS_MAX_POSTS")
        );
    }
}
