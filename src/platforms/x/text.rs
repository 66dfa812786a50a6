//! How X counts a post's length (docs.x.com, "Counting characters", and twitter-text's
//! v3 configuration): the text is NFC-normalised; every URL counts 23 (the length of the
//! t.co link that replaces it); an emoji counts 2 however many code points it takes
//! (skin tones, ZWJ families, flags, keycaps); every other code point counts 1 in the
//! ranges twitter-text weighs 1 (U+0000–U+10FF, U+2000–U+200D, U+2010–U+201F,
//! U+2032–U+2037) and 2 elsewhere (CJK, most other scripts).
//!
//! URL detection follows twitter-text where it matters for authors: `http(s)://…`,
//! `www.…`, and bare domains under common generic TLDs (`example.com/book`). Trailing
//! punctuation and an unbalanced closing parenthesis are not part of a URL. Emails are
//! not URLs. twitter-text's full TLD list is not reproduced: a bare domain under a rare
//! TLD counts by its characters here, and X itself stays the final judge at publish.

use std::ops::Range;

use unicode_normalization::UnicodeNormalization as _;
use unicode_segmentation::UnicodeSegmentation as _;

/// The most a post may weigh.
pub const MAX_WEIGHTED_LENGTH: usize = 280;

/// What every URL counts: the length of a t.co link.
pub const URL_WEIGHT: usize = 23;

/// What an emoji counts, and any code point outside the light ranges.
const HEAVY: usize = 2;

/// Generic TLDs under which a bare domain (no scheme, no `www.`) is taken for a URL.
const BARE_DOMAIN_TLDS: &[&str] = &[
    "com", "net", "org", "info", "biz", "edu", "gov", "io", "co", "app", "dev", "blog", "shop",
    "store", "online", "site", "xyz", "news", "tech", "page", "link", "me", "tv", "ly",
];

/// The post's length as X counts it.
pub fn weighted_length(text: &str) -> usize {
    let text: String = text.nfc().collect();
    let urls = url_spans(&text);
    let mut total = urls.len() * URL_WEIGHT;
    let mut at = 0;
    for url in &urls {
        total += plain_weight(&text[at..url.start]);
        at = url.end;
    }
    total + plain_weight(&text[at..])
}

/// Weight of text without URLs: emoji 2 each, other code points by range.
fn plain_weight(text: &str) -> usize {
    text.graphemes(true)
        .map(|cluster| {
            if is_emoji(cluster) {
                HEAVY
            } else {
                cluster.chars().map(code_point_weight).sum()
            }
        })
        .sum()
}

/// twitter-text v3's ranges of code points that count 1; everything else counts 2.
fn code_point_weight(c: char) -> usize {
    match u32::from(c) {
        0x0000..=0x10FF | 0x2000..=0x200D | 0x2010..=0x201F | 0x2032..=0x2037 => 1,
        _ => HEAVY,
    }
}

/// Whether a grapheme cluster is one emoji. A lone pictograph above U+2000 weighs 2
/// either way; what this decides is that a sequence (👨‍👩‍👧‍👦, 🙋🏽, 🇫🇷, #️⃣, ©️) counts 2 in
/// total rather than by its code points — while a text-style © alone still counts 1.
fn is_emoji(cluster: &str) -> bool {
    let mut chars = cluster.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let single = chars.next().is_none();
    let emoji_presentation = cluster.contains('\u{FE0F}');
    let keycap = cluster.contains('\u{20E3}') && matches!(first, '0'..='9' | '#' | '*');
    if keycap {
        return true;
    }
    let pictographic = cluster
        .chars()
        .any(|c| is_pictographic(c) || is_regional_indicator(c));
    if single {
        // A lone © or ® is text; a lone pictograph above U+2000 counts 2 either way.
        return pictographic && u32::from(first) >= 0x2000;
    }
    pictographic
        && (emoji_presentation
            || cluster.contains('\u{200D}')
            || cluster.chars().any(|c| {
                is_regional_indicator(c)
                    || matches!(u32::from(c), 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F)
            })
            || u32::from(first) >= 0x1F000)
}

/// Code points emoji are built from (a coarse cover of Unicode's Extended_Pictographic:
/// enough to recognise emoji sequences, which is all the count needs).
fn is_pictographic(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x2122 | 0x2139
            | 0x2194..=0x21AA
            | 0x231A..=0x23FF
            | 0x24C2
            | 0x25AA..=0x25FE
            | 0x2600..=0x27BF
            | 0x2934..=0x2935
            | 0x2B05..=0x2B55
            | 0x3030
            | 0x303D
            | 0x3297
            | 0x3299
            | 0x1F000..=0x1FAFF
            | 0x1FC00..=0x1FFFD
    )
}

fn is_regional_indicator(c: char) -> bool {
    matches!(u32::from(c), 0x1F1E6..=0x1F1FF)
}

