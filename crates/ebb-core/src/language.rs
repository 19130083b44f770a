//! `Accept-Language` (RFC 9110 §12.5.4): which of the languages ebb speaks a browser prefers.

/// The index in `speaks` (primary subtags, lower case: `["en", "zh"]`) of the language the header
/// prefers most among those ebb speaks: by quality value, the first listed among equals; `None` if it
/// names none of them. A tag matches by its primary subtag (`zh-CN` and `zh_TW` are `zh`).
pub fn preferred(accept_language: &str, speaks: &[&str]) -> Option<usize> {
    let mut best: Option<(u16, usize)> = None;
    for part in accept_language.split(',') {
        let mut bits = part.trim().split(';');
        let Some(tag) = bits.next() else { continue };
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("");
        let Some(index) = speaks.iter().position(|s| s.eq_ignore_ascii_case(primary)) else { continue };
        let q = bits.find_map(|b| b.trim().strip_prefix("q=")).map(thousandths).unwrap_or(1000);
        // `q=0` means "not this one".
        if q > 0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, index));
        }
    }
    best.map(|(_, i)| i)
}

/// An HTTP quality value (`1`, `0.8`, `0.125`) in thousandths; anything unreadable counts as 0.
pub fn thousandths(q: &str) -> u16 {
    let q = q.trim();
    let (whole, frac) = q.split_once('.').unwrap_or((q, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().unwrap_or(0);
    match whole {
        "1" if frac_value == 0 => 1000,
        "0" | "" => frac_value,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEAKS: [&str; 2] = ["en", "zh"];

    #[test]
    fn the_highest_quality_wins_then_the_first_listed() {
        assert_eq!(preferred("zh-CN,zh;q=0.9,en;q=0.8", &SPEAKS), Some(1));
        assert_eq!(preferred("fr-FR, en;q=0.5, zh;q=0.9", &SPEAKS), Some(1));
        assert_eq!(preferred("en-US,zh;q=0.1", &SPEAKS), Some(0));
        assert_eq!(preferred("en;q=0.5,zh;q=0.75", &SPEAKS), Some(1));
        assert_eq!(preferred("zh;q=0.5,en;q=0.5", &SPEAKS), Some(1));
        assert_eq!(preferred("ZH_tw", &SPEAKS), Some(1));
    }

    #[test]
    fn unknown_refused_and_unreadable_languages_are_skipped() {
        assert_eq!(preferred("de, fr", &SPEAKS), None);
        assert_eq!(preferred("", &SPEAKS), None);
        assert_eq!(preferred("zh;q=0, en;q=0.1", &SPEAKS), Some(0), "q=0 is a refusal");
        assert_eq!(preferred("zh;q=abc", &SPEAKS), None, "an unreadable quality counts as 0");
        assert_eq!(preferred("zh;q=1.5, en;q=0.2", &SPEAKS), Some(0), "above 1 is unreadable");
    }

    #[test]
    fn quality_values_in_thousandths() {
        assert_eq!(thousandths("1"), 1000);
        assert_eq!(thousandths("1.000"), 1000);
        assert_eq!(thousandths("1.5"), 0);
        assert_eq!(thousandths("0.8"), 800);
        assert_eq!(thousandths("0.125"), 125);
        assert_eq!(thousandths("0"), 0);
        assert_eq!(thousandths("x"), 0);
        assert_eq!(thousandths(".5"), 500);
        assert_eq!(thousandths("0.1234"), 0);
        assert_eq!(thousandths("0.-1"), 0);
    }
}
