//! Colour quantization used by the pixel-art filter.
//!
//! [`build_palette`] picks `k` representative colours for a set of colours:
//! a variance-driven median cut gives a good starting palette (the box with
//! the largest squared error is split at the weighted median of its widest
//! channel), and a few rounds of k-means (Lloyd) then move each entry to the
//! mean of the colours nearest to it. Work is done on the histogram of
//! distinct colours, so repeated colours cost nothing extra.
//!
//! Distances are squared RGB differences weighted 2:4:3, a cheap
//! approximation of perceived difference (the eye is most sensitive to green).

use std::collections::HashMap;

pub(crate) type Rgb = [u8; 3];

/// Rough cap on colour-distance evaluations spent on k-means refinement.
const REFINE_BUDGET: usize = 40_000_000;
const MAX_REFINE_ROUNDS: usize = 8;

/// Weighted squared distance between two colours.
pub(crate) fn distance(a: Rgb, b: Rgb) -> u32 {
    let d = |i: usize| {
        let v = i32::from(a[i]) - i32::from(b[i]);
        (v * v) as u32
    };
    2 * d(0) + 4 * d(1) + 3 * d(2)
}

/// Index of the palette entry closest to `c` (the first one on ties).
/// `palette` must not be empty.
pub(crate) fn nearest(palette: &[Rgb], c: Rgb) -> usize {
    let mut best = 0;
    let mut best_d = u32::MAX;
    for (i, &p) in palette.iter().enumerate() {
        let d = distance(p, c);
        if d < best_d {
            best = i;
            best_d = d;
            if d == 0 {
                break;
            }
        }
    }
    best
}

/// Replaces every colour with its nearest palette entry, looking each
/// distinct colour up only once.
pub(crate) fn map_to_palette(colors: &mut [Rgb], palette: &[Rgb]) {
    let mut cache: HashMap<Rgb, Rgb> = HashMap::new();
    for c in colors {
        *c = *cache
            .entry(*c)
            .or_insert_with(|| palette[nearest(palette, *c)]);
    }
}

/// Chooses at most `k` (>= 1) colours representing `colors`. If there are no
/// more than `k` distinct colours they are returned unchanged.
pub(crate) fn build_palette(colors: &[Rgb], k: usize) -> Vec<Rgb> {
    let k = k.max(1);
    let mut hist = histogram(colors);
    if hist.len() <= k {
        return hist.into_iter().map(|e| e.color).collect();
    }
    let mut palette = median_cut(&mut hist, k);
    let rounds = (REFINE_BUDGET / (hist.len() * palette.len())).clamp(1, MAX_REFINE_ROUNDS);
    refine(&hist, &mut palette, rounds);
    palette
}

#[derive(Clone, Copy)]
struct Entry {
    color: Rgb,
    count: u64,
}

/// Distinct colours with their counts, in a deterministic order.
fn histogram(colors: &[Rgb]) -> Vec<Entry> {
    let mut counts: HashMap<Rgb, u64> = HashMap::new();
    for &c in colors {
        *counts.entry(c).or_insert(0) += 1;
    }
    let mut hist: Vec<Entry> = counts
        .into_iter()
        .map(|(color, count)| Entry { color, count })
        .collect();
    hist.sort_unstable_by_key(|e| e.color);
    hist
}

/// A box of the median cut: a range of the histogram plus its statistics.
struct ColorBox {
    start: usize,
    end: usize,
    count: u64,
    sum: [f64; 3],
    /// Total squared error around the mean, per channel.
    sse: [f64; 3],
}

impl ColorBox {
    fn new(entries: &[Entry], start: usize, end: usize) -> Self {
        let mut count = 0u64;
        let mut sum = [0f64; 3];
        let mut sum_sq = [0f64; 3];
        for e in &entries[start..end] {
            let n = e.count as f64;
            count += e.count;
            for ch in 0..3 {
                let v = f64::from(e.color[ch]);
                sum[ch] += n * v;
                sum_sq[ch] += n * v * v;
            }
        }
        let total = count as f64;
        let sse = std::array::from_fn(|ch| (sum_sq[ch] - sum[ch] * sum[ch] / total).max(0.0));
        ColorBox {
            start,
            end,
            count,
            sum,
            sse,
        }
    }

    fn error(&self) -> f64 {
        // Same weights as `distance`.
        2.0 * self.sse[0] + 4.0 * self.sse[1] + 3.0 * self.sse[2]
    }

