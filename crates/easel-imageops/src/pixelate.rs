//! The pixel-art filter.
//!
//! [`pixelate()`] works in four steps:
//!
//! 1. **Reduce** the image to a grid of cells ([`pixelate_grid`]) by averaging
//!    all pixels of each cell, weighted by alpha so transparent pixels do not
//!    darken their neighbours. A cell whose mean alpha is below 128 becomes
//!    fully transparent, every other cell fully opaque.
//! 2. **Palette** (optional): map each opaque cell to a fixed palette, or to a
//!    palette of N colours chosen from the image by our quantizer (median cut
//!    refined with k-means, see the `quantize` module).
//! 3. **Clean up** (optional): a cell that matches none of its 8 neighbours
//!    takes the most common colour among them, which removes isolated single
//!    cells ("noise") while keeping lines and edges intact.
//! 4. **Expand** back to the original size with nearest neighbour, so every
//!    cell becomes a crisp uniform block.
//!
//! Cell boundaries: pixel column `x` belongs to cell column `x * gw / width`
//! (integer division), and likewise for rows, so cells differ in size by at
//! most one pixel when the grid does not divide the image evenly.

use std::borrow::Cow;

use image::{DynamicImage, RgbImage, RgbaImage};

use crate::quantize::{self, Rgb};
use crate::OpsError;

/// Smallest and largest accepted `grid_size`.
pub const GRID_SIZE_RANGE: std::ops::RangeInclusive<u32> = 2..=512;
/// Smallest and largest accepted `Palette::Size`.
pub const PALETTE_SIZE_RANGE: std::ops::RangeInclusive<u16> = 2..=256;
/// Most colours accepted in `Palette::Colors`.
pub const MAX_PALETTE_COLORS: usize = 256;

/// The colours the pixelated image may use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Palette {
    /// Keep each cell's average colour.
    #[default]
    Keep,
    /// Reduce to at most this many colours (2..=256), chosen from the image.
    Size(u16),
    /// Use only these colours (1..=256 of them); each cell takes the nearest.
    Colors(Vec<[u8; 3]>),
}

/// Parameters of [`pixelate()`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelateParams {
    /// Number of cells along the longer side, 2..=512 (capped at the image's
    /// size in pixels). The shorter side gets as many cells as keeps them
    /// roughly square.
    pub grid_size: u32,
    pub palette: Palette,
    /// Remove isolated single cells (see the module docs).
    pub remove_noise: bool,
}

/// A reduced cell: `None` is fully transparent.
type Cell = Option<Rgb>;

/// The cell grid (columns, rows) [`pixelate()`] uses for a `width` x `height`
/// image: `grid_size` cells along the longer side (at most one per pixel),
/// the shorter side in proportion (rounded, at least 1).
pub fn pixelate_grid(width: u32, height: u32, grid_size: u32) -> (u32, u32) {
    let (long, short) = (width.max(height), width.min(height));
    if long == 0 {
        return (0, 0);
    }
    let cells_long = grid_size.clamp(1, long);
    let cells_short = ((2 * u64::from(short) * u64::from(cells_long) + u64::from(long))
        / (2 * u64::from(long)))
    .clamp(1, u64::from(short).max(1)) as u32;
    if width >= height {
        (cells_long, cells_short)
    } else {
        (cells_short, cells_long)
    }
}

