//! Leonardo's `presetStyle` values as prompt templates (`easel_core::style`).

use easel_core::style::Style;

/// Leonardo's `presetStyle` (the spec's `sd_generation_style` enum), as our own templates.
/// `DYNAMIC` (the spec's default), `NONE` and `UNPROCESSED` leave the prompt as given, so a
/// request without `presetStyle` runs its prompt unchanged; `GENERAL` and `LEONARDO` are
/// light; the others name a look.
pub(crate) const STYLES: &[Style] = &[
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

#[cfg(test)]
mod tests {
    use super::*;
    use easel_core::style::{find, names};

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
        assert_eq!(names(STYLES), spec);
        for s in STYLES {
            assert_eq!(s.prompt.matches("{prompt}").count(), 1, "{}", s.name);
        }
        // The default and the "no style" names run the prompt as given.
        for plain in ["DYNAMIC", "NONE", "UNPROCESSED"] {
            let s = find(STYLES, plain).unwrap();
            assert_eq!(
                s.apply("a fox", Some("blur")),
                ("a fox".into(), Some("blur".into()))
            );
            assert_eq!(s.apply("a fox", None), ("a fox".into(), None));
        }
        let c = find(STYLES, "cinematic").unwrap();
        let (p, n) = c.apply("a fox", None);
        assert_eq!(
            p,
            "cinematic film still of a fox, dramatic lighting, anamorphic, color graded"
        );
        assert_eq!(n.as_deref(), Some(c.negative));
        assert!(find(STYLES, "vivid").is_none());
    }
}
