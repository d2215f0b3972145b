//! Tasks and their inputs. `TaskInput::parse` is the one place a task's input is validated:
//! every dialect builds a `(task, input)` pair and calls it, so field names, ranges and messages
//! are the same everywhere. Input images are references (`ImageRef`): an asset id or a `data:`
//! URL; the API stores data URLs as assets before enqueueing, so a stored job's input only names
//! asset ids.

use base64::Engine;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::generate::GenerateInput;
use crate::limits::Limits;

/// Output encodings a task can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Png,
    #[serde(alias = "jpg")]
    Jpeg,
    Webp,
}

impl OutputFormat {
    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fit {
    /// Exactly width x height (aspect may change).
    Exact,
    /// Fit inside width x height, keeping the aspect ratio.
    Contain,
    /// Cover width x height, keeping the aspect ratio, then crop the centre.
    Cover,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Nearest,
    Bilinear,
    CatmullRom,
    #[serde(alias = "lanczos")]
    Lanczos3,
}

/// `upscale`: Lanczos upscaling by a factor or to a target size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpscaleInput {
    /// Asset id or `data:` URL.
    pub image: String,
    /// Scale factor, 1 to 8. Give either `factor` or `width`/`height`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f32>,
    /// Target width (the height follows the aspect ratio unless given too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
    /// 1 to 100 for JPEG and WebP (100 = lossless WebP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
}

/// `resize`: resize to a size with a fit mode and a filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeInput {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Default `contain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<Fit>,
    /// Default `lanczos3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
}

/// `pixelate`: pixel-art look on a grid, with an optional palette.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PixelateInput {
    pub image: String,
    /// Cells along the longer side, 2 to 512.
    pub grid_size: u32,
    /// Reduce to this many colours (2 to 256). Exclusive with `palette`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palette_size: Option<u16>,
    /// Explicit palette as `#rrggbb` colours (1 to 256). Exclusive with `palette_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palette: Option<Vec<String>>,
    /// Remove isolated single cells.
    #[serde(default)]
    pub remove_noise: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
}

/// `convert`: re-encode as PNG, JPEG or WebP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertInput {
    pub image: String,
    pub format: OutputFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u8>,
}

/// A validated task input.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskInput {
    Upscale(UpscaleInput),
    Resize(ResizeInput),
    Pixelate(PixelateInput),
    Convert(ConvertInput),
    Txt2img(GenerateInput),
    Img2img(GenerateInput),
    Inpaint(GenerateInput),
}

/// Names of the tasks this server knows, for error messages and discovery.
pub const TASKS: &[&str] = &[
    "txt2img", "img2img", "inpaint", "upscale", "resize", "pixelate", "convert",
];

impl TaskInput {
    /// Parse and validate `input` for `task`. Errors name the field as `input.<name>`.
    pub fn parse(task: &str, input: serde_json::Value, limits: &Limits) -> Result<TaskInput> {
        let parsed = TaskInput::from_json(task, input)?;
        parsed.check(limits)?;
        Ok(parsed)
    }

    /// Read `input` for `task` (types only; `check` validates). Errors name the field as
    /// `input.<name>`.
    pub fn from_json(task: &str, input: serde_json::Value) -> Result<TaskInput> {
        let parsed = match task {
            "upscale" => TaskInput::Upscale(from_json(input)?),
            "resize" => TaskInput::Resize(from_json(input)?),
            "pixelate" => TaskInput::Pixelate(from_json(input)?),
            "convert" => TaskInput::Convert(from_json(input)?),
            "txt2img" => TaskInput::Txt2img(from_json(input)?),
            "img2img" => TaskInput::Img2img(from_json(input)?),
            "inpaint" => TaskInput::Inpaint(from_json(input)?),
            other => {
                return Err(Error::invalid(
                    "task",
                    format!("unknown task `{other}`; known tasks: {}", TASKS.join(", ")),
                ))
            }
        };
        Ok(parsed)
    }

