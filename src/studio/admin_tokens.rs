//! The admin tokens the HTTP API accepts: the current one and, while clients move to it,
//! previous ones.
//!
//! The current token is `admin_token` from the configuration, or else the first line of
//! `{data_dir}/admin.token` (generated, mode 0600, when the file does not exist). Previous
//! tokens are `previous_admin_tokens` from the configuration and the token file's further
//! lines. [`Studio::reload_admin_tokens`](super::Studio::reload_admin_tokens) reads them
//! again while serving (the binary does on SIGHUP), so a rotation needs no restart:
//! add the new token with the old one as previous, reload, move the clients, drop the old
//! one, reload.

use std::io::Write;
use std::path::{Path, PathBuf};

use social_studio_storage::Secret;

use super::EngineRefusal;
use crate::config::Config;

/// The tokens accepted now.
#[derive(Debug, Clone)]
pub struct AdminTokens {
    current: Secret,
    previous: Vec<Secret>,
}

impl AdminTokens {
    pub fn new(current: Secret, previous: Vec<Secret>) -> AdminTokens {
        AdminTokens { current, previous }
    }

    /// The token clients should use.
    pub fn current(&self) -> &Secret {
        &self.current
    }

    /// Tokens still accepted during a rotation.
    pub fn previous(&self) -> &[Secret] {
        &self.previous
    }

    /// Every accepted token, the current one first.
    pub fn all(&self) -> impl Iterator<Item = &Secret> {
        std::iter::once(&self.current).chain(&self.previous)
    }
}

/// What [`load`] found, and whether it generated the token file just now.
pub(crate) struct Loaded {
    pub(crate) tokens: AdminTokens,
    pub(crate) generated: bool,
}

/// The tokens `config` and the token file in its data directory name. With `generate`, a
/// missing token file is created with a fresh token; without, it is an error (a reload
/// must never swap in a token nobody has).
pub(crate) fn load(config: &Config, generate: bool) -> Result<Loaded, EngineRefusal> {
    let mut previous = config.previous_admin_tokens.clone();
    let (current, generated) = match &config.admin_token {
        Some(t) => (t.clone(), false),
        None => {
            let (lines, generated) = read_file(&config.data_dir, generate)?;
            let mut lines = lines.into_iter();
            let current = lines.next().ok_or_else(|| empty(&config.data_dir))?;
            previous.extend(lines);
            (current, generated)
        }
    };
    previous.retain(|p| p.expose() != current.expose());
    Ok(Loaded {
        tokens: AdminTokens::new(current, previous),
        generated,
    })
}

fn token_path(dir: &Path) -> PathBuf {
    dir.join(super::ADMIN_TOKEN_FILE)
}

fn empty(dir: &Path) -> EngineRefusal {
    EngineRefusal::Unavailable(format!(
        "admin token file {} is empty: delete it to generate a new token",
        token_path(dir).display()
    ))
}

/// The token file's tokens, one per non-empty line; created with one new token if missing
/// and `generate`.
fn read_file(dir: &Path, generate: bool) -> Result<(Vec<Secret>, bool), EngineRefusal> {
    let path = token_path(dir);
    let io = |e: std::io::Error| {
        EngineRefusal::Unavailable(format!("admin token file {}: {e}", path.display()))
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(Secret::new)
                .collect(),
            false,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
            std::fs::create_dir_all(dir).map_err(io)?;
            let token = super::random_token(32);
            write_private(&path, &format!("{token}\n"), true).map_err(io)?;
            Ok((vec![Secret::new(token)], true))
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes `text` to `path` with mode 0600: a new file (`create_new`), or atomically
/// over an existing one (a temporary file made durable, then renamed over).
fn write_private(path: &Path, text: &str, create_new: bool) -> std::io::Result<()> {
    let target = if create_new {
        path.to_path_buf()
    } else {
        path.with_extension("token.tmp")
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if create_new {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&target)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    if !create_new {
        std::fs::rename(&target, path)?;
    }
    Ok(())
}

/// What [`rotate_token_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFileRotation {
    pub path: PathBuf,
    /// Tokens other than the current one the file now holds (still accepted).
    pub previous: usize,
}

/// Rotates the admin token file in `data_dir`: a new token becomes the first line and
/// the tokens it held stay below it, still accepted; with `end_transition`, only the
/// first line is kept instead, so the previous tokens stop being accepted. The serving
/// process takes it up at its next reload (SIGHUP) or start.
pub fn rotate_token_file(
    data_dir: &Path,
    end_transition: bool,
) -> Result<TokenFileRotation, EngineRefusal> {
    let path = token_path(data_dir);
    let (tokens, _) = read_file(data_dir, false)?;
    let kept: Vec<Secret> = if end_transition {
        tokens.into_iter().take(1).collect()
    } else {
        std::iter::once(Secret::new(super::random_token(32)))
            .chain(tokens)
            .collect()
    };
    if kept.is_empty() {
        return Err(empty(data_dir));
    }
    let mut text = String::new();
    for t in &kept {
        text.push_str(t.expose());
        text.push('\n');
    }
    write_private(&path, &text, false).map_err(|e| {
        EngineRefusal::Unavailable(format!("admin token file {}: {e}", path.display()))
    })?;
    Ok(TokenFileRotation {
        path,
        previous: kept.len() - 1,
    })
}
