//! The nine platforms, the kinds of post the product offers, and what each platform's
//! API allows. Ids are stable lowercase strings: they appear in URLs, config sections and
//! stored keys, so they never change.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A social platform the engine can publish to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Facebook,
    Instagram,
    Tiktok,
    X,
    Linkedin,
    Pinterest,
    Youtube,
    Threads,
    Bluesky,
}

/// What a post is, in the product's words. Each platform supports a subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostKind {
    Feed,
    Story,
    Reel,
    Pin,
    Video,
    Community,
    Thread,
}

impl PostKind {
    pub const ALL: [PostKind; 7] = [
        PostKind::Feed,
        PostKind::Story,
        PostKind::Reel,
        PostKind::Pin,
        PostKind::Video,
        PostKind::Community,
        PostKind::Thread,
    ];

    pub fn id(self) -> &'static str {
        match self {
            PostKind::Feed => "feed",
            PostKind::Story => "story",
            PostKind::Reel => "reel",
            PostKind::Pin => "pin",
            PostKind::Video => "video",
            PostKind::Community => "community",
            PostKind::Thread => "thread",
        }
    }

    pub fn from_id(id: &str) -> Option<PostKind> {
        PostKind::ALL.into_iter().find(|k| k.id() == id)
    }
}

/// How a platform's grants stay alive, which decides whether the engine can renew them
/// on its own or must warn the author ahead of the day they lapse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Renewal {
    /// A refresh token renews the access token (X, TikTok, Pinterest, YouTube, Bluesky).
    RefreshToken,
    /// The long-lived token itself is exchanged for a fresh one (Threads `th_refresh_token`).
    RefreshAccessToken,
    /// Nothing renews the grant without the author: warn, then expire (Instagram user
    /// tokens, LinkedIn self-serve apps).
    ReauthorizeOnly,
    /// Page tokens with no expiry, still health-checked (Facebook).
    NonExpiring,
}

/// What one platform supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Post kinds the product offers on this platform.
    pub post_kinds: &'static [PostKind],
    /// Kinds the product names but the platform's public API does not offer, so they are
    /// refused at scheduling with `not_offered_by_platform` (YouTube community posts).
    pub not_offered: &'static [PostKind],
    /// Whether grants carry a refresh token.
    pub refresh_tokens: bool,
    /// How grants are kept alive.
    pub renewal: Renewal,
    /// Whether the platform has an endpoint to revoke a grant on disconnect.
    pub revocable: bool,
}

impl Platform {
    pub const ALL: [Platform; 9] = [
        Platform::Facebook,
        Platform::Instagram,
        Platform::Tiktok,
        Platform::X,
        Platform::Linkedin,
        Platform::Pinterest,
        Platform::Youtube,
        Platform::Threads,
        Platform::Bluesky,
    ];