    fn splittable(&self) -> bool {
        self.end - self.start >= 2
    }

    fn mean(&self) -> Rgb {
        let total = self.count as f64;
        std::array::from_fn(|ch| (self.sum[ch] / total).round().clamp(0.0, 255.0) as u8)
    }
}

fn median_cut(entries: &mut [Entry], k: usize) -> Vec<Rgb> {
    let mut boxes = vec![ColorBox::new(entries, 0, entries.len())];
    while boxes.len() < k {
        let Some((index, _)) = boxes
            .iter()
            .enumerate()
            .filter(|(_, b)| b.splittable())
            .max_by(|(_, a), (_, b)| a.error().total_cmp(&b.error()))
        else {
            break;
        };
        let b = boxes.swap_remove(index);
        let weights = [2.0, 4.0, 3.0];
        let channel = (0..3)
            .max_by(|&x, &y| (weights[x] * b.sse[x]).total_cmp(&(weights[y] * b.sse[y])))
            .unwrap_or(0);
        let slice = &mut entries[b.start..b.end];
        slice.sort_unstable_by_key(|e| (e.color[channel], e.color));

        // First index whose cumulative count reaches half the box; both
        // halves keep at least one distinct colour.
        let half = b.count.div_ceil(2);
        let mut acc = 0;
        let mut split = 1;
        for (i, e) in slice.iter().enumerate() {
            acc += e.count;
            if acc >= half {
                split = i + 1;
                break;
            }
        }
        let split = b.start + split.clamp(1, slice.len() - 1);
        boxes.push(ColorBox::new(entries, b.start, split));
        boxes.push(ColorBox::new(entries, split, b.end));
    }
    boxes.iter().map(ColorBox::mean).collect()
}

/// Lloyd's k-means rounds on the histogram; stops early when stable.
fn refine(hist: &[Entry], palette: &mut [Rgb], rounds: usize) {
    for _ in 0..rounds {
        let mut sums = vec![[0f64; 3]; palette.len()];
        let mut counts = vec![0u64; palette.len()];
        for e in hist {
            let i = nearest(palette, e.color);
            counts[i] += e.count;
            for (sum, &v) in sums[i].iter_mut().zip(&e.color) {
                *sum += e.count as f64 * f64::from(v);
            }
        }
        let mut changed = false;
        for (i, p) in palette.iter_mut().enumerate() {
            if counts[i] == 0 {
                continue; // keep an unused entry where it is
            }
            let n = counts[i] as f64;
            let mean: Rgb = std::array::from_fn(|ch| (sums[i][ch] / n).round() as u8);
            if mean != *p {
                *p = mean;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_colours_are_kept_exactly() {
        let colors = [[1, 2, 3], [4, 5, 6], [1, 2, 3]];
        let mut p = build_palette(&colors, 4);
        p.sort();
        assert_eq!(p, vec![[1, 2, 3], [4, 5, 6]]);
    }

    #[test]
    fn separates_obvious_clusters() {
        let mut colors = Vec::new();
        for i in 0..20u8 {
            colors.push([i, i, i]); // near black
            colors.push([255 - i, 0, 0]); // near red
            colors.push([0, 0, 255 - i]); // near blue
        }
        let palette = build_palette(&colors, 3);
        assert_eq!(palette.len(), 3);
        for target in [[10, 10, 10], [245, 0, 0], [0, 0, 245]] {
            let p = palette[nearest(&palette, target)];
            assert!(
                distance(p, target) < 9 * 100,
                "{p:?} too far from {target:?}"
            );
        }
    }

    #[test]
    fn palette_size_is_respected_for_many_colours() {
        let colors: Vec<Rgb> = (0..4096u32)
            .map(|i| {
                [
                    (i % 16 * 16) as u8,
                    (i / 16 % 16 * 16) as u8,
                    (i / 256 * 16) as u8,
                ]
            })
            .collect();
        for k in [2, 7, 16, 256] {
            let p = build_palette(&colors, k);
            assert!(p.len() <= k && p.len() >= k.min(2), "k={k} got {}", p.len());
        }
    }

    #[test]
    fn nearest_prefers_exact_match() {
        let palette = [[0, 0, 0], [255, 255, 255], [200, 10, 10]];
        assert_eq!(nearest(&palette, [200, 10, 10]), 2);
        assert_eq!(nearest(&palette, [20, 20, 20]), 0);
        assert_eq!(nearest(&palette, [230, 230, 230]), 1);
    }
}
