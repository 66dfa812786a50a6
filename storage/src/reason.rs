//! The catalogue of reasons: the specific, named cause of every state a person can see
//! that needs attention, with a sentence they understand and a remedy they can act on.
//! Nothing the engine shows is ever a generic "something went wrong".
//!
//! Codes are stable snake_case strings. They are stored as strings (not enum indices), so
//! the catalogue can grow and be reordered without rewriting stored records.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! reason_codes {
    ($( $variant:ident => $code:literal, $message:literal, $remedy:literal; )*) => {
        /// A named cause. See [`ReasonCode::message`] and [`ReasonCode::remedy`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ReasonCode { $( $variant, )* }

        impl ReasonCode {
            pub const ALL: &'static [ReasonCode] = &[ $( ReasonCode::$variant, )* ];

            /// Stable machine-readable code.
            pub fn code(self) -> &'static str {
                match self { $( ReasonCode::$variant => $code, )* }
            }

            /// What happened, in a sentence a person understands.
            pub fn message(self) -> &'static str {
                match self { $( ReasonCode::$variant => $message, )* }
            }

            /// What the person can do about it.
            pub fn remedy(self) -> &'static str {
                match self { $( ReasonCode::$variant => $remedy, )* }
            }

            pub fn from_code(code: &str) -> Option<ReasonCode> {
                match code { $( $code => Some(ReasonCode::$variant), )* _ => None }
            }
        }
    };
}

reason_codes! {
    RevokedByUser => "revoked_by_user",
        "Access was removed from the account's settings on the platform.",
        "Reconnect the account; its scheduled posts resume as soon as you do.";
    GrantExpired => "grant_expired",
        "The platform's authorization for this account has expired.",
        "Reconnect the account; its scheduled posts resume as soon as you do.";
    PasswordChanged => "password_changed",
        "The account's password was changed, which ended every app's access to it.",
        "Reconnect the account with its new password; its scheduled posts resume as soon as you do.";
    PermissionRemoved => "permission_removed",
        "A permission that posting needs was removed from this app on the platform.",
        "Reconnect the account and keep every permission the consent screen asks for.";
    AuthorizationInvalid => "authorization_invalid",
        "The platform no longer accepts this account's authorization and did not say why.",
        "Reconnect the account; its scheduled posts resume as soon as you do.";
    RefreshTokenReused => "refresh_token_reused",
        "The platform saw an already-used renewal token and ended the authorization to protect the account.",
        "Reconnect the account; its scheduled posts resume as soon as you do.";
    RefreshInterrupted => "refresh_interrupted",
        "A renewal of this account's authorization was cut off before its answer arrived, and the platform no longer accepts the old one.",
        "Reconnect the account; its scheduled posts resume as soon as you do.";
    AppCredentialsRejected => "app_credentials_rejected",
        "The platform rejected this service's own app credentials; this is a configuration problem, not the author's.",
        "An administrator must check the platform's client id and secret in the service configuration.";
    PersonalProfileNotAllowed => "personal_profile_not_allowed",
        "The platform only allows publishing to Pages, not to personal profiles.",
        "Reconnect and choose a Page you manage.";
    NotPageAdmin => "not_page_admin",
        "The connected person does not have the role on the Page that publishing needs.",
        "Ask a Page admin to give you a role that can create content, then reconnect.";
    InstagramNotProfessional => "instagram_not_professional",
        "Only Instagram professional (Business or Creator) accounts can publish through apps.",
        "Switch the Instagram account to a professional account in its settings, then reconnect.";
    InstagramNotLinkedToPage => "instagram_not_linked_to_page",
        "The Instagram account is not linked to a Facebook Page, which Instagram requires for publishing.",
        "Link the Instagram account to a Facebook Page you manage, then reconnect.";
    TiktokAccountNotEligible => "tiktok_account_not_eligible",
        "This TikTok account cannot publish through apps right now.",
        "Check the account's standing in the TikTok app, then reconnect.";
    TiktokAppNotAudited => "tiktok_app_not_audited",
        "This service's TikTok app has not passed TikTok's audit, so it may only post privately to private accounts.",
        "Set the TikTok account to private, or ask the administrator to complete TikTok's app audit.";
    LinkedinOrgRoleMissing => "linkedin_org_role_missing",
        "You do not hold an administrator or content role on this LinkedIn organisation.",
        "Ask an organisation administrator for a content role, then reconnect.";
    AppPasswordRequired => "app_password_required",
        "Bluesky connections need an app password, not the account's main password.",
        "Create an app password in Bluesky's settings (Settings → Privacy and security → App passwords) and use it here.";
    WrongAccount => "wrong_account",
        "The reconnect signed in to a different account than the one this connection belongs to.",
        "Sign in with the original account, or choose to replace the connection with the new account.";
    AccountSuspended => "account_suspended",
        "The platform has suspended or taken down this account.",
        "Resolve the suspension with the platform, then reconnect.";
    NotOfferedByPlatform => "not_offered_by_platform",
        "The platform's public API does not offer this kind of post.",
        "Choose another kind of post, or publish this one directly on the platform.";
    TooManyRestarts => "too_many_restarts",
        "The engine stopped retrying this connection after it failed repeatedly in a short time.",
        "Reconnect the account; if this repeats, an administrator should check the service logs.";
    AccountDisconnected => "account_disconnected",
        "The account was disconnected before this post was published.",
        "Reconnect the account and schedule the post again.";
    ContentRejected => "content_rejected",
        "The platform refused this post's content.",
        "Edit the post as the platform's message says, then retry it.";
    TooLate => "too_late",
        "The post was held because it is now too late to publish it unreviewed.",
        "Review the post, then reschedule or retry it, or cancel it.";
    RateLimited => "rate_limited",
        "The platform asked us to slow down; the post waits and is sent when the limit resets.",
        "Nothing to do: the post is sent automatically when the platform allows it.";
    PlatformUnavailable => "platform_unavailable",
        "The platform is not responding right now; the post waits and is retried automatically.",
        "Nothing to do: the post is retried automatically.";
    ConnectionNotActive => "connection_not_active",
        "The post is waiting because its account connection needs attention.",
        "Fix the connection as its own message says; the post resumes when it is active again.";
    AccountCheckpointed => "account_checkpointed",
        "The platform locked the account behind a security checkpoint, which suspends every app's access until it is cleared.",
        "Log in to the platform's website and complete its security check, then reconnect.";
    AccountUnconfirmed => "account_unconfirmed",
        "The platform will not let apps act for an account whose owner has not confirmed it.",
        "Confirm the account as the platform asks (its email or phone confirmation), then reconnect.";
    YoutubeChannelRequired => "youtube_channel_required",
        "The Google account has no YouTube channel, and videos can only be published to a channel.",
        "Create a YouTube channel for this Google account (in YouTube: Create a channel), then reconnect.";
    RecordUnreadable => "record_unreadable",
        "The engine cannot read a stored record (the connection or post named here), so it cannot act on it; it is kept, not dropped, and a connection's scheduled posts wait.",
        "For a connection, reconnect the account: that replaces the record and its posts resume. For a post, schedule it again if it is still wanted. An administrator should check the service log for the storage error that names the record.";
    AppPasswordRejected => "app_password_rejected",
        "The platform did not accept this identifier and app password: one of them is wrong, or the app password was revoked.",
        "Check the handle, or create a new app password in Bluesky's settings (Settings → Privacy and security → App passwords) and connect with it.";
    MediaUrlNotPublic => "media_url_not_public",
        "The media's address is not on the public internet (a loopback, private, link-local or other reserved address, or a name that resolves only to one), so the engine did not fetch it.",
        "Host the file at a public http(s) address and schedule the post again. (An operator testing against a local server can set allow_private_media_urls.)";
    PdsNotPublic => "pds_not_public",
        "The account's identity names a personal data server that is not on the public internet, so the engine will not call it.",
        "Connect an account hosted at a public address. (An operator running a private PDS on purpose can set allow_private_media_urls.)";
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for ReasonCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for ReasonCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        ReasonCode::from_code(&code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reason code {code:?}")))
    }
}