    /// Stable lowercase id used in URLs, config and storage keys.
    pub fn id(self) -> &'static str {
        match self {
            Platform::Facebook => "facebook",
            Platform::Instagram => "instagram",
            Platform::Tiktok => "tiktok",
            Platform::X => "x",
            Platform::Linkedin => "linkedin",
            Platform::Pinterest => "pinterest",
            Platform::Youtube => "youtube",
            Platform::Threads => "threads",
            Platform::Bluesky => "bluesky",
        }
    }

    pub fn from_id(id: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.id() == id)
    }

    /// One byte per platform for compact index keys. Never renumber.
    pub fn index_byte(self) -> u8 {
        match self {
            Platform::Facebook => 1,
            Platform::Instagram => 2,
            Platform::Tiktok => 3,
            Platform::X => 4,
            Platform::Linkedin => 5,
            Platform::Pinterest => 6,
            Platform::Youtube => 7,
            Platform::Threads => 8,
            Platform::Bluesky => 9,
        }
    }

    pub fn from_index_byte(b: u8) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.index_byte() == b)
    }

    /// Human name for messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Platform::Facebook => "Facebook Page",
            Platform::Instagram => "Instagram",
            Platform::Tiktok => "TikTok",
            Platform::X => "X",
            Platform::Linkedin => "LinkedIn",
            Platform::Pinterest => "Pinterest",
            Platform::Youtube => "YouTube",
            Platform::Threads => "Threads",
            Platform::Bluesky => "Bluesky",
        }
    }

    pub fn capabilities(self) -> Capabilities {
        use PostKind::*;
        match self {
            Platform::Facebook => Capabilities {
                post_kinds: &[Feed],
                not_offered: &[],
                refresh_tokens: false,
                renewal: Renewal::NonExpiring,
                revocable: true,
            },
            Platform::Instagram => Capabilities {
                post_kinds: &[Feed, Reel, Story],
                not_offered: &[],
                refresh_tokens: false,
                renewal: Renewal::ReauthorizeOnly,
                revocable: true,
            },
            Platform::Tiktok => Capabilities {
                post_kinds: &[Video],
                not_offered: &[],
                refresh_tokens: true,
                renewal: Renewal::RefreshToken,
                revocable: true,
            },
            Platform::X => Capabilities {
                post_kinds: &[Feed, Thread],
                not_offered: &[],
                refresh_tokens: true,
                renewal: Renewal::RefreshToken,
                revocable: true,
            },
            Platform::Linkedin => Capabilities {
                post_kinds: &[Feed],
                not_offered: &[],
                // Self-serve apps get none; approved partners do. The adapter decides per
                // grant; the capability says what the common case is.
                refresh_tokens: false,
                renewal: Renewal::ReauthorizeOnly,
                revocable: true,
            },
            Platform::Pinterest => Capabilities {
                post_kinds: &[Pin],
                not_offered: &[],
                refresh_tokens: true,
                renewal: Renewal::RefreshToken,
                revocable: false,
            },
            Platform::Youtube => Capabilities {
                post_kinds: &[Video],
                not_offered: &[Community],
                refresh_tokens: true,
                renewal: Renewal::RefreshToken,
                revocable: true,
            },
            Platform::Threads => Capabilities {
                post_kinds: &[Feed, Thread],
                not_offered: &[],
                refresh_tokens: false,
                renewal: Renewal::RefreshAccessToken,
                revocable: false,
            },
            Platform::Bluesky => Capabilities {
                post_kinds: &[Feed, Thread],
                not_offered: &[],
                refresh_tokens: true,
                renewal: Renewal::RefreshToken,
                revocable: true,
            },
        }
    }

    pub fn supports(self, kind: PostKind) -> bool {
        self.capabilities().post_kinds.contains(&kind)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl std::str::FromStr for Platform {
    type Err = UnknownPlatform;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::from_id(s).ok_or_else(|| UnknownPlatform(s.to_owned()))
    }
}

/// A platform id that is not one of the nine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown platform {0:?}; expected one of facebook, instagram, tiktok, x, linkedin, pinterest, youtube, threads, bluesky")]
pub struct UnknownPlatform(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_index_bytes_round_trip_and_are_unique() {
        let mut bytes = std::collections::HashSet::new();
        for p in Platform::ALL {
            assert_eq!(Platform::from_id(p.id()), Some(p));
            assert_eq!(Platform::from_index_byte(p.index_byte()), Some(p));
            assert!(bytes.insert(p.index_byte()));
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.id())
            );
        }
        assert_eq!(Platform::from_id("X"), None, "ids are lowercase and exact");
        assert!("myspace".parse::<Platform>().is_err());
    }

    #[test]
    fn capabilities_match_what_each_api_offers() {
        assert!(Platform::Pinterest.supports(PostKind::Pin));
        assert!(!Platform::X.supports(PostKind::Pin));
        assert!(Platform::Instagram.supports(PostKind::Story));
        assert!(!Platform::Youtube.supports(PostKind::Community));
        assert!(Platform::Youtube
            .capabilities()
            .not_offered
            .contains(&PostKind::Community));
        assert!(
            !Platform::Tiktok.supports(PostKind::Feed),
            "TikTok has no text posts"
        );
        assert!(Platform::X.capabilities().refresh_tokens);
        assert!(!Platform::Facebook.capabilities().refresh_tokens);
        for k in PostKind::ALL {
            assert_eq!(PostKind::from_id(k.id()), Some(k));
        }
    }
}
