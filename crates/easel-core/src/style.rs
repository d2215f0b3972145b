//! Style presets: named prompt templates that a dialect's style switch maps onto (OpenAI's
//! `style`; other dialects' presets add their own tables here). A template wraps the prompt
//! (`{prompt}` is replaced by the caller's) and adds terms to the negative prompt, so a job's
//! stored input shows exactly what the style did.

/// One preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub name: &'static str,
    /// The prompt, with `{prompt}` where the caller's prompt goes.
    pub prompt: &'static str,
    /// Added to the negative prompt (after the caller's, comma-separated); empty: nothing.
    pub negative: &'static str,
}

/// OpenAI's `style` (DALL·E 3): `vivid` leans to hyper-real, dramatic images, `natural` to
/// more natural, less hyper-real ones.
pub const OPENAI: &[Style] = &[
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

/// Leonardo's `presetStyle` (the spec's `sd_generation_style` enum), as our own templates.
/// `DYNAMIC` (the spec's default), `NONE` and `UNPROCESSED` leave the prompt as given, so a
/// request without `presetStyle` runs its prompt unchanged; `GENERAL` and `LEONARDO` are
/// light; the others name a look.
pub const LEONARDO: &[Style] = &[
    Style {
        name: "ANIME",
        prompt: "anime style illustration of {prompt}, cel shading, clean line art, vibrant colors",
        negative: "photo, photorealistic, 3d render, muddy colors",
    },
    Style {
        name: "BOKEH",
        prompt: "{prompt}, shallow depth of field, soft bokeh background, fast lens",
        negative: "everything in focus, flat background",
    },
    Style {
        name: "CINEMATIC",
        prompt: "cinematic film still of {prompt}, dramatic lighting, anamorphic, color graded",
        negative: "cartoon, flat lighting, amateur snapshot",
    },
    Style {
        name: "CINEMATIC_CLOSEUP",
        prompt: "cinematic close-up shot of {prompt}, detailed face, shallow depth of field, moody light",
        negative: "wide shot, cartoon, flat lighting",
    },
    Style {
        name: "CREATIVE",
        prompt: "{prompt}, imaginative, artistic interpretation, bold composition",
        negative: "boring, plain, generic",
    },
    Style {
        name: "DYNAMIC",
        prompt: "{prompt}",
        negative: "",
    },
    Style {
        name: "ENVIRONMENT",
        prompt: "environment concept art of {prompt}, wide vista, atmospheric perspective, detailed scenery",
        negative: "close-up, portrait, cropped",
    },
    Style {
        name: "FASHION",
        prompt: "fashion photography of {prompt}, editorial, studio lighting, stylish outfit",
        negative: "amateur, cluttered background, unflattering light",
    },
    Style {
        name: "FILM",
        prompt: "analog film photo of {prompt}, film grain, kodak portra tones",
        negative: "digital look, oversharpened, cartoon",
    },
    Style {
        name: "FOOD",
        prompt: "food photography of {prompt}, appetizing, soft window light, shallow depth of field",
        negative: "unappetizing, harsh flash, messy",
    },
    Style {
        name: "GENERAL",
        prompt: "{prompt}, detailed, balanced composition",
        negative: "",
    },
    Style {
        name: "HDR",
        prompt: "HDR photo of {prompt}, high dynamic range, rich shadows and highlights, vivid detail",
        negative: "flat, low contrast, blown highlights",
    },
    Style {
        name: "ILLUSTRATION",
        prompt: "illustration of {prompt}, detailed linework, painterly shading",
        negative: "photo, photorealistic",
    },
    Style {
        name: "LEONARDO",
        prompt: "{prompt}, polished, detailed, vibrant",
        negative: "",
    },
    Style {
        name: "LONG_EXPOSURE",
        prompt: "long exposure photo of {prompt}, motion blur trails, silky light streaks",
        negative: "frozen motion, harsh flash",
    },
    Style {
        name: "MACRO",
        prompt: "macro photo of {prompt}, extreme close-up, fine texture detail, shallow depth of field",
        negative: "wide shot, blurry subject",
    },
    Style {
        name: "MINIMALISTIC",
        prompt: "minimalist image of {prompt}, simple shapes, negative space, limited palette",
        negative: "cluttered, busy, ornate",
    },
    Style {
        name: "MONOCHROME",
        prompt: "black and white photo of {prompt}, monochrome, strong tonal contrast",
        negative: "color, saturated",
    },
    Style {
        name: "MOODY",
        prompt: "{prompt}, moody atmosphere, low key lighting, deep shadows, muted tones",
        negative: "bright, cheerful, flat lighting",
    },
    Style {
        name: "NONE",
        prompt: "{prompt}",
        negative: "",
    },
    Style {
        name: "NEUTRAL",
        prompt: "{prompt}, neutral colors, even lighting, natural look",
        negative: "oversaturated, dramatic lighting",
    },
    Style {
        name: "PHOTOGRAPHY",
        prompt: "photograph of {prompt}, natural light, sharp focus, realistic",
        negative: "painting, drawing, cartoon, 3d render",
    },
    Style {
        name: "PORTRAIT",
        prompt: "portrait of {prompt}, soft key light, detailed face, blurred background",
        negative: "distorted face, harsh shadows, cropped head",
    },
    Style {
        name: "RAYTRACED",
        prompt: "ray traced render of {prompt}, global illumination, realistic reflections",
        negative: "flat shading, low poly, sketch",
    },
    Style {
        name: "RENDER_3D",
        prompt: "3d render of {prompt}, octane style, studio lighting, smooth materials",
        negative: "photo, sketch, flat 2d",
    },
    Style {
        name: "RETRO",
        prompt: "retro style image of {prompt}, vintage palette, 1970s aesthetic, faded print",
        negative: "modern, futuristic, glossy",
    },
    Style {
        name: "SKETCH_BW",
        prompt: "black and white pencil sketch of {prompt}, graphite, hatching",
        negative: "color, photo, painted",
    },
    Style {
        name: "SKETCH_COLOR",
        prompt: "colored pencil sketch of {prompt}, loose strokes, paper texture",
        negative: "photo, 3d render",
    },
    Style {
        name: "STOCK_PHOTO",
        prompt: "stock photo of {prompt}, clean composition, bright even lighting, professional",
        negative: "amateur, dark, cluttered",
    },
    Style {
        name: "VIBRANT",
        prompt: "{prompt}, vibrant saturated colors, punchy contrast",
        negative: "dull, muted, washed out",
    },
    Style {
        name: "UNPROCESSED",
        prompt: "{prompt}",
        negative: "",
    },
];

/// The preset of `table` named `name` (case-insensitive).
pub fn find(table: &'static [Style], name: &str) -> Option<&'static Style> {
    table
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name.trim()))
}