/// A reason as recorded on a connection, post or event: the named cause plus, where the
/// platform said something more specific, its own words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The named cause; message and remedy come from it.
    pub code: ReasonCode,
    /// What the platform itself said (an `error_description`, a Graph error message), so
    /// support can see the platform's words even where the code is general.
    pub platform_message: Option<String>,
}

impl Reason {
    pub fn new(code: ReasonCode) -> Reason {
        Reason {
            code,
            platform_message: None,
        }
    }

    pub fn with_platform_message(code: ReasonCode, message: impl Into<String>) -> Reason {
        Reason {
            code,
            platform_message: Some(message.into()),
        }
    }

    pub fn message(&self) -> &'static str {
        self.code.message()
    }

    pub fn remedy(&self) -> &'static str {
        self.code.remedy()
    }
}

impl From<ReasonCode> for Reason {
    fn from(code: ReasonCode) -> Reason {
        Reason::new(code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code.message(), self.code.code())?;
        if let Some(m) = &self.platform_message {
            write!(f, "; the platform said: {m}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_unique_snake_case_with_message_and_remedy() {
        let mut seen = std::collections::HashSet::new();
        for &code in ReasonCode::ALL {
            let c = code.code();
            assert!(seen.insert(c), "duplicate code {c}");
            assert!(
                c.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                "{c}"
            );
            assert!(code.message().ends_with('.'), "{c} message is a sentence");
            assert!(code.remedy().len() > 10, "{c} has a remedy");
            assert_eq!(ReasonCode::from_code(c), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{c}\""));
        }
    }

    #[test]
    fn the_catalogue_holds_every_code_the_engine_promises() {
        for c in [
            "revoked_by_user",
            "grant_expired",
            "password_changed",
            "permission_removed",
            "authorization_invalid",
            "refresh_token_reused",
            "refresh_interrupted",
            "app_credentials_rejected",
            "personal_profile_not_allowed",
            "not_page_admin",
            "instagram_not_professional",
            "instagram_not_linked_to_page",
            "tiktok_account_not_eligible",
            "tiktok_app_not_audited",
            "linkedin_org_role_missing",
            "app_password_required",
            "wrong_account",
            "account_suspended",
            "not_offered_by_platform",
            "too_many_restarts",
            "account_disconnected",
            "content_rejected",
            "too_late",
            "rate_limited",
            "platform_unavailable",
        ] {
            assert!(ReasonCode::from_code(c).is_some(), "missing {c}");
        }
        assert!(serde_json::from_str::<ReasonCode>("\"something_went_wrong\"").is_err());
    }
}
