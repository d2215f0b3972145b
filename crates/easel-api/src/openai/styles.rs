//! OpenAI's `style` values as prompt templates (`easel_core::style`).

use easel_core::style::Style;

/// OpenAI's `style` (DALL·E 3): `vivid` leans to hyper-real, dramatic images, `natural` to
/// more natural, less hyper-real ones.
pub(crate) const STYLES: &[Style] = &[
    Style {
        name: "vivid",
        prompt: "{prompt}, vivid colors, dramatic lighting, high contrast, highly detailed",
        negative: "dull, muted colors, flat lighting, washed out",
    },
    Style {
        name: "natural",
        prompt: "{prompt}, natural lighting, realistic colors, natural look",
        negative: "oversaturated, hyperreal, dramatic lighting, cartoon",
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use easel_core::style::{find, names};

    #[test]
    fn presets_wrap_the_prompt_and_extend_the_negative() {
        let vivid = find(STYLES, "Vivid").unwrap();
        let (p, n) = vivid.apply("a fox", None);
        assert!(p.starts_with("a fox, vivid colors"), "{p}");
        assert_eq!(n.as_deref(), Some(vivid.negative));
        let (_, n) = vivid.apply("a fox", Some("blurry"));
        assert_eq!(n.unwrap(), format!("blurry, {}", vivid.negative));
        assert!(find(STYLES, "cinematic").is_none());
        assert_eq!(names(STYLES), ["vivid", "natural"]);
        for s in STYLES {
            assert!(s.prompt.contains("{prompt}"), "{}", s.name);
        }
    }
}