/// Gives `img` a pixel-art look; the result has the same size as the input.
///
/// Images with an alpha channel come back as RGBA8 (every pixel either fully
/// transparent or fully opaque); others as RGB8.
pub fn pixelate(img: &DynamicImage, params: &PixelateParams) -> Result<DynamicImage, OpsError> {
    validate(params)?;
    crate::resize::check_source(img)?;

    let (width, height) = (img.width(), img.height());
    let (gw, gh) = pixelate_grid(width, height, params.grid_size);
    let col_of: Vec<usize> = (0..width).map(|x| cell_index(x, gw, width)).collect();
    let row_of: Vec<usize> = (0..height).map(|y| cell_index(y, gh, height)).collect();

    let rgba: Cow<'_, RgbaImage> = match img {
        DynamicImage::ImageRgba8(buf) => Cow::Borrowed(buf),
        other => Cow::Owned(other.to_rgba8()),
    };
    let mut cells = reduce(&rgba, gw as usize, gh as usize, &col_of, &row_of);

    let exact_palette = match &params.palette {
        Palette::Keep => false,
        Palette::Size(n) => {
            let opaque: Vec<Rgb> = cells.iter().flatten().copied().collect();
            let palette = quantize::build_palette(&opaque, usize::from(*n));
            apply_palette(&mut cells, &palette);
            true
        }
        Palette::Colors(palette) => {
            apply_palette(&mut cells, palette);
            true
        }
    };

    if params.remove_noise {
        // With a palette, colours are discrete and must match exactly; with
        // free colours, "the same" means within a small tolerance.
        let tolerance = if exact_palette { 0 } else { 24 };
        remove_isolated(&mut cells, gw as usize, gh as usize, tolerance);
    }

    Ok(expand(
        &cells,
        gw as usize,
        &col_of,
        &row_of,
        img.color().has_alpha(),
    ))
}

fn validate(params: &PixelateParams) -> Result<(), OpsError> {
    if !GRID_SIZE_RANGE.contains(&params.grid_size) {
        return Err(OpsError::invalid(
            "grid_size",
            format!(
                "must be between {} and {}, got {}",
                GRID_SIZE_RANGE.start(),
                GRID_SIZE_RANGE.end(),
                params.grid_size
            ),
        ));
    }
    match &params.palette {
        Palette::Keep => {}
        Palette::Size(n) if !PALETTE_SIZE_RANGE.contains(n) => {
            return Err(OpsError::invalid(
                "palette",
                format!(
                    "the number of colours must be between {} and {}, got {n}",
                    PALETTE_SIZE_RANGE.start(),
                    PALETTE_SIZE_RANGE.end()
                ),
            ));
        }
        Palette::Size(_) => {}
        Palette::Colors(colors) if colors.is_empty() => {
            return Err(OpsError::invalid("palette", "the palette has no colours"));
        }
        Palette::Colors(colors) if colors.len() > MAX_PALETTE_COLORS => {
            return Err(OpsError::invalid(
                "palette",
                format!(
                    "at most {MAX_PALETTE_COLORS} colours are allowed, got {}",
                    colors.len()
                ),
            ));
        }
        Palette::Colors(_) => {}
    }
    Ok(())
}

/// Which of `cells` cells position `pos` (of `len`) falls into.
fn cell_index(pos: u32, cells: u32, len: u32) -> usize {
    (u64::from(pos) * u64::from(cells) / u64::from(len)) as usize
}

/// Alpha-weighted area average of every cell.
fn reduce(img: &RgbaImage, gw: usize, gh: usize, col_of: &[usize], row_of: &[usize]) -> Vec<Cell> {
    // Per cell: sum of r*a, g*a, b*a, sum of a, pixel count.
    let mut sums = vec![[0u64; 5]; gw * gh];
    for (y, row) in img.rows().enumerate() {
        let base = row_of[y] * gw;
        for (x, px) in row.enumerate() {
            let [r, g, b, a] = px.0.map(u64::from);
            let s = &mut sums[base + col_of[x]];
            s[0] += r * a;
            s[1] += g * a;
            s[2] += b * a;
            s[3] += a;
            s[4] += 1;
        }
    }
    sums.iter()
        .map(|&[r, g, b, a, n]| {
            // Mean alpha below 128: transparent.
            if n == 0 || a < 128 * n {
                return None;
            }
            let avg = |c: u64| ((2 * c + a) / (2 * a)) as u8;
            Some([avg(r), avg(g), avg(b)])
        })
        .collect()
}

fn apply_palette(cells: &mut [Cell], palette: &[Rgb]) {
    let mut opaque: Vec<Rgb> = cells.iter().flatten().copied().collect();
    quantize::map_to_palette(&mut opaque, palette);
    let mut mapped = opaque.into_iter();
    for c in cells.iter_mut().flatten() {
        if let Some(m) = mapped.next() {
            *c = m;
        }
    }
}

