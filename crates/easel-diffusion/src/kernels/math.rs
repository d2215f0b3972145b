//! Vectorised element-wise math on `f32` slices: `exp`, SiLU, `erf` and GELU (with GEGLU and
//! CLIP's quick GELU), the row softmax, GroupNorm's statistics and affine step, and additions.
//!
//! Each loop is written once as plain scalar code (`#[inline(always)]`) and compiled again
//! inside functions that enable AVX-512 or AVX2+FMA, where the compiler vectorises it; the
//! widest level the CPU has is picked at run time (`level`), so one binary runs on any x86-64
//! and uses what the machine offers. Other architectures get the plain loop.
//!
//! `exp` is Cephes' `expf` (range reduction by ln 2 in two parts, a degree-6 polynomial, the
//! exponent written into the bits): within 2 ulp of the correctly rounded result on
//! [-87, 88]; inputs are clamped to ±88.376, below which the result is 0.

/// The widest vector level this CPU offers, detected once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Level {
    Avx512,
    Avx2,
    Plain,
}

pub fn level() -> Level {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl")
            {
                return Level::Avx512;
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                return Level::Avx2;
            }
        }
        Level::Plain
    })
}

/// Define `pub fn $name($args)` that runs `$body` compiled for the best available level
/// (through [`vectorized`]).
macro_rules! multiversion {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            $crate::kernels::math::vectorized(#[inline(always)] || body($($arg),*))
        }
    };
}

/// Run `f` compiled for the best available level: `f` (an `#[inline(always)]` closure or
/// function) is inlined into a copy of this function built for each level, so generic code
/// that `multiversion!` cannot take (const generics, borrowed state) vectorises too.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match level() {
            // SAFETY: the level says the CPU has these features.
            Level::Avx512 => return unsafe { avx512(f) },
            Level::Avx2 => return unsafe { avx2(f) },
            Level::Plain => {}
        }
    }
    f()
}

const EXP_HI: f32 = 88.376_26;
const EXP_LO: f32 = -88.376_26;

/// `e^x`, branch-free so that loops over it vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_LO, EXP_HI);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * z + r + 1.0;
    // 2^n through the exponent bits, n ∈ [-127, 127] (n = -127 gives 0): adding 2^23 + 127
    // leaves the integer n + 127 in the low mantissa bits, which the shift moves into the
    // exponent (no float→int conversion, which would not vectorise).
    let scale = f32::from_bits((n + 8_388_735.0).to_bits() << 23);
    y * scale
}

/// `x · sigmoid(x)`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

multiversion! {
    /// `x ← e^x` over the slice.
    pub fn exp_in_place(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            *x = exp(*x);
        }
    }
}

multiversion! {
    /// `x ← silu(x)` over the slice.
    pub fn silu_in_place(xs: &mut [f32]) {
        for x in xs.iter_mut() {
            *x = silu(*x);
        }
    }
}

multiversion! {
    /// `dst ← src·a + b`, then SiLU when `act`: GroupNorm's affine step over one channel.
    pub fn scale_shift(src: &[f32], dst: &mut [f32], a: f32, b: f32, act: bool) {
        if act {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = silu(x * a + b);
            }
        } else {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = x * a + b;
            }
        }
    }
}

multiversion! {
    /// The sum of the slice and the sum of its squared deviations from `mean` (0 for the
    /// first pass), accumulated in `f64` over blocks of `f32` lanes.
    pub fn sum_and_sq_dev(xs: &[f32], mean: f32) -> (f64, f64) {
        let mut s = 0f64;
        let mut q = 0f64;
        for chunk in xs.chunks(256) {
            let mut ls = [0f32; 16];
            let mut lq = [0f32; 16];
            let mut it = chunk.chunks_exact(16);
            for c in &mut it {
                for i in 0..16 {
                    ls[i] += c[i];
                    let d = c[i] - mean;
                    lq[i] += d * d;
                }
            }
            for &v in it.remainder() {
                ls[0] += v;
                let d = v - mean;
                lq[0] += d * d;
            }
            s += ls.iter().map(|&v| v as f64).sum::<f64>();
            q += lq.iter().map(|&v| v as f64).sum::<f64>();
        }
        (s, q)
    }
}

multiversion! {
    /// `dst ← dst + src`, element by element.
    pub fn add_in_place(dst: &mut [f32], src: &[f32]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    }
}

multiversion! {
    /// `x ← x + a` over the slice.
    pub fn add_scalar(xs: &mut [f32], a: f32) {
        for x in xs.iter_mut() {
            *x += a;
        }
    }
}

/// `erf(x)`, branch-free: Abramowitz and Stegun's 7.1.26 (a degree-5 polynomial in
/// `t = 1/(1 + p·|x|)` times `e^(−x²)`), with erf's odd symmetry: absolute error below
/// 1.5e-7 in exact arithmetic, 6.5e-7 as evaluated in `f32` (the worst near |x| ≈ 0.04, where
/// `1 − p·e^(−x²)` cancels; GELU scales it by `x/2`).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

/// GELU with the exact (erf) form: `x · (1 + erf(x/√2)) / 2`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

