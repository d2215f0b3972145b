//! PyTorch-compatible CPU random numbers.
//!
//! [`TorchRng`] reproduces
//! `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)`,
//! including how consecutive draws from one generator continue the stream, so a seeded run gives
//! the same initial latents and per-step noise as diffusers (and ComfyUI's CPU generator).
//!
//! What PyTorch does, and what this module repeats:
//!
//! * The engine is MT19937 (`at::mt19937`), seeded with the standard `init_genrand` from the low
//!   32 bits of the 64-bit seed. `random()` is one 32-bit output; `random64()` is two outputs
//!   joined as `(first << 32) | second`.
//! * A float32 uniform is `(random() & (2^24 - 1)) * 2^-24`; a float64 uniform is
//!   `(random64() & (2^53 - 1)) * 2^-53`.
//! * A contiguous float32 tensor with at least 16 elements (`normal_fill`): every element is
//!   first filled with a float32 uniform, then each full block of 16 is turned into normals in
//!   place by Box-Muller over the pairs `(j, j + 8)`: `u1 = 1 - U[j]`, `u2 = U[j + 8]`,
//!   `r = sqrt(-2 ln u1)`, `theta = 2 pi u2`, `out[j] = r cos theta`, `out[j + 8] = r sin theta`.
//!   When the size is not a multiple of 16, 16 fresh uniforms are drawn into the *last* 16
//!   positions (overlapping the last full block) and that window is converted again, so such a
//!   draw consumes `n + 16` engine outputs.
//! * Fewer than 16 elements take the scalar path, `at::normal_distribution<double>`: two float64
//!   uniforms `u1`, `u2`, `r = sqrt(-2 log1p(-u2))`, `theta = 2 pi u1`; it returns `r cos theta`
//!   and caches `r sin theta` in the generator, and the next scalar sample returns the cached
//!   value without drawing. The block path neither reads nor clears that cache, so a cached value
//!   survives large draws and is the first value of the next small one. Values are computed in
//!   double and rounded to float32.
//!
//! Precision: on x86-64 (AVX2, and AVX512 machines, which use the AVX2 kernel for this op) the
//! 16-wide conversion runs `log256_ps` / `sincos256_ps` from ATen's `avx_mathfun.h`, Cephes-style
//! float32 polynomial approximations, compiled by GCC with multiply-add contraction. This module
//! evaluates the same polynomials in the same order with the same fused multiply-adds, so it
//! gives PyTorch's x86-64 bits exactly (every value of the reference draws is bit-identical).
//! PyTorch builds without AVX2 (`ATEN_CPU_CAPABILITY=default`, and e.g. ARM) use libm
//! `logf`/`cosf`/`sinf` there instead; those differ from these values in the last bits (at most
//! about 1.2e-6 on the reference draws). The scalar path uses the platform's double-precision
//! `log1p`/`sin`/`cos` like PyTorch does, and matches it after rounding to float32.

use std::f64::consts::PI;

use candle_core::{Device, Result, Tensor};

use crate::noise::NoiseSource;

/// A seeded source of standard normal float32 values, bit-compatible with a PyTorch CPU
/// generator (`torch.Generator("cpu").manual_seed(seed)`) used through `torch.randn`.
#[derive(Clone)]
pub struct TorchRng {
    mt: Mt19937,
    /// The second value of the last scalar Box-Muller pair (`next_double_normal_sample`).
    cached_normal: Option<f64>,
}

impl TorchRng {
    /// A generator in the state `torch.Generator("cpu").manual_seed(seed)` leaves it in.
    pub fn new(seed: u64) -> TorchRng {
        TorchRng {
            mt: Mt19937::new(seed),
            cached_normal: None,
        }
    }

