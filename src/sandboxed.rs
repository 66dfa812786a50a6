//! Pointing an engine at the sandbox: [`Config::use_sandbox_for_unconfigured`], built
//! from the sandbox's own route table ([`Endpoints`]). Compiled only with the `sandbox`
//! feature; the configuration itself knows nothing of the sandbox.

use social_studio_sandbox::Endpoints;
use social_studio_storage::{Platform, Secret};

use crate::config::{Config, PlatformConfig};

impl Config {
    /// Points every platform without credentials at the local sandbox at `base`
    /// (`http://127.0.0.1:PORT`): endpoints `{base}/{id}/…` on the platform's real path
    /// shapes, client `sandbox-{id}-client` / `sandbox-{id}-secret`. Bluesky, which
    /// needs no credentials, goes to the sandbox unless its `service` is set. Platforms
    /// with credentials are left alone. Returns the platforms it pointed at the sandbox.
    pub fn use_sandbox_for_unconfigured(&mut self, base: &str) -> Vec<Platform> {
        let mut pointed = Vec::new();
        for p in Platform::ALL {
            let configured = match p {
                Platform::Bluesky => self
                    .platforms
                    .get(&p)
                    .is_some_and(|section| section.service.is_some()),
                _ => self.is_configured(p),
            };
            if configured {
                continue;
            }
            // A platform the sandbox does not simulate stays unconfigured.
            let Some(endpoints) = Endpoints::at(base, p.id()) else {
                continue;
            };
            let section = match endpoints {
                Endpoints::Oauth(oauth) => PlatformConfig {
                    client_id: Some(oauth.client_id),
                    client_secret: Some(Secret::new(oauth.client_secret.expose())),
                    auth_url: Some(oauth.auth_url),
                    token_url: Some(oauth.token_url),
                    revoke_url: oauth.revoke_url,
                    api_base: Some(oauth.api_base),
                    service: None,
                    plc_directory: None,
                },
                Endpoints::AtProto(at) => PlatformConfig {
                    service: Some(at.service),
                    plc_directory: Some(at.plc_directory),
                    ..PlatformConfig::default()
                },
            };
            self.platforms.insert(p, section);
            pointed.push(p);
        }
        pointed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use crate::platforms::oauth::check_endpoint;

    /// Writes `text` as a config file and loads it, with no environment.
    fn load(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("social-studio.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), Vec::new())
    }

    #[test]
    fn the_sandbox_takes_only_unconfigured_platforms() {
        let mut config = load(
            r#"
            [platforms.x]
            client_id = "real-x"
            client_secret = "real-x-secret"
            [platforms.linkedin]
            api_base = "https://li.example.com"
            "#,
        )
        .unwrap();
        let before_x = config.platforms[&Platform::X].clone();
        let pointed = config.use_sandbox_for_unconfigured("http://127.0.0.1:4000/");
        assert_eq!(
            pointed,
            Platform::ALL
                .into_iter()
                .filter(|p| *p != Platform::X)
                .collect::<Vec<_>>()
        );
        assert_eq!(
            config.platforms[&Platform::X],
            before_x,
            "configured: left alone"
        );

        let linkedin = config.platform_settings(Platform::Linkedin).unwrap();
        assert_eq!(linkedin.client_id, "sandbox-linkedin-client");
        assert_eq!(linkedin.client_secret.expose(), "sandbox-linkedin-secret");
        assert_eq!(
            linkedin.auth_url,
            "http://127.0.0.1:4000/linkedin/oauth/v2/authorization"
        );
        assert_eq!(linkedin.api_base, "http://127.0.0.1:4000/linkedin");

        for p in Platform::ALL.into_iter().filter(|p| *p != Platform::X) {
            let s = config.platform_settings(p).unwrap();
            let prefix = format!("http://127.0.0.1:4000/{}", p.id());
            for url in [&s.auth_url, &s.token_url, &s.api_base]
                .into_iter()
                .chain(s.revoke_url.as_ref())
            {
                assert!(url.starts_with(&prefix), "{p}: {url}");
                check_endpoint("url", url).unwrap();
            }
        }
        assert_eq!(
            config.bluesky_plc_directory(),
            "http://127.0.0.1:4000/bluesky/plc"
        );

        // The X sandbox's routes, as the sandbox serves them.
        let mut fresh = Config::default();
        fresh.use_sandbox_for_unconfigured("http://127.0.0.1:4000");
        let x = fresh.platform_settings(Platform::X).unwrap();
        assert_eq!(x.client_id, "sandbox-x-client");
        assert_eq!(x.client_secret.expose(), "sandbox-x-secret");
        assert_eq!(x.auth_url, "http://127.0.0.1:4000/x/i/oauth2/authorize");
        assert_eq!(x.token_url, "http://127.0.0.1:4000/x/2/oauth2/token");
        assert_eq!(
            x.revoke_url.as_deref(),
            Some("http://127.0.0.1:4000/x/2/oauth2/revoke")
        );
        assert_eq!(x.api_base, "http://127.0.0.1:4000/x");

        // A Bluesky pinned to a service is configured; running again changes nothing.
        let mut pinned =
            load("[platforms.bluesky]\nservice = \"https://pds.example.com\"").unwrap();
        let pointed = pinned.use_sandbox_for_unconfigured("http://127.0.0.1:4000");
        assert!(!pointed.contains(&Platform::Bluesky));
        assert!(pinned
            .use_sandbox_for_unconfigured("http://127.0.0.1:4000")
            .is_empty());
    }
}
