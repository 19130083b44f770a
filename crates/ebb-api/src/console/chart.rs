//! Charts drawn on the server as inline SVG: no script, no chart library, nothing fetched. Coordinates
//! are computed in integers from base units, so a chart never rounds an amount through a float; the
//! labels are the amounts as decimal strings.

const WIDTH: i128 = 600;
const HEIGHT: i128 = 160;
const PAD: i128 = 4;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `v` in `[lo, hi]` as a y coordinate (top is `hi`).
fn y_of(v: i128, lo: i128, hi: i128) -> i128 {
    let span = (hi - lo).max(1);
    PAD + (HEIGHT - 2 * PAD) * (hi - v) / span
}

/// A balance over `[from_s, to_s]` as a step line: `start` before the first point, then each point's
/// value from its time on. `label` formats a value (base units) for the axis.
pub(crate) fn balance_steps(
    title: &str,
    from_s: i64,
    to_s: i64,
    start: i128,
    points: &[(i64, i128)],
    label: impl Fn(i128) -> String,
) -> String {
    let values = std::iter::once(start).chain(points.iter().map(|p| p.1));
    let (lo, hi) = values.fold((i128::MAX, i128::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    // The zero line is always shown; a flat line sits at the top.
    let lo = lo.min(0);
    let hi = hi.max(lo + 1);
    let span_t = (to_s - from_s).max(1) as i128;
    let x_of = |t: i64| (WIDTH * ((t - from_s).max(0) as i128) / span_t).min(WIDTH);
    let mut d = format!("M0,{}", y_of(start, lo, hi));
    for (t, v) in points {
        d.push_str(&format!(" H{} V{}", x_of(*t), y_of(*v, lo, hi)));
    }
    d.push_str(&format!(" H{WIDTH}"));
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {h}\" role=\"img\" aria-label=\"{t}\" preserveAspectRatio=\"none\">\
         <title>{t}</title>\
         <line x1=\"0\" x2=\"{WIDTH}\" y1=\"{zero}\" y2=\"{zero}\" class=\"axis\"/>\
         <path d=\"{d}\" class=\"line\"/>\
         <text x=\"4\" y=\"14\" class=\"label\">{top}</text>\
         <text x=\"4\" y=\"{bottom_y}\" class=\"label\">{bottom}</text></svg>",
        h = HEIGHT,
        t = esc(title),
        zero = y_of(0, lo, hi),
        top = esc(&label(hi)),
        bottom = esc(&label(lo)),
        bottom_y = HEIGHT - 6,
    )
}

/// One bar per day (oldest left) of `values` (base units), labelled with the largest.
pub(crate) fn daily_bars(title: &str, values: &[u128], label: impl Fn(u128) -> String) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    // Shifted so that the product below stays far from u128's end.
    let shift = (128 - max.leading_zeros()).saturating_sub(100);
    let n = values.len().max(1) as i128;
    let slot = WIDTH / n;
    let mut bars = String::new();
    for (i, v) in values.iter().enumerate() {
        // Heights in integers: a u128 sum scaled down without a float.
        let h = ((HEIGHT - 2 * PAD) as u128 * (v >> shift) / (max >> shift).max(1)) as i128;
        let x = slot * i as i128 + 1;
        bars.push_str(&format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{h}\" class=\"bar\"/>",
            HEIGHT - PAD - h,
            (slot - 2).max(1)
        ));
    }
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{t}\" preserveAspectRatio=\"none\">\
         <title>{t}</title>{bars}<text x=\"4\" y=\"14\" class=\"label\">{top}</text></svg>",
        t = esc(title),
        top = esc(&label(max)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_balance_is_a_step_line_across_the_period() {
        let svg = balance_steps("USDT", 0, 600, 0, &[(100, 10), (300, 5)], |v| v.to_string());
        assert!(svg.contains("M0,156 H100 V4 H300 V80 H600"), "{svg}");
        assert!(svg.contains(">10</text>") && svg.contains(">0</text>"));
        assert!(!svg.contains("NaN"));
        // No points: a flat line at the starting balance.
        let flat = balance_steps("x", 0, 600, 7, &[], |v| v.to_string());
        assert!(flat.contains("M0,4 H600"), "{flat}");
    }

    #[test]
    fn bars_scale_to_the_largest_day_and_titles_are_escaped() {
        let svg = daily_bars("<b>", &[0, 5, 10], |v| v.to_string());
        assert!(
            svg.contains("height=\"0\"") && svg.contains("height=\"76\"") && svg.contains("height=\"152\""),
            "{svg}"
        );
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
        let huge = daily_bars("x", &[u128::MAX / 200, u128::MAX / 100], |v| v.to_string());
        assert!(huge.contains("height=\"152\""), "no overflow on huge sums: {huge}");
    }
}
