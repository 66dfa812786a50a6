//! Where each simulated platform answers: the route table an engine is pointed at, and
//! the API versions the sandbox speaks.
//!
//! Every platform is served under `{base}/{id}` on its real path shapes, its hosts
//! folded into that one prefix. A platform's simulation adjusts its routes here and
//! nowhere else. The table needs no running sandbox — [`Endpoints::at`] takes any base
//! URL — while [`Sandbox::endpoints`](crate::Sandbox::endpoints) fills in the base of a
//! running one.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::Secret;

/// The Meta Graph API version the simulated Facebook and Instagram answer under.
pub const GRAPH_API_VERSION: &str = "v25.0";

/// The Threads API version the simulated Threads answers under.
pub const THREADS_API_VERSION: &str = "v1.0";

/// The id of every simulated platform, as it appears in the sandbox's prefixes
/// (`/x`, `/linkedin`, …).
pub const PLATFORM_IDS: [&str; 9] = [
    "x",
    "linkedin",
    "pinterest",
    "tiktok",
    "youtube",
    "facebook",
    "instagram",
    "threads",
    "bluesky",
];

/// How an engine reaches one simulated platform: absolute URLs under a sandbox's base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Endpoints {
    /// An OAuth 2.0 platform: its endpoints and the app registered with it.
    Oauth(OauthEndpoints),
    /// Bluesky: an AT Protocol service (a PDS) and the PLC directory it resolves at.
    AtProto(AtProtoEndpoints),
}

/// An OAuth 2.0 platform's endpoints in the sandbox, and the one app registration the
/// sandbox accepts from every engine pointed at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OauthEndpoints {
    /// `sandbox-{id}-client`, the client id every platform's simulation starts with.
    pub client_id: String,
    /// `sandbox-{id}-secret`. Well known, but still kept out of `Debug` output like any
    /// client secret; serialized as it is, so another process can configure an engine.
    #[serde(serialize_with = "exposed")]
    pub client_secret: Secret,
    /// The authorization (consent) page.
    pub auth_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// An RFC 7009-style revocation endpoint, where the platform has one.
    pub revoke_url: Option<String>,
    /// The base the platform's API paths are appended to; no trailing slash.
    pub api_base: String,
}

/// Bluesky's endpoints in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AtProtoEndpoints {
    /// The PDS: `{service}/xrpc/...`.
    pub service: String,
    /// The PLC directory: `{plc_directory}/{did}`.
    pub plc_directory: String,
}

/// A platform's routes relative to its prefix, before a base is known.
enum Routes {
    Oauth {
        auth: String,
        token: String,
        revoke: Option<&'static str>,
        api: String,
    },
    AtProto {
        service: &'static str,
        plc_directory: &'static str,
    },
}

/// Where each platform's simulation answers, relative to `{base}/{id}`.
fn routes(platform_id: &str) -> Option<Routes> {
    let oauth = |auth: &str, token: &str, revoke, api: &str| Routes::Oauth {
        auth: auth.to_owned(),
        token: token.to_owned(),
        revoke,
        api: api.to_owned(),
    };
    let graph = format!("/{GRAPH_API_VERSION}");
    Some(match platform_id {
        "x" => oauth(
            "/i/oauth2/authorize",
            "/2/oauth2/token",
            Some("/2/oauth2/revoke"),
            "",
        ),
        "linkedin" => oauth(
            "/oauth/v2/authorization",
            "/oauth/v2/accessToken",
            Some("/oauth/v2/revoke"),
            "",
        ),
        "pinterest" => oauth("/oauth/", "/v5/oauth/token", None, ""),
        "tiktok" => oauth(
            "/v2/auth/authorize/",
            "/v2/oauth/token/",
            Some("/v2/oauth/revoke/"),
            "",
        ),
        "youtube" => oauth("/o/oauth2/v2/auth", "/token", Some("/revoke"), ""),
        // Instagram through Facebook Login for Business: the same Graph API as Facebook.
        "facebook" | "instagram" => oauth(
            &format!("{graph}/dialog/oauth"),
            &format!("{graph}/oauth/access_token"),
            None,
            &graph,
        ),
        // The two token endpoints Threads serves beside its versioned API are one level
        // up, as on `graph.threads.net`.
        "threads" => oauth(
            "/oauth/authorize",
            "/oauth/access_token",
            None,
            &format!("/{THREADS_API_VERSION}"),
        ),
        "bluesky" => Routes::AtProto {
            service: "",
            plc_directory: "/plc",
        },
        _ => return None,
    })
}

