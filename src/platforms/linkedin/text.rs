//! LinkedIn's "little" text format, in which the Posts API reads `commentary`
//! (learn.microsoft.com/linkedin, "Little Text Format"): mentions, hashtags and
//! templates are written with `@[…](urn)`, `#tag` and `{…|…}`, so the characters those
//! use are reserved. A reserved character that is not escaped is not an error: LinkedIn
//! accepts the post and silently cuts the text at that character. Every reserved
//! character of the author's text is therefore escaped with a backslash, URLs included
//! (an escaped character renders as itself, so a link still reads the same).
//!
//! Lengths are counted on the author's text, before escaping: the 3,000-character limit
//! is about what readers see, and the escapes are not shown. They are counted in UTF-16
//! code units, as LinkedIn's own composer counts — an emoji counts 2 — which can only
//! refuse a little earlier than LinkedIn would, never later.

/// The most characters a post's commentary may have.
pub const MAX_COMMENTARY_LENGTH: usize = 3000;

/// The characters little reserves: `\ | { } @ [ ] ( ) < > # * _ ~`.
pub const RESERVED: &[char] = &[
    '\\', '|', '{', '}', '@', '[', ']', '(', ')', '<', '>', '#', '*', '_', '~',
];

/// The author's text as little plain text: every reserved character backslash-escaped.
pub fn escape_little(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        if RESERVED.contains(&c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The commentary's length as the limit counts it: UTF-16 code units of the author's
/// (unescaped) text.
pub fn commentary_length(text: &str) -> usize {
    text.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reserved_character_is_escaped_and_nothing_else() {
        assert_eq!(
            escape_little(r"a\b|c{d}e@f[g]h(i)j<k>l#m*n_o~p"),
            r"a\\b\|c\{d\}e\@f\[g\]h\(i\)j\<k\>l\#m\*n\_o\~p"
        );
        assert_eq!(
            escape_little("plain text, é and 📚!"),
            "plain text, é and 📚!"
        );
        assert_eq!(escape_little(""), "");
    }

    #[test]
    fn a_typical_post_keeps_its_parentheses_hashtags_and_links() {
        let text = "New book (out now!) #amreading — https://example.com/my_book";
        assert_eq!(
            escape_little(text),
            r"New book \(out now!\) \#amreading — https://example.com/my\_book"
        );
    }

    #[test]
    fn lengths_count_the_author_text_in_utf16_units() {
        assert_eq!(commentary_length("(#)"), 3, "escapes are not counted");
        assert_eq!(commentary_length("📚"), 2);
        assert_eq!(commentary_length("é"), 1);
    }
}