    /// A generation task's input: `task` is `txt2img`, `img2img` or `inpaint`.
    pub fn generation_of(task: &str, g: GenerateInput) -> Result<TaskInput> {
        Ok(match task {
            "txt2img" => TaskInput::Txt2img(g),
            "img2img" => TaskInput::Img2img(g),
            "inpaint" => TaskInput::Inpaint(g),
            other => {
                return Err(Error::invalid(
                    "task",
                    format!("`{other}` is not a generation task (txt2img, img2img, inpaint)"),
                ))
            }
        })
    }

    /// Validate the input: the task's rules and the server's limits. Errors name the field
    /// as `input.<name>`.
    pub fn check(&self, limits: &Limits) -> Result<()> {
        self.validate(limits).map_err(|e| e.under("input"))
    }

    pub fn task(&self) -> &'static str {
        match self {
            TaskInput::Upscale(_) => "upscale",
            TaskInput::Resize(_) => "resize",
            TaskInput::Pixelate(_) => "pixelate",
            TaskInput::Convert(_) => "convert",
            TaskInput::Txt2img(_) => "txt2img",
            TaskInput::Img2img(_) => "img2img",
            TaskInput::Inpaint(_) => "inpaint",
        }
    }

    /// The normalized input as stored with the job.
    pub fn to_value(&self) -> serde_json::Value {
        let v = match self {
            TaskInput::Upscale(i) => serde_json::to_value(i),
            TaskInput::Resize(i) => serde_json::to_value(i),
            TaskInput::Pixelate(i) => serde_json::to_value(i),
            TaskInput::Convert(i) => serde_json::to_value(i),
            TaskInput::Txt2img(g) | TaskInput::Img2img(g) | TaskInput::Inpaint(g) => {
                serde_json::to_value(g)
            }
        };
        v.expect("task inputs serialize")
    }

    /// The input images, by field name, so the API can resolve and replace them.
    pub fn images_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        match self {
            TaskInput::Upscale(i) => vec![("image", &mut i.image)],
            TaskInput::Resize(i) => vec![("image", &mut i.image)],
            TaskInput::Pixelate(i) => vec![("image", &mut i.image)],
            TaskInput::Convert(i) => vec![("image", &mut i.image)],
            TaskInput::Txt2img(g) | TaskInput::Img2img(g) | TaskInput::Inpaint(g) => g.images_mut(),
        }
    }

    /// The first (main) input image, if the task takes one.
    pub fn image(&self) -> Option<&str> {
        match self {
            TaskInput::Upscale(i) => Some(&i.image),
            TaskInput::Resize(i) => Some(&i.image),
            TaskInput::Pixelate(i) => Some(&i.image),
            TaskInput::Convert(i) => Some(&i.image),
            TaskInput::Txt2img(g) | TaskInput::Img2img(g) | TaskInput::Inpaint(g) => {
                g.image.as_deref()
            }
        }
    }

    /// The generation input of `txt2img`, `img2img` and `inpaint`.
    pub fn generation(&self) -> Option<&GenerateInput> {
        match self {
            TaskInput::Txt2img(g) | TaskInput::Img2img(g) | TaskInput::Inpaint(g) => Some(g),
            _ => None,
        }
    }

    pub fn generation_mut(&mut self) -> Option<&mut GenerateInput> {
        match self {
            TaskInput::Txt2img(g) | TaskInput::Img2img(g) | TaskInput::Inpaint(g) => Some(g),
            _ => None,
        }
    }

    /// Output encoding and quality.
    pub fn output(&self) -> (OutputFormat, Option<u8>) {
        match self {
            TaskInput::Upscale(i) => (i.format.unwrap_or(OutputFormat::Png), i.quality),
            TaskInput::Resize(i) => (i.format.unwrap_or(OutputFormat::Png), i.quality),
            TaskInput::Pixelate(i) => (i.format.unwrap_or(OutputFormat::Png), i.quality),
            TaskInput::Convert(i) => (i.format, i.quality),
            TaskInput::Txt2img(g) | TaskInput::Img2img(g) | TaskInput::Inpaint(g) => {
                (g.format.unwrap_or(OutputFormat::Png), g.quality)
            }
        }
    }

    /// Size of the output for an input image of `width` x `height`.
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        let keep_aspect = |w: Option<u32>, h: Option<u32>| match (w, h) {
            (Some(w), Some(h)) => (w, h),
            (Some(w), None) => (w, scale_side(height, w as f64 / width.max(1) as f64)),
            (None, Some(h)) => (scale_side(width, h as f64 / height.max(1) as f64), h),
            (None, None) => (width, height),
        };
        match self {
            TaskInput::Upscale(i) => match i.factor {
                Some(f) => (scale_side(width, f as f64), scale_side(height, f as f64)),
                None => keep_aspect(i.width, i.height),
            },
            TaskInput::Resize(i) => match (i.fit.unwrap_or(Fit::Contain), i.width, i.height) {
                (Fit::Contain, Some(w), Some(h)) => {
                    let s = (w as f64 / width.max(1) as f64).min(h as f64 / height.max(1) as f64);
                    (scale_side(width, s), scale_side(height, s))
                }
                (_, w, h) => keep_aspect(w, h),
            },
            TaskInput::Pixelate(_) | TaskInput::Convert(_) => (width, height),
            TaskInput::Txt2img(g) | TaskInput::Img2img(g) | TaskInput::Inpaint(g) => {
                (g.width.unwrap_or(width), g.height.unwrap_or(height))
            }
        }
    }

    /// Check the output of this task on an input of `width` x `height` fits the limits.
    pub fn check_output_size(&self, width: u32, height: u32, limits: &Limits) -> Result<()> {
        let (w, h) = self.output_size(width, height);
        check_size("input", w, h, limits)
    }

    fn validate(&self, limits: &Limits) -> Result<()> {
        for (field, image) in self.clone().images_mut() {
            ImageRef::parse(image).map_err(|e| e.with_field(field))?;
        }
        if let Some(g) = self.generation() {
            return g.validate(self.task(), limits);
        }
        let (_, quality) = self.output();
        if let Some(q) = quality {
            if !(1..=100).contains(&q) {
                return Err(Error::invalid("quality", "must be between 1 and 100"));
            }
        }
        match self {
            TaskInput::Upscale(i) => {
                match (i.factor, i.width, i.height) {
                    (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                        return Err(Error::invalid(
                            "factor",
                            "give either `factor` or `width`/`height`, not both",
                        ))
                    }
                    (None, None, None) => {
                        return Err(Error::invalid(
                            "factor",
                            "required: a factor from 1 to 8, or a target `width`/`height`",
                        ))
                    }
                    (Some(f), _, _) if !(1.0..=8.0).contains(&f) => {
                        return Err(Error::invalid("factor", "must be between 1 and 8"))
                    }
                    _ => {}
                }
                check_sides(i.width, i.height, limits)
            }
            TaskInput::Resize(i) => {
                if i.width.is_none() && i.height.is_none() {
                    return Err(Error::invalid("width", "give `width`, `height` or both"));
                }
                if i.fit.is_some_and(|f| f != Fit::Contain)
                    && (i.width.is_none() || i.height.is_none())
                {
                    return Err(Error::invalid(
                        "fit",
                        "`exact` and `cover` need both `width` and `height`",
                    ));
                }
                check_sides(i.width, i.height, limits)
            }
            TaskInput::Pixelate(i) => {
                if !(2..=512).contains(&i.grid_size) {
                    return Err(Error::invalid("grid_size", "must be between 2 and 512"));
                }
                if i.palette_size.is_some() && i.palette.is_some() {
                    return Err(Error::invalid(
                        "palette",
                        "give either `palette` or `palette_size`, not both",
                    ));
                }
                if let Some(n) = i.palette_size {
                    if !(2..=256).contains(&n) {
                        return Err(Error::invalid("palette_size", "must be between 2 and 256"));
                    }
                }
                if let Some(colors) = &i.palette {
                    if colors.is_empty() || colors.len() > 256 {
                        return Err(Error::invalid("palette", "must hold 1 to 256 colours"));
                    }
                    for (n, c) in colors.iter().enumerate() {
                        if parse_hex_color(c).is_none() {
                            return Err(Error::invalid(
                                format!("palette[{n}]"),
                                format!("`{c}` is not a colour like #ff8800"),
                            ));
                        }
                    }
                }
                Ok(())
            }
            TaskInput::Convert(_) => Ok(()),
            TaskInput::Txt2img(_) | TaskInput::Img2img(_) | TaskInput::Inpaint(_) => Ok(()),
        }
    }
}