/// The app registration every simulated OAuth platform starts with, and the table hands
/// to engines: client `sandbox-{id}-client`, secret `sandbox-{id}-secret`. One place,
/// so that the credentials the table promises are the ones the platforms accept.
pub(crate) fn sandbox_client(platform_id: &str) -> (String, Secret) {
    (
        format!("sandbox-{platform_id}-client"),
        Secret::new(format!("sandbox-{platform_id}-secret")),
    )
}

impl Endpoints {
    /// The endpoints of `platform_id` (`x`, `bluesky`, … — see [`PLATFORM_IDS`]) in a
    /// sandbox served at `base` (`http://127.0.0.1:PORT`, a trailing slash allowed).
    /// `None` for a platform the sandbox does not simulate.
    pub fn at(base: &str, platform_id: &str) -> Option<Endpoints> {
        let base = base.trim_end_matches('/');
        let prefix = format!("{base}/{platform_id}");
        Some(match routes(platform_id)? {
            Routes::Oauth {
                auth,
                token,
                revoke,
                api,
            } => {
                let (client_id, client_secret) = sandbox_client(platform_id);
                Endpoints::Oauth(OauthEndpoints {
                    client_id,
                    client_secret,
                    auth_url: format!("{prefix}{auth}"),
                    token_url: format!("{prefix}{token}"),
                    revoke_url: revoke.map(|path| format!("{prefix}{path}")),
                    api_base: format!("{prefix}{api}"),
                })
            }
            Routes::AtProto {
                service,
                plc_directory,
            } => Endpoints::AtProto(AtProtoEndpoints {
                service: format!("{prefix}{service}"),
                plc_directory: format!("{prefix}{plc_directory}"),
            }),
        })
    }

    /// Every platform's endpoints in a sandbox served at `base`, keyed by platform id.
    pub fn table(base: &str) -> BTreeMap<&'static str, Endpoints> {
        PLATFORM_IDS
            .into_iter()
            .filter_map(|id| Some((id, Endpoints::at(base, id)?)))
            .collect()
    }
}

fn exposed<S: Serializer>(secret: &Secret, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_platform_has_routes() {
        for id in PLATFORM_IDS {
            assert!(Endpoints::at("http://127.0.0.1:4000", id).is_some(), "{id}");
        }
        assert_eq!(Endpoints::at("http://127.0.0.1:4000", "myspace"), None);
    }

    #[test]
    fn the_graph_apps_are_the_shared_registration() {
        use crate::meta::{
            FACEBOOK_CLIENT_ID, FACEBOOK_CLIENT_SECRET, INSTAGRAM_CLIENT_ID,
            INSTAGRAM_CLIENT_SECRET,
        };
        let (id, secret) = sandbox_client("facebook");
        assert_eq!(
            (id.as_str(), secret.expose()),
            (FACEBOOK_CLIENT_ID, FACEBOOK_CLIENT_SECRET)
        );
        let (id, secret) = sandbox_client("instagram");
        assert_eq!(
            (id.as_str(), secret.expose()),
            (INSTAGRAM_CLIENT_ID, INSTAGRAM_CLIENT_SECRET)
        );
    }

    #[test]
    fn absolute_urls_under_the_platform_prefix() {
        let Some(Endpoints::Oauth(x)) = Endpoints::at("http://127.0.0.1:4000/", "x") else {
            panic!("x is an OAuth platform");
        };
        assert_eq!(x.client_id, "sandbox-x-client");
        assert_eq!(x.client_secret.expose(), "sandbox-x-secret");
        assert_eq!(x.auth_url, "http://127.0.0.1:4000/x/i/oauth2/authorize");
        assert_eq!(x.api_base, "http://127.0.0.1:4000/x");
        let Some(Endpoints::AtProto(bluesky)) = Endpoints::at("http://127.0.0.1:4000", "bluesky")
        else {
            panic!("bluesky is an AT Protocol platform");
        };
        assert_eq!(bluesky.service, "http://127.0.0.1:4000/bluesky");
        assert_eq!(bluesky.plc_directory, "http://127.0.0.1:4000/bluesky/plc");
        let json = serde_json::to_value(Endpoints::table("http://h:1")).unwrap_or_default();
        assert_eq!(json["x"]["kind"], "oauth");
        assert_eq!(json["x"]["client_secret"], "sandbox-x-secret");
        assert_eq!(json["bluesky"]["kind"], "at_proto");
    }
}