/// The names of a table, for error messages.
pub fn names(table: &[Style]) -> Vec<&'static str> {
    table.iter().map(|s| s.name).collect()
}

impl Style {
    /// The prompt and negative prompt with the preset applied.
    pub fn apply(&self, prompt: &str, negative: Option<&str>) -> (String, Option<String>) {
        let p = self.prompt.replace("{prompt}", prompt);
        let n = match (negative.filter(|n| !n.trim().is_empty()), self.negative) {
            (None, "") => None,
            (None, extra) => Some(extra.to_string()),
            (Some(n), "") => Some(n.to_string()),
            (Some(n), extra) => Some(format!("{n}, {extra}")),
        };
        (p, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_wrap_the_prompt_and_extend_the_negative() {
        let vivid = find(OPENAI, "Vivid").unwrap();
        let (p, n) = vivid.apply("a fox", None);
        assert!(p.starts_with("a fox, vivid colors"), "{p}");
        assert_eq!(n.as_deref(), Some(vivid.negative));
        let (_, n) = vivid.apply("a fox", Some("blurry"));
        assert_eq!(n.unwrap(), format!("blurry, {}", vivid.negative));
        assert!(find(OPENAI, "cinematic").is_none());
        assert_eq!(names(OPENAI), ["vivid", "natural"]);
        for s in OPENAI {
            assert!(s.prompt.contains("{prompt}"), "{}", s.name);
        }
    }

    #[test]
    fn leonardo_presets_cover_the_spec_enum() {
        // The spec's `sd_generation_style` enum, in its order.
        let spec = [
            "ANIME",
            "BOKEH",
            "CINEMATIC",
            "CINEMATIC_CLOSEUP",
            "CREATIVE",
            "DYNAMIC",
            "ENVIRONMENT",
            "FASHION",
            "FILM",
            "FOOD",
            "GENERAL",
            "HDR",
            "ILLUSTRATION",
            "LEONARDO",
            "LONG_EXPOSURE",
            "MACRO",
            "MINIMALISTIC",
            "MONOCHROME",
            "MOODY",
            "NONE",
            "NEUTRAL",
            "PHOTOGRAPHY",
            "PORTRAIT",
            "RAYTRACED",
            "RENDER_3D",
            "RETRO",
            "SKETCH_BW",
            "SKETCH_COLOR",
            "STOCK_PHOTO",
            "VIBRANT",
            "UNPROCESSED",
        ];
        assert_eq!(names(LEONARDO), spec);
        for s in LEONARDO {
            assert_eq!(s.prompt.matches("{prompt}").count(), 1, "{}", s.name);
        }
        // The default and the "no style" names run the prompt as given.
        for plain in ["DYNAMIC", "NONE", "UNPROCESSED"] {
            let s = find(LEONARDO, plain).unwrap();
            assert_eq!(
                s.apply("a fox", Some("blur")),
                ("a fox".into(), Some("blur".into()))
            );
            assert_eq!(s.apply("a fox", None), ("a fox".into(), None));
        }
        let c = find(LEONARDO, "cinematic").unwrap();
        let (p, n) = c.apply("a fox", None);
        assert_eq!(
            p,
            "cinematic film still of a fox, dramatic lighting, anamorphic, color graded"
        );
        assert_eq!(n.as_deref(), Some(c.negative));
        assert!(find(LEONARDO, "vivid").is_none());
    }
}