multiversion! {
    /// `dst ← gelu(src)`, element by element.
    pub fn gelu_into(src: &[f32], dst: &mut [f32]) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = gelu(x);
        }
    }
}

multiversion! {
    /// `dst ← src · sigmoid(1.702·src)` (CLIP's quick GELU), element by element.
    pub fn quick_gelu_into(src: &[f32], dst: &mut [f32]) {
        for (d, &x) in dst.iter_mut().zip(src) {
            *d = x / (1.0 + exp(-1.702 * x));
        }
    }
}

multiversion! {
    /// GEGLU over one row: `dst[j] ← value[j] · gelu(gate[j])`.
    pub fn geglu_row(value: &[f32], gate: &[f32], dst: &mut [f32]) {
        for ((d, &v), &g) in dst.iter_mut().zip(value).zip(gate) {
            *d = v * gelu(g);
        }
    }
}

/// Maximum of a slice in 16 lanes.
#[inline(always)]
fn lane_max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut it = xs.chunks_exact(16);
    for c in &mut it {
        for i in 0..16 {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    it.remainder()
        .iter()
        .chain(acc.iter())
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

multiversion! {
    /// `x ← e^(x − max)` over the row; returns the sum of the results, by which the caller
    /// divides (after the values multiply, where there are fewer numbers to divide).
    pub fn exp_row(xs: &mut [f32]) -> f32 {
        let m = lane_max(xs);
        let mut acc = [0f32; 16];
        let mut it = xs.chunks_exact_mut(16);
        for c in &mut it {
            for i in 0..16 {
                let e = exp(c[i] - m);
                c[i] = e;
                acc[i] += e;
            }
        }
        let mut s = acc.iter().sum::<f32>();
        for x in it.into_remainder() {
            *x = exp(*x - m);
            s += *x;
        }
        s
    }
}

/// Softmax of one row in place.
pub fn softmax_row(xs: &mut [f32]) {
    let inv = 1.0 / exp_row(xs);
    for x in xs.iter_mut() {
        *x *= inv;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.013;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(-200.0), 0.0);
        assert!(exp(200.0).is_finite());
        let mut xs: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.05).collect();
        let want: Vec<f32> = xs.iter().map(|&x| exp(x)).collect();
        exp_in_place(&mut xs);
        assert_eq!(xs, want, "the vectorised loop computes the scalar function");
    }

    #[test]
    fn silu_and_softmax_match_their_definitions() {
        for i in 0..2000 {
            let x = (i as f32 - 1000.0) * 0.02;
            let want = x as f64 / (1.0 + (-(x as f64)).exp());
            assert!((silu(x) as f64 - want).abs() <= 1e-6 * want.abs().max(1e-3));
        }
        let mut row: Vec<f32> = (0..77)
            .map(|i| ((i * 37) % 11) as f32 * 0.7 - 3.0)
            .collect();
        let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        let want: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp() / z).collect();
        softmax_row(&mut row);
        for (g, w) in row.iter().zip(&want) {
            assert!((*g as f64 - w).abs() <= 1e-6 * w, "{g} vs {w}");
        }
    }

    #[test]
    fn erf_and_gelu_match_the_exact_functions() {
        let mut worst = 0f64;
        for i in -6000..=6000 {
            let x = i as f32 * 1e-3;
            // libm's erf in f64 (candle's gelu_erf calls its f32 erff).
            let want = libm::erf(x as f64);
            worst = worst.max((erf(x) as f64 - want).abs());
            let g = 0.5 * x as f64 * (1.0 + libm::erf(x as f64 / std::f64::consts::SQRT_2));
            assert!(
                (gelu(x) as f64 - g).abs() <= 2e-7 * (x.abs() as f64).max(1.0),
                "{x}"
            );
        }
        // Near zero, where `1 − p·e^(−x²)` cancels, on a finer grid.
        for i in -50_000..=50_000 {
            let x = i as f32 * 1e-5;
            worst = worst.max((erf(x) as f64 - libm::erf(x as f64)).abs());
        }
        // A&S's 1.5e-7, plus the rounding of its f32 evaluation.
        assert!(worst < 7e-7, "worst absolute error {worst}");
        assert!(erf(0.0).abs() < 1e-7 && gelu(0.0) == 0.0);
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-10.0), -1.0);
        assert_eq!(gelu(-20.0), 0.0);
        let xs: Vec<f32> = (0..100).map(|i| i as f32 * 0.1 - 5.0).collect();
        let v: Vec<f32> = (0..100).map(|i| i as f32 * 0.01).collect();
        let mut out = vec![0f32; 100];
        geglu_row(&v, &xs, &mut out);
        let want: Vec<f32> = v.iter().zip(&xs).map(|(&v, &g)| v * gelu(g)).collect();
        assert_eq!(
            out, want,
            "the vectorised loop computes the scalar function"
        );
        let mut a = v.clone();
        add_in_place(&mut a, &xs);
        assert!(a
            .iter()
            .zip(v.iter().zip(&xs))
            .all(|(s, (x, y))| *s == x + y));
    }
}
