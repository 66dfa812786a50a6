//! Bluesky rich text and record keys, pure functions: where links, mentions and hashtags
//! sit in a post's text (UTF-8 byte offsets, end exclusive, as the
//! `app.bsky.richtext.facet` lexicon counts), and the TID record key derived from a post
//! id so that the same post always lands on the same record.

use social_studio_storage::PostId;

/// The base32-sortable alphabet of TIDs.
const S32: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// A span of the text, in UTF-8 bytes, end exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    /// The text the span covers: the URL, `@handle` or `#tag`.
    pub text: String,
}

/// Characters that end a link, a mention or a tag when they come last (sentence
/// punctuation after `https://example.com.`).
fn trailing_punctuation(c: char) -> bool {
    matches!(
        c,
        '.' | ',' | ';' | ':' | '!' | '?' | ')' | ']' | '}' | '"' | '\'' | '…'
    )
}

/// Whether position `i` starts a word: the start of the text, or after whitespace or an
/// opening bracket.
fn at_word_start(text: &str, i: usize) -> bool {
    text[..i]
        .chars()
        .next_back()
        .is_none_or(|c| c.is_whitespace() || c == '(' || c == '[')
}

/// The end (exclusive) of the run of non-whitespace starting at `from`, with trailing
/// punctuation trimmed.
fn run_end(text: &str, from: usize, keep: impl Fn(char) -> bool) -> usize {
    let mut end = from;
    for (offset, c) in text[from..].char_indices() {
        if c.is_whitespace() || !keep(c) {
            break;
        }
        end = from + offset + c.len_utf8();
    }
    while end > from {
        let Some(last) = text[from..end].chars().next_back() else {
            break;
        };
        if trailing_punctuation(last) {
            end -= last.len_utf8();
        } else {
            break;
        }
    }
    end
}

/// Every `http://` or `https://` link in the text.
pub fn links(text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let scheme = if rest.starts_with("https://") {
            8
        } else if rest.starts_with("http://") {
            7
        } else {
            0
        };
        if scheme > 0 && at_word_start(text, i) {
            let end = run_end(text, i, |_| true);
            if end > i + scheme {
                out.push(Span {
                    start: i,
                    end,
                    text: text[i..end].to_owned(),
                });
                i = end;
                continue;
            }
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    out
}

/// Every `@handle` (a domain name: letters, digits, dots and hyphens, with at least one
/// dot). The span includes the `@`; [`Span::text`] too.
pub fn mentions(text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        if c != '@' || !at_word_start(text, i) {
            continue;
        }
        let mut end = run_end(text, i + 1, |c| {
            c.is_ascii_alphanumeric() || c == '.' || c == '-'
        });
        while end > i + 1 && text[..end].ends_with(['-', '.']) {
            end -= 1;
        }
        let handle = &text[i + 1..end];
        let labels: Vec<&str> = handle.split('.').collect();
        let valid = labels.len() >= 2
            && labels
                .iter()
                .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
            && labels
                .last()
                .is_some_and(|tld| tld.starts_with(|c: char| c.is_ascii_alphabetic()));
        if valid {
            out.push(Span {
                start: i,
                end,
                text: text[i..end].to_owned(),
            });
        }
    }
    out
}

/// The longest tag Bluesky takes, in characters (without the `#`).
pub const MAX_TAG_CHARS: usize = 64;

/// Every `#hashtag`: not all digits, at most 64 characters. The span includes the `#`;
/// [`Span::text`] is the tag without it.
pub fn hashtags(text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    for (i, c) in text.char_indices() {
        if c != '#' || !at_word_start(text, i) {
            continue;
        }
        let end = run_end(text, i + 1, |c| c != '#');
        let tag = &text[i + 1..end];
        if tag.is_empty()
            || tag.chars().all(|c| c.is_ascii_digit())
            || tag.chars().count() > MAX_TAG_CHARS
        {
            continue;
        }
        out.push(Span {
            start: i,
            end,
            text: tag.to_owned(),
        });
    }
    out
}

/// The TID record key of a post: 53 bits of microseconds since the epoch and a 10-bit
/// clock id, base32-sortable, 13 characters. Derived from the post id alone (a UUID v7:
/// 48 bits of milliseconds, then random or counter bits), so a publish that is sent again
/// after a crash names the same record.
pub fn tid_for(post: PostId) -> String {
    let bytes = post.as_bytes();
    let mut millis: u64 = 0;
    for &b in &bytes[..6] {
        millis = (millis << 8) | u64::from(b);
    }
    // FNV-1a over the bits after the timestamp: the sub-millisecond part and the clock
    // id, so two posts created in the same millisecond get different keys.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &bytes[6..] {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let micros = millis.saturating_mul(1000).saturating_add(h % 1000) & ((1 << 53) - 1);
    let clock_id = (h >> 20) & 0x3ff;
    encode_tid((micros << 10) | clock_id)
}

/// Base32-sortable, 13 characters, most significant first.
pub fn encode_tid(value: u64) -> String {
    let value = value & (u64::MAX >> 1);
    (0..13)
        .map(|i| {
            let shift = 60 - 5 * i;
            char::from(S32[((value >> shift) & 31) as usize])
        })
        .collect()
}

/// Whether a string is a syntactically valid TID.
pub fn is_tid(s: &str) -> bool {
    s.len() == 13
        && s.bytes().all(|b| S32.contains(&b))
        && s.as_bytes()
            .first()
            .is_some_and(|&b| b"234567abcdefghij".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_found_with_byte_offsets_and_punctuation_trimmed() {
        let text = "café → https://example.com/a?b=1. and (http://x.org)";
        let found = links(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].text, "https://example.com/a?b=1");
        assert_eq!(&text[found[0].start..found[0].end], found[0].text);
        assert_eq!(found[0].start, "café → ".len());
        assert_eq!(found[1].text, "http://x.org");
    }

    #[test]
    fn mentions_need_a_domain_and_hashtags_skip_numbers() {
        let text = "hi @jane.bsky.social and @nobody, mail a@b.com #rust #2024 #été.";
        let m = mentions(text);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].text, "@jane.bsky.social");
        let t = hashtags(text);
        let tags: Vec<&str> = t.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(tags, ["rust", "été"]);
        assert_eq!(&text[t[1].start..t[1].end], "#été");
    }

    #[test]
    fn tids_are_deterministic_sortable_and_valid() {
        let a = PostId::new();
        assert_eq!(tid_for(a), tid_for(a));
        assert!(is_tid(&tid_for(a)), "{}", tid_for(a));
        let b = PostId::new();
        assert_ne!(tid_for(a), tid_for(b));
        assert_eq!(encode_tid(0), "2222222222222");
        // Later ids sort later (milliseconds dominate), whatever their random bits.
        let at = |millis: u64, fill: u8| {
            let mut bytes = [fill; 16];
            bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
            PostId::from_bytes(bytes)
        };
        let (a, c) = (at(1_800_000_000_000, 0xff), at(1_800_000_000_001, 0x00));
        assert!(tid_for(c) > tid_for(a));
    }
}