fn scale_side(side: u32, factor: f64) -> u32 {
    ((side as f64 * factor).round() as u32).max(1)
}

fn check_sides(width: Option<u32>, height: Option<u32>, limits: &Limits) -> Result<()> {
    for (name, v) in [("width", width), ("height", height)] {
        if let Some(v) = v {
            if v == 0 || v > limits.max_side {
                return Err(Error::invalid(
                    name,
                    format!("must be between 1 and {}", limits.max_side),
                ));
            }
        }
    }
    Ok(())
}

/// Check an image size against the pixel and side limits; `field` names the culprit.
pub fn check_size(field: &str, width: u32, height: u32, limits: &Limits) -> Result<()> {
    let pixels = width as u64 * height as u64;
    if width > limits.max_side || height > limits.max_side || pixels > limits.max_pixels {
        return Err(Error::invalid(
            field,
            format!(
                "the image would be {width}x{height} ({pixels} pixels); the limit is {} pixels and {} per side",
                limits.max_pixels, limits.max_side
            ),
        ));
    }
    Ok(())
}

/// Parses `#rrggbb`, `rrggbb`, `#rgb` or `rgb` (hex digits in either case;
/// surrounding whitespace is ignored).
pub fn parse_hex_color(s: &str) -> Option<[u8; 3]> {
    let s = s.trim();
    let hex = s.strip_prefix('#').unwrap_or(s);
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let digit = |i: usize| u8::from_str_radix(&hex[i..i + 1], 16).ok();
    match hex.len() {
        6 => {
            let byte = |i: usize| Some(digit(i)? * 16 + digit(i + 1)?);
            Some([byte(0)?, byte(2)?, byte(4)?])
        }
        3 => {
            let byte = |i: usize| Some(digit(i)? * 17);
            Some([byte(0)?, byte(1)?, byte(2)?])
        }
        _ => None,
    }
}