/// Byte ranges of the URLs in `text`, in order.
pub fn url_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    for (start, token) in whitespace_tokens(text) {
        if let Some(span) = url_in_token(token) {
            spans.push(start + span.start..start + span.end);
        }
    }
    spans
}

/// Whitespace-separated tokens with their byte offsets.
fn whitespace_tokens(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split(char::is_whitespace)
        .scan(0usize, |offset, token| {
            let start = *offset;
            // Every separator is one whitespace char; its width is what the split ate.
            let separator = text[start + token.len()..]
                .chars()
                .next()
                .map_or(0, char::len_utf8);
            *offset = start + token.len() + separator;
            Some((start, token))
        })
        .filter(|(_, token)| !token.is_empty())
}

/// The URL inside one token, if any.
fn url_in_token(token: &str) -> Option<Range<usize>> {
    // A scheme can start anywhere a word does not continue ("see:https://…").
    let lower = token.to_ascii_lowercase();
    let scheme_at = ["https://", "http://"]
        .iter()
        .filter_map(|scheme| {
            lower.match_indices(scheme).map(|(i, _)| i).find(|&i| {
                !token[..i]
                    .chars()
                    .next_back()
                    .is_some_and(char::is_alphanumeric)
            })
        })
        .min();
    let start = match scheme_at {
        Some(i) => i,
        // Without a scheme a URL starts the token, after opening punctuation.
        None => token.find(|c: char| c.is_alphanumeric())?,
    };
    let end = start + trimmed_len(&token[start..]);
    let candidate = &token[start..end];
    let is_url = if scheme_at.is_some() {
        candidate.len() > lower[start..].find("://").map_or(0, |i| i + 3)
    } else {
        is_bare_url(candidate)
    };
    is_url.then_some(start..end)
}

/// Length of a URL candidate without trailing punctuation that ends a sentence, and
/// without a closing parenthesis it did not open.
fn trimmed_len(candidate: &str) -> usize {
    let mut end = candidate.len();
    loop {
        let Some(last) = candidate[..end].chars().next_back() else {
            return end;
        };
        let unbalanced_paren = last == ')'
            && candidate[..end].matches('(').count() < candidate[..end].matches(')').count();
        if matches!(
            last,
            '.' | ',' | ':' | ';' | '!' | '?' | '\'' | '"' | '…' | '»' | '”' | '’'
        ) || unbalanced_paren
        {
            end -= last.len_utf8();
        } else {
            return end;
        }
    }
}

/// `www.host…` or `host.tld…` under a common generic TLD, without an `@` before the host
/// (an email address is not a URL).
fn is_bare_url(candidate: &str) -> bool {
    let host_end = candidate
        .find(['/', '?', '#', ':'])
        .unwrap_or(candidate.len());
    let host = &candidate[..host_end];
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() < 2 || host.contains('@') {
        return false;
    }
    let well_formed = labels.iter().all(|label| {
        !label.is_empty()
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if !well_formed {
        return false;
    }
    let tld = labels[labels.len() - 1].to_ascii_lowercase();
    let is_www = labels[0].eq_ignore_ascii_case("www") && labels.len() >= 3;
    (is_www && tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
        || BARE_DOMAIN_TLDS.contains(&tld.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_x_weights() {
        let cases: &[(&str, usize)] = &[
            ("", 0),
            ("Hello, world!", 13),
            ("Hello, world! 👋", 16), // docs.x.com's own example
            ("café", 4),
            ("cafe\u{301}", 4), // NFD normalises to the same four
            ("日本語", 6),
            ("한국어", 6),
            ("👾", 2),
            ("🙋🏽", 2),
            ("👨\u{200D}🎤", 2),
            ("👨\u{200D}👩\u{200D}👧\u{200D}👦", 2),
            ("🇫🇷", 2),
            ("#\u{FE0F}\u{20E3}", 2),
            ("©", 1),
            ("©\u{FE0F}", 2),
            ("❤", 2),
            ("\u{2014}", 1), // em dash: general punctuation weighs 1
            ("\u{2026}", 2), // ellipsis is outside the light ranges
            ("https://example.com", 23),
            ("https://example.com/very/long/path?with=query&and=more", 23),
            ("see https://example.com.", 4 + 23 + 1),
            ("(https://example.com/a_(b))", 1 + 23 + 1),
            ("read:https://example.com", 5 + 23),
            ("www.example.org/book", 23),
            ("example.com", 23),
            ("jane@example.com", 16),
            ("e.g. i.e. file.rs", 17),
            ("http://", 7),
        ];
        for (text, expected) in cases {
            assert_eq!(weighted_length(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn url_spans_point_at_the_urls() {
        let text = "new book (https://example.com/b) and www.example.org!";
        let spans: Vec<&str> = url_spans(text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(spans, ["https://example.com/b", "www.example.org"]);
    }

    #[test]
    fn tokens_keep_byte_offsets_across_multibyte_whitespace() {
        let text = "a\u{3000}https://example.com b";
        let spans: Vec<&str> = url_spans(text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(spans, ["https://example.com"]);
    }
}
