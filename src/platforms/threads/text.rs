//! How Threads counts a post's text: 500 characters, where an emoji counts as its UTF-8
//! length in bytes (Threads' posts reference: "emojis are counted by their UTF-8 byte
//! length"). Everything else counts one per character (Unicode scalar value).
//!
//! ⚠ Threads does not publish its emoji table. Counted as emoji here: the pictographic
//! blocks (U+1F000–U+1FAFF), miscellaneous symbols and dingbats (U+2600–U+27BF),
//! regional indicators, and the joiners and selectors that build emoji sequences
//! (U+200D, U+FE0F, tags U+E0020–U+E007F). A text at the limit may still be counted
//! differently by Threads for rarer symbols; Threads' own refusal is then classified as a
//! content rejection with its message.

/// The most a post's text may count.
pub const MAX_TEXT: usize = 500;

/// Whether `c` is counted by its UTF-8 byte length.
fn is_emoji(c: char) -> bool {
    matches!(u32::from(c),
        0x1F000..=0x1FAFF
        | 0x2600..=0x27BF
        | 0x2B00..=0x2BFF
        | 0x200D
        | 0xFE0E..=0xFE0F
        | 0x20E3
        | 0xE0020..=0xE007F)
}

/// The text's length as Threads counts it.
pub fn length(text: &str) -> usize {
    text.chars()
        .map(|c| if is_emoji(c) { c.len_utf8() } else { 1 })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_count_one_and_emoji_their_bytes() {
        assert_eq!(length("hello"), 5);
        assert_eq!(length("héllo"), 5);
        assert_eq!(length("日本"), 2);
        // U+1F600 is four bytes in UTF-8.
        assert_eq!(length("😀"), 4);
        // ❤️ = U+2764 (3 bytes) + U+FE0F (3 bytes).
        assert_eq!(length("❤️"), 6);
        assert_eq!(length(&"a".repeat(MAX_TEXT)), MAX_TEXT);
    }
}