fn from_json<T: DeserializeOwned>(input: serde_json::Value) -> Result<T> {
    if !input.is_object() {
        return Err(Error::invalid("input", "must be a JSON object"));
    }
    crate::error::from_json(input).map_err(|e| e.under("input"))
}

/// A reference to an input image.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageRef {
    /// An asset id (`ast_…`).
    Asset(String),
    /// The decoded bytes of a `data:` URL and its declared media type.
    Data { mime: String, bytes: Vec<u8> },
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef> {
        if let Some(rest) = s.strip_prefix("data:") {
            let (meta, payload) = rest
                .split_once(',')
                .ok_or_else(|| Error::invalid("", "malformed data URL: no comma"))?;
            let mime = meta.split(';').next().unwrap_or("").to_string();
            if !meta.ends_with(";base64") {
                return Err(Error::invalid("", "data URLs must be base64-encoded"));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload.trim())
                .map_err(|e| Error::invalid("", format!("bad base64 in data URL: {e}")))?;
            Ok(ImageRef::Data { mime, bytes })
        } else if crate::id::is_valid(crate::id::ASSET, s) {
            Ok(ImageRef::Asset(s.to_string()))
        } else {
            Err(Error::invalid(
                "",
                "must be an asset id (ast_…) or a data: URL",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(task: &str, input: serde_json::Value) -> Result<TaskInput> {
        TaskInput::parse(task, input, &Limits::default())
    }
    const IMG: &str = "ast_01jd0000000000000000000000";

    #[test]
    fn upscale_validates_factor_and_names_fields() {
        assert!(parse("upscale", json!({"image": IMG, "factor": 2})).is_ok());
        let e = parse("upscale", json!({"image": IMG, "factor": 9})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.factor"));
        let e = parse("upscale", json!({"image": IMG})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.factor"));
        let e = parse("upscale", json!({"factor": 2})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.image"), "{e}");
        let e = parse("upscale", json!({"image": IMG, "factor": 2, "bogus": 1})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.bogus"), "{e}");
        let e = parse("upscale", json!({"image": IMG, "factor": "two"})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.factor"), "{e}");
        let e = parse("upscale", json!({"image": "nope", "factor": 2})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.image"));
        let e = parse("sharpen", json!({})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("task"));
    }

    #[test]
    fn output_sizes() {
        let t = parse("upscale", json!({"image": IMG, "factor": 2.5})).unwrap();
        assert_eq!(t.output_size(10, 4), (25, 10));
        let t = parse("upscale", json!({"image": IMG, "width": 100})).unwrap();
        assert_eq!(t.output_size(50, 20), (100, 40));
        let t = parse("resize", json!({"image": IMG, "width": 100, "height": 100})).unwrap();
        assert_eq!(t.output_size(200, 50), (100, 25));
        let t = parse(
            "resize",
            json!({"image": IMG, "width": 100, "height": 100, "fit": "cover"}),
        )
        .unwrap();
        assert_eq!(t.output_size(200, 50), (100, 100));
        let t = parse("upscale", json!({"image": IMG, "factor": 8})).unwrap();
        assert!(t.check_output_size(4000, 4000, &Limits::default()).is_err());
        assert!(t.check_output_size(100, 100, &Limits::default()).is_ok());
    }

    #[test]
    fn pixelate_palette_rules() {
        assert!(parse(
            "pixelate",
            json!({"image": IMG, "grid_size": 32, "palette": ["#fff", "000000"]})
        )
        .is_ok());
        let e = parse(
            "pixelate",
            json!({"image": IMG, "grid_size": 32, "palette": ["#fff", "red"]}),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.palette[1]"));
        let e = parse("pixelate", json!({"image": IMG, "grid_size": 1})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.grid_size"));
        let e = parse(
            "pixelate",
            json!({"image": IMG, "grid_size": 8, "palette_size": 4, "palette": ["#fff"]}),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.palette"));
    }

    #[test]
    fn convert_normalizes() {
        let t = parse(
            "convert",
            json!({"image": IMG, "format": "jpg", "quality": 80}),
        )
        .unwrap();
        assert_eq!(
            t.to_value(),
            json!({"image": IMG, "format": "jpeg", "quality": 80})
        );
        let e = parse(
            "convert",
            json!({"image": IMG, "format": "jpeg", "quality": 0}),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("input.quality"));
    }

    #[test]
    fn data_urls() {
        match ImageRef::parse("data:image/png;base64,aGVsbG8=").unwrap() {
            ImageRef::Data { mime, bytes } => {
                assert_eq!(mime, "image/png");
                assert_eq!(bytes, b"hello");
            }
            other => panic!("{other:?}"),
        }
        assert!(ImageRef::parse("data:image/png,raw").is_err());
        assert!(ImageRef::parse("data:image/png;base64,@@@").is_err());
    }

    #[test]
    fn hex_colors() {
        assert_eq!(parse_hex_color("#ff8000"), Some([255, 128, 0]));
        assert_eq!(parse_hex_color("ff8000"), Some([255, 128, 0]));
        assert_eq!(parse_hex_color("#FFfFfF"), Some([255, 255, 255]));
        assert_eq!(parse_hex_color("#f80"), Some([255, 136, 0]));
        assert_eq!(parse_hex_color("abc"), Some([170, 187, 204]));
        assert_eq!(parse_hex_color(" #000000 "), Some([0, 0, 0]));
        for bad in [
            "", "#", "#12345", "#1234567", "#gg0000", "#+f+f+f", "12", "#ff80", "#ff800é", "red",
        ] {
            assert_eq!(parse_hex_color(bad), None, "{bad:?}");
        }
    }
}