fn similar(a: Cell, b: Cell, tolerance: u8) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (0..3).all(|i| a[i].abs_diff(b[i]) <= tolerance),
        _ => false,
    }
}

/// Replaces each cell that is similar to none of its 8 neighbours with the
/// neighbour colour that is most common among them (needs at least two
/// agreeing neighbours, so genuinely noisy areas are left alone).
fn remove_isolated(cells: &mut [Cell], gw: usize, gh: usize, tolerance: u8) {
    let src = cells.to_vec();
    let mut neighbours: Vec<Cell> = Vec::with_capacity(8);
    for y in 0..gh {
        for x in 0..gw {
            let here = src[y * gw + x];
            neighbours.clear();
            for ny in y.saturating_sub(1)..=(y + 1).min(gh - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(gw - 1) {
                    if (nx, ny) != (x, y) {
                        neighbours.push(src[ny * gw + nx]);
                    }
                }
            }
            if neighbours.iter().any(|&n| similar(here, n, tolerance)) {
                continue;
            }
            let support = |c: Cell| {
                neighbours
                    .iter()
                    .filter(|&&n| similar(c, n, tolerance))
                    .count()
            };
            // First neighbour with the most support wins ties.
            let mut best: Option<(Cell, usize)> = None;
            for &n in &neighbours {
                let s = support(n);
                if best.is_none_or(|(_, bs)| s > bs) {
                    best = Some((n, s));
                }
            }
            if let Some((c, s)) = best {
                if s >= 2 {
                    cells[y * gw + x] = c;
                }
            }
        }
    }
}

fn expand(
    cells: &[Cell],
    gw: usize,
    col_of: &[usize],
    row_of: &[usize],
    alpha: bool,
) -> DynamicImage {
    let (width, height) = (col_of.len() as u32, row_of.len() as u32);
    if alpha {
        let mut out = RgbaImage::new(width, height);
        for (y, row) in out.rows_mut().enumerate() {
            let base = row_of[y] * gw;
            for (x, px) in row.enumerate() {
                px.0 = match cells[base + col_of[x]] {
                    Some([r, g, b]) => [r, g, b, 255],
                    None => [0, 0, 0, 0],
                };
            }
        }
        DynamicImage::ImageRgba8(out)
    } else {
        let mut out = RgbImage::new(width, height);
        for (y, row) in out.rows_mut().enumerate() {
            let base = row_of[y] * gw;
            for (x, px) in row.enumerate() {
                // Without alpha every cell is opaque.
                px.0 = cells[base + col_of[x]].unwrap_or([0, 0, 0]);
            }
        }
        DynamicImage::ImageRgb8(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_follows_aspect_ratio() {
        assert_eq!(pixelate_grid(200, 100, 32), (32, 16));
        assert_eq!(pixelate_grid(100, 200, 32), (16, 32));
        assert_eq!(pixelate_grid(300, 100, 10), (10, 3));
        assert_eq!(pixelate_grid(1000, 1, 64), (64, 1));
        // Never more cells than pixels.
        assert_eq!(pixelate_grid(40, 20, 512), (40, 20));
    }

    #[test]
    fn isolated_cell_is_replaced_but_lines_survive() {
        let a = Some([0, 0, 0]);
        let b = Some([255, 255, 255]);
        // 5x5 of `a` with a single `b` in the middle.
        let mut cells = vec![a; 25];
        cells[12] = b;
        remove_isolated(&mut cells, 5, 5, 0);
        assert!(cells.iter().all(|&c| c == a));

        // A diagonal line of `b` is kept: each cell has a diagonal neighbour.
        let mut cells = vec![a; 25];
        for i in 0..5 {
            cells[i * 5 + i] = b;
        }
        let before = cells.clone();
        remove_isolated(&mut cells, 5, 5, 0);
        assert_eq!(cells, before);
    }
}