    /// The next `n` standard normal f32 values exactly as `torch.randn(n)` would give them
    /// (vectorized path for n >= 16, scalar path below).
    pub fn randn_vec(&mut self, n: usize) -> Vec<f32> {
        if n < 16 {
            // `normal * std + mean` with std 1 and mean 0, as torch applies it (turns -0 into +0).
            return (0..n).map(|_| (self.normal_f64() + 0.0) as f32).collect();
        }
        let mut out: Vec<f32> = (0..n).map(|_| self.uniform_f32()).collect();
        let mut blocks = out.chunks_exact_mut(16);
        for block in &mut blocks {
            box_muller_16(block);
        }
        if !blocks.into_remainder().is_empty() {
            let tail = &mut out[n - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            box_muller_16(tail);
        }
        out
    }

    /// `at::uniform_real_distribution<float>(0, 1)`: 24 random bits.
    fn uniform_f32(&mut self) -> f32 {
        (self.mt.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0)
    }

    /// `at::uniform_real_distribution<double>(0, 1)`: 53 bits of `random64()`.
    fn uniform_f64(&mut self) -> f64 {
        let hi = u64::from(self.mt.next_u32());
        let lo = u64::from(self.mt.next_u32());
        (((hi << 32) | lo) & ((1 << 53) - 1)) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `at::normal_distribution<double>(0, 1)` with the generator's cached second sample.
    fn normal_f64(&mut self) -> f64 {
        if let Some(v) = self.cached_normal.take() {
            return v;
        }
        let u1 = self.uniform_f64();
        let u2 = self.uniform_f64();
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * PI * u1;
        self.cached_normal = Some(r * theta.sin());
        r * theta.cos()
    }
}

impl NoiseSource for TorchRng {
    fn randn(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        let n = shape.iter().product();
        Tensor::from_vec(self.randn_vec(n), shape, device)
    }
}

/// Box-Muller in place over 16 uniforms, as ATen's `normal_fill_16_AVX2` (mean 0, std 1).
fn box_muller_16(block: &mut [f32]) {
    // `_mm256_set1_ps(2.0f * c10::pi<double>)`: computed in double, rounded to float.
    const TWO_PI: f32 = (2.0 * PI) as f32;
    for j in 0..8 {
        let u1 = 1.0 - block[j]; // [0, 1) -> (0, 1]
        let u2 = block[j + 8];
        let radius = (-2.0 * log_ps(u1)).sqrt();
        let (sin, cos) = sincos_ps(TWO_PI * u2);
        // torch stores `fmadd(n, std, mean)`; with std 1 and mean 0 that is `n + 0`.
        block[j] = radius * cos + 0.0;
        block[j + 8] = radius * sin + 0.0;
    }
}

// Cephes float32 constants as `avx_mathfun.h` spells them: double literals stored as float
// (some with more digits than a float keeps, hence the `excessive_precision` allowances).
const LOG_P: [f32; 9] = [
    7.037_683_629_2e-2_f64 as f32,
    -1.151_461_031_0e-1_f64 as f32,
    1.167_699_874_0e-1_f64 as f32,
    -1.242_014_084_6e-1_f64 as f32,
    1.424_932_278_7e-1_f64 as f32,
    -1.666_805_766_5e-1_f64 as f32,
    2.000_071_476_5e-1_f64 as f32,
    -2.499_999_399_3e-1_f64 as f32,
    3.333_333_117_4e-1_f64 as f32,
];
const LOG_Q1: f32 = -2.121_944_40e-4_f64 as f32;
#[allow(clippy::excessive_precision)]
const LOG_Q2: f32 = 0.693_359_375;
const SQRT_HALF: f32 = std::f64::consts::FRAC_1_SQRT_2 as f32;
const FOUR_OVER_PI: f32 = 1.273_239_544_735_16_f64 as f32;
const MINUS_DP1: f32 = -0.785_156_25;
#[allow(clippy::excessive_precision)]
const MINUS_DP2: f32 = -2.418_756_484_985_351_562_5e-4_f64 as f32;
#[allow(clippy::excessive_precision)]
const MINUS_DP3: f32 = -3.774_894_977_445_941_08e-8_f64 as f32;
const SIN_P: [f32; 3] = [
    -1.951_529_589_1e-4_f64 as f32,
    8.332_160_873_6e-3_f64 as f32,
    -1.666_665_461_1e-1_f64 as f32,
];
const COS_P: [f32; 3] = [
    2.443_315_711_809_948e-5_f64 as f32,
    -1.388_731_625_493_765e-3_f64 as f32,
    4.166_664_568_298_827e-2_f64 as f32,
];

// The two functions below follow one lane of `log256_ps` and `sincos256_ps`. Every product
// that GCC contracts into its following addition there is a `mul_add` here; the bits depend on
// it.

/// Natural logarithm of a float32 in (0, 1] (NaN for x <= 0), as `log256_ps`.
fn log_ps(x: f32) -> f32 {
    if x <= 0.0 {
        return f32::NAN;
    }
    // Cut off subnormals, then split into exponent and a mantissa in [0.5, 1).
    let bits = x.max(f32::MIN_POSITIVE).to_bits();
    let mut e = ((bits >> 23) as i32 - 127) as f32 + 1.0;
    let m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    let x = if m < SQRT_HALF {
        e -= 1.0;
        (m - 1.0) + m
    } else {
        m - 1.0
    };
    let z = x * x;
    let mut y = LOG_P[0];
    for &p in &LOG_P[1..] {
        y = y.mul_add(x, p);
    }
    y *= x;
    y = y.mul_add(z, e * LOG_Q1);
    y = (-z).mul_add(0.5, y);
    e.mul_add(LOG_Q2, x + y)
}

/// `(sin x, cos x)` of a float32, as `sincos256_ps` (accurate for |x| < 8192).
fn sincos_ps(x: f32) -> (f32, f32) {
    let sign_in = x.to_bits() & 0x8000_0000;
    let x = x.abs();
    // Octant j, rounded up to even; the reduced argument is x - j * pi/4.
    let j = (((x * FOUR_OVER_PI) as i32) + 1) & !1;
    let y = j as f32;
    let sin_sign = sign_in ^ (((j & 4) as u32) << 29);
    let cos_sign = ((!(j - 2) & 4) as u32) << 29;
    let use_sin_poly_for_sin = (j & 2) == 0;

    let x = y.mul_add(MINUS_DP1, x);
    let x = y.mul_add(MINUS_DP2, x);
    let x = y.mul_add(MINUS_DP3, x);
    let z = x * x;

    let mut c = COS_P[0].mul_add(z, COS_P[1]);
    c = c.mul_add(z, COS_P[2]);
    c *= z;
    c = c.mul_add(z, -(z * 0.5));
    c += 1.0;

    let mut s = SIN_P[0].mul_add(z, SIN_P[1]);
    s = s.mul_add(z, SIN_P[2]);
    s *= z;
    s = s.mul_add(x, x);

    let (sin, cos) = if use_sin_poly_for_sin { (s, c) } else { (c, s) };
    (
        f32::from_bits(sin.to_bits() ^ sin_sign),
        f32::from_bits(cos.to_bits() ^ cos_sign),
    )
}

const MT_N: usize = 624;
const MT_M: usize = 397;

/// The 32-bit Mersenne Twister, seeded like `at::mt19937` (`init_genrand` with the low 32 bits).
#[derive(Clone)]
struct Mt19937 {
    state: [u32; MT_N],
    /// Next state word to temper; `MT_N` means the state must be regenerated first.
    index: usize,
}

impl Mt19937 {
    fn new(seed: u64) -> Mt19937 {
        let mut state = [0u32; MT_N];
        state[0] = seed as u32;
        for i in 1..MT_N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: MT_N }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index == MT_N {
            self.regenerate();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn regenerate(&mut self) {
        for i in 0..MT_N {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % MT_N] & 0x7fff_ffff);
            let mut next = self.state[(i + MT_M) % MT_N] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_output() {
        // init_genrand(5489), the reference seed of mt19937ar.c and std::mt19937.
        let mut mt = Mt19937::new(5489);
        let first: Vec<u32> = (0..10).map(|_| mt.next_u32()).collect();
        assert_eq!(
            first,
            [
                3_499_211_612,
                581_869_302,
                3_890_346_734,
                3_586_334_585,
                545_404_204,
                4_161_255_391,
                3_922_919_429,
                949_333_985,
                2_715_962_298,
                1_323_567_403
            ]
        );
        // The C++ standard's check: the 10000th output of a default std::mt19937.
        let mut mt = Mt19937::new(5489);
        let ten_thousandth = (0..10_000).map(|_| mt.next_u32()).last();
        assert_eq!(ten_thousandth, Some(4_123_659_995));
    }

    #[test]
    fn seeds_use_the_low_32_bits() {
        let mut a = Mt19937::new(7);
        let mut b = Mt19937::new((1 << 40) | 7);
        for _ in 0..1000 {
            assert_eq!(a.next_u32(), b.next_u32());
        }
    }

    #[test]
    fn float_uniforms_match_torch_rand() {
        // torch.manual_seed(0); torch.rand(6) and the same with seed 42 (4 printed decimals).
        for (seed, want) in [
            (0, [0.4963, 0.7682, 0.0885, 0.1320, 0.3074, 0.6341]),
            (42, [0.8823, 0.9150, 0.3829, 0.9593, 0.3904, 0.6009]),
        ] {
            let mut rng = TorchRng::new(seed);
            for w in want {
                let u = rng.uniform_f32();
                assert!((u - w).abs() < 5e-5, "seed {seed}: {u} vs {w}");
            }
        }
    }

    #[test]
    fn small_draws_match_torch_randn() {
        // torch.manual_seed(s); torch.randn(6), as printed by PyTorch.
        for (seed, want) in [
            (0, [1.5410, -0.2934, -2.1788, 0.5684, -1.0845, -1.3986]),
            (42, [0.3367, 0.1288, 0.2345, 0.2303, -1.1229, -0.1863]),
        ] {
            let got = TorchRng::new(seed).randn_vec(6);
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 5e-5, "seed {seed}: {got:?}");
            }
        }
    }

    #[test]
    fn scalar_path_caches_the_second_sample() {
        let whole = TorchRng::new(3).randn_vec(4);
        let mut split = TorchRng::new(3);
        let mut parts = split.randn_vec(3);
        // The cached sin value survives a block draw and opens the next small draw.
        let _ = split.randn_vec(32);
        parts.extend(split.randn_vec(1));
        assert_eq!(whole, parts);
    }

    #[test]
    fn partial_block_redraws_the_last_sixteen() {
        let full = TorchRng::new(9).randn_vec(16);
        let mut rng = TorchRng::new(9);
        let partial = rng.randn_vec(17);
        // Position 0 keeps its first conversion; positions 1..17 come from 16 fresh uniforms.
        assert_eq!(partial[0], full[0]);
        assert_ne!(partial[1], full[1]);
        // 17 uniforms, then 16 more: the stream continues after 33 engine outputs.
        let mut mt = Mt19937::new(9);
        for _ in 0..33 {
            mt.next_u32();
        }
        assert_eq!(rng.mt.next_u32(), mt.next_u32());
    }

    #[test]
    fn cephes_functions_are_accurate() {
        for i in 1..=1000 {
            let x = i as f32 / 1000.0;
            assert!((log_ps(x) - x.ln()).abs() <= 2.0 * f32::EPSILON * x.ln().abs().max(1.0));
            let t = x * (2.0 * std::f32::consts::PI);
            let (s, c) = sincos_ps(t);
            assert!(
                (s - t.sin()).abs() < 1e-6 && (c - t.cos()).abs() < 1e-6,
                "{t}"
            );
        }
        assert_eq!(log_ps(1.0), 0.0);
        assert!(log_ps(0.0).is_nan());
    }

    #[test]
    fn noise_source_gives_f32_tensors_of_the_shape() -> Result<()> {
        let t = TorchRng::new(0).randn(&[1, 4, 8, 8], &Device::Cpu)?;
        assert_eq!(t.dims(), [1, 4, 8, 8]);
        assert_eq!(t.dtype(), candle_core::DType::F32);
        let flat = t.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(flat, TorchRng::new(0).randn_vec(256));
        Ok(())
    }
}
