//! The flow-matching schedulers without fixtures: FlowMatchEuler's schedule options (shift
//! applied twice, dynamic shifting with `mu`, FLUX's custom sigmas, `shift_terminal`,
//! `invert_sigmas`, Karras/exponential spacing), `calculate_shift`, its step and
//! `scale_noise`, DPM-Solver++ with flow sigmas (hand-derived timesteps, exact x0 recovery,
//! `mu`), the rejections, the name table, and Sana's non-strict `scheduler_config.json`.
//! The step-by-step parity with diffusers is in `tests/schedulers.rs` (the Sana set).

use std::collections::VecDeque;

use candle_core::{Device, Tensor};
use easel_diffusion::noise::{NoiseSource, Recorded};
use easel_diffusion::schedulers::{
    calculate_shift, quote_non_finite, resolve, PredictionType, Scheduler, SchedulerConfig,
    SchedulerKind, TimestepOptions,
};
use serde_json::{json, Value};

fn flow_euler(config: Value) -> Scheduler {
    let cfg = SchedulerConfig::from_json(&config).expect("config");
    Scheduler::new(SchedulerKind::FlowMatchEuler, cfg).expect("scheduler")
}

/// Sana's DPM-Solver config (the tiny-sana fixture's, strict-JSON form).
fn sana_dpm_config() -> Value {
    json!({
        "_class_name": "DPMSolverMultistepScheduler",
        "algorithm_type": "dpmsolver++",
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "final_sigmas_type": "zero",
        "flow_shift": 3.0,
        "lambda_min_clipped": "-inf",
        "lower_order_final": true,
        "num_train_timesteps": 1000,
        "prediction_type": "flow_prediction",
        "solver_order": 2,
        "solver_type": "midpoint",
        "timestep_spacing": "linspace",
        "use_flow_sigmas": true
    })
}

fn dpm(overrides: Value) -> Scheduler {
    let cfg =
        SchedulerConfig::from_json_with_overrides(&sana_dpm_config(), &overrides).expect("config");
    Scheduler::new(SchedulerKind::DpmSolverMultistep, cfg).expect("scheduler")
}

fn shift(s: f64, k: f64) -> f64 {
    k * s / (1.0 + (k - 1.0) * s)
}

/// |a − b| ≤ tol·|b| for every pair (and equal lengths).
fn assert_rel(have: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(have.len(), want.len(), "{what}: {have:?} vs {want:?}");
    for (i, (&a, &b)) in have.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * b.abs() + 1e-12,
            "{what}[{i}]: {a} vs {b} ({have:?} vs {want:?})"
        );
    }
}

fn tensor(values: &[f32]) -> Tensor {
    Tensor::from_vec(values.to_vec(), (1, values.len()), &Device::Cpu).unwrap()
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    vals(a)
        .iter()
        .zip(vals(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[derive(Default)]
struct Zeros {
    draws: usize,
}

impl NoiseSource for Zeros {
    fn randn(&mut self, shape: &[usize], device: &Device) -> candle_core::Result<Tensor> {
        self.draws += 1;
        Tensor::zeros(shape, candle_core::DType::F32, device)
    }
}

#[test]
fn calculate_shift_is_linear_in_the_sequence_length() {
    assert!((calculate_shift(256, 256, 4096, 0.5, 1.15) - 0.5).abs() < 1e-15);
    assert!((calculate_shift(4096, 256, 4096, 0.5, 1.15) - 1.15).abs() < 1e-12);
    // FLUX at 1024x1024: (1024/16)^2 = 4096 tokens; at 512x512: 1024 tokens
    let mu = calculate_shift(1024, 256, 4096, 0.5, 1.15);
    assert!((mu - (0.5 + 0.65 * 768.0 / 3840.0)).abs() < 1e-12, "{mu}");
    // the config method reads the config's four values (diffusers' defaults here)
    let cfg =
        SchedulerConfig::from_json(&json!({"max_shift": 1.2, "max_image_seq_len": 2304})).unwrap();
    assert_eq!(
        cfg.calculate_shift(777),
        calculate_shift(777, 256, 2304, 0.5, 1.2)
    );
    assert_eq!(cfg.base_image_seq_len, 256);
    assert_eq!(cfg.base_shift, 0.5);
}

#[test]
fn flow_euler_shifts_twice_and_steps_linearly() {
    let mut s = flow_euler(json!({"shift": 3.0}));
    s.set_timesteps(6).unwrap();
    // constructor: sigma_min = shift(1/1000); set_timesteps: linspace(1000, 1000·sigma_min, 6)
    // divided by 1000 and shifted again
    let sigma_min = shift(0.001, 3.0);
    let want: Vec<f64> = (0..6)
        .map(|i| shift(1.0 + (sigma_min - 1.0) * i as f64 / 5.0, 3.0))
        .chain([0.0])
        .collect();
    let sig = s.sigmas().unwrap().to_vec();
    assert_rel(&sig, &want, 1e-6, "sigmas");
    assert!((sig[5] - 0.00893).abs() < 1e-5, "last sigma {}", sig[5]);
    assert_eq!(sig[0], 1.0);
    let ts: Vec<f64> = want[..6].iter().map(|s| s * 1000.0).collect();
    assert_rel(s.timesteps(), &ts, 1e-6, "timesteps");
    assert!(s.timesteps()[5].fract() != 0.0, "timesteps are not rounded");
    assert_eq!(s.init_noise_sigma(), 1.0);
    assert_eq!(s.order(), 1);

    // x0 recovery: from pure noise (σ = 1) with the exact velocity noise − x0
    let x0 = tensor(&[0.5, -1.25, 2.0, 0.0]);
    let noise = tensor(&[1.0, 0.25, -0.75, -2.0]);
    let v = (&noise - &x0).unwrap();
    let mut x = noise.clone();
    for i in 0..6 {
        let x_in = s.scale_model_input(&x, i).unwrap();
        assert_eq!(max_diff(&x_in, &x), 0.0, "no input scaling");
        let before = x.clone();
        x = s.step(&v, i, &x, &mut Zeros::default()).unwrap();
        // one step: x + (σ_next − σ)·v
        let dt = (sig[i + 1] as f32 - sig[i] as f32) as f64;
        let want = (&before + v.affine(dt, 0.0).unwrap()).unwrap();
        assert_eq!(max_diff(&x, &want), 0.0, "step {i}");
    }
    assert!(max_diff(&x, &x0) < 1e-6, "{:?}", vals(&x));

    // scale_noise through add_noise: σ·noise + (1 − σ)·x at the loop's first entry
    s.set_begin_index(2);
    let noised = s.add_noise(&x0, &noise, 0).unwrap();
    let s2 = sig[2];
    let want = (noise.affine(s2, 0.0).unwrap() + x0.affine(1.0 - s2, 0.0).unwrap()).unwrap();
    assert!(max_diff(&noised, &want) < 1e-7);
}

#[test]
fn flow_euler_dynamic_shifting_needs_mu() {
    let cfg = json!({"use_dynamic_shifting": true, "shift": 3.0});
    let mut s = flow_euler(cfg.clone());
    let e = s.set_timesteps(8).unwrap_err().to_string();
    assert!(e.contains("mu"), "{e}");
    let mu = calculate_shift(4096, 256, 4096, 0.5, 1.15);
    s.set_timesteps_with(
        8,
        &TimestepOptions {
            mu: Some(mu),
            sigmas: None,
        },
    )
    .unwrap();
    // no constructor shift: sigma_min = 1/1000; exponential time shift replaces `shift`
    let time_shift = |t: f64| mu.exp() / (mu.exp() + (1.0 / t - 1.0));
    let want: Vec<f64> = (0..8)
        .map(|i| time_shift(1.0 + (0.001 - 1.0) * i as f64 / 7.0))
        .chain([0.0])
        .collect();
    assert_rel(s.sigmas().unwrap(), &want, 1e-6, "exponential time shift");

    // linear time shift
    let mut lin = flow_euler(json!({"use_dynamic_shifting": true, "time_shift_type": "linear"}));
    lin.set_timesteps_with(
        4,
        &TimestepOptions {
            mu: Some(2.0),
            sigmas: None,
        },
    )
    .unwrap();
    let want: Vec<f64> = (0..4)
        .map(|i| {
            let t = 1.0 + (0.001 - 1.0) * i as f64 / 3.0;
            2.0 / (2.0 + (1.0 / t - 1.0))
        })
        .chain([0.0])
        .collect();
    assert_rel(lin.sigmas().unwrap(), &want, 1e-6, "linear time shift");
}

#[test]
fn flow_euler_takes_fluxs_custom_sigmas_in_float32() {
    let mut s = flow_euler(json!({
        "use_dynamic_shifting": true, "base_shift": 0.5, "max_shift": 1.15,
        "base_image_seq_len": 256, "max_image_seq_len": 4096, "shift": 3.0
    }));
    let n = 28;
    let sigmas: Vec<f64> = (0..n)
        .map(|i| 1.0 + (1.0 / n as f64 - 1.0) * i as f64 / (n - 1) as f64)
        .collect();
    let mu = s.config().calculate_shift(4096);
    s.set_timesteps_with(
        n,
        &TimestepOptions {
            mu: Some(mu),
            sigmas: Some(sigmas.clone()),
        },
    )
    .unwrap();
    let want: Vec<f64> = sigmas
        .iter()
        .map(|&t| mu.exp() / (mu.exp() + (1.0 / t - 1.0)))
        .chain([0.0])
        .collect();
    // float32 arithmetic: a few float32 roundings
    assert_rel(s.sigmas().unwrap(), &want, 1e-6, "FLUX sigmas");
    assert_eq!(s.sigmas().unwrap()[0], 1.0);
    for (t, sg) in s.timesteps().iter().zip(s.sigmas().unwrap()) {
        assert_eq!(*t, (*sg as f32 * 1000.0) as f64);
    }
    // custom sigmas must match the step count
    let e = s
        .set_timesteps_with(
            n + 1,
            &TimestepOptions {
                mu: Some(mu),
                sigmas: Some(sigmas),
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("custom sigmas"), "{e}");
}

#[test]
fn flow_euler_shift_terminal_invert_and_spacings() {
    let n = 10;
    let mut s = flow_euler(json!({"shift": 3.0, "shift_terminal": 0.1}));
    s.set_timesteps(n).unwrap();
    let sig = s.sigmas().unwrap().to_vec();
    assert!((sig[n - 1] - 0.1).abs() < 1e-7, "terminal {}", sig[n - 1]);
    let sigma_min = shift(0.001, 3.0);
    let plain: Vec<f64> = (0..n)
        .map(|i| shift(1.0 + (sigma_min - 1.0) * i as f64 / (n - 1) as f64, 3.0))
        .collect();
    let scale = (1.0 - plain[n - 1]) / 0.9;
    let want: Vec<f64> = plain
        .iter()
        .map(|&p| 1.0 - (1.0 - p) / scale)
        .chain([0.0])
        .collect();
    assert_rel(&sig, &want, 1e-6, "shift_terminal");

    let mut inv = flow_euler(json!({"shift": 3.0, "invert_sigmas": true}));
    inv.set_timesteps(n).unwrap();
    let isig = inv.sigmas().unwrap();
    assert_eq!(isig[n], 1.0);
    let want: Vec<f64> = plain.iter().map(|p| 1.0 - p).collect();
    assert!(isig[..n]
        .iter()
        .zip(&want)
        .all(|(a, b)| (a - b).abs() < 1e-6));
    assert!((inv.timesteps()[3] - isig[3] * 1000.0).abs() < 1e-3);

    for (key, first_last_kept) in [
        ("use_karras_sigmas", true),
        ("use_exponential_sigmas", true),
    ] {
        let mut k = flow_euler(json!({"shift": 3.0, key: true}));
        k.set_timesteps(n).unwrap();
        let ks = k.sigmas().unwrap();
        if first_last_kept {
            assert!((ks[0] - plain[0]).abs() < 1e-6 && (ks[n - 1] - plain[n - 1]).abs() < 1e-6);
        }
        assert!(ks.windows(2).all(|w| w[0] > w[1]), "{key}: {ks:?}");
        assert_ne!(ks[1], sig[1]);
    }
}

#[test]
fn flow_euler_stochastic_sampling_draws_once_per_step() {
    let mut s = flow_euler(json!({"shift": 2.0, "stochastic_sampling": true}));
    s.set_timesteps(4).unwrap();
    let sig = s.sigmas().unwrap().to_vec();
    let x = tensor(&[1.0, -1.0, 0.5]);
    let v = tensor(&[0.25, 0.5, -1.0]);
    // with zero noise: (1 − σ_next)·(x − σ·v)
    let mut zeros = Zeros::default();
    let out = s.step(&v, 0, &x, &mut zeros).unwrap();
    assert_eq!(zeros.draws, 1);
    let x0 = (&x - v.affine(sig[0], 0.0).unwrap()).unwrap();
    let want = x0.affine(1.0 - sig[1], 0.0).unwrap();
    assert!(max_diff(&out, &want) < 1e-7);
    // the drawn noise is weighted by σ_next
    let z = tensor(&[2.0, 2.0, 2.0]);
    let mut rec = Recorded {
        tensors: VecDeque::from([z.clone()]),
    };
    let x0 = (&out - v.affine(sig[1], 0.0).unwrap()).unwrap();
    let out2 = s.step(&v, 1, &out, &mut rec).unwrap();
    let want = (x0.affine(1.0 - sig[2], 0.0).unwrap() + z.affine(sig[2], 0.0).unwrap()).unwrap();
    assert!(max_diff(&out2, &want) < 1e-6);
}

#[test]
fn dpm_solver_flow_sigmas_by_hand() {
    let mut s = dpm(json!({}));
    s.set_timesteps(6).unwrap();
    // s = 1 − linspace(1, 1/1000, 7), shifted by 3, reversed, last dropped, truncated ×1000
    let raw: Vec<f64> = (0..7)
        .map(|i| shift(1.0 - (1.0 + (0.001 - 1.0) * i as f64 / 6.0), 3.0))
        .rev()
        .take(6)
        .collect();
    assert_eq!(
        s.timesteps(),
        &[999.0, 937.0, 856.0, 749.0, 599.0, 374.0],
        "integer timesteps"
    );
    let want_t: Vec<f64> = raw.iter().map(|s| (s * 1000.0).trunc()).collect();
    assert_eq!(s.timesteps(), &want_t[..]);
    let want: Vec<f64> = raw.iter().copied().chain([0.0]).collect();
    assert_rel(s.sigmas().unwrap(), &want, 1e-6, "flow sigmas");
    assert!((s.sigmas().unwrap()[0] - 0.99967).abs() < 1e-5);
    assert_eq!(s.init_noise_sigma(), 1.0);

    // constant x0 under flow prediction: every DPM-Solver++ update lands on the exact path,
    // the last (first-order, σ = 0) on x0 itself
    let x0 = tensor(&[0.5, -1.25, 2.0, 0.0]);
    let noise = tensor(&[1.0, 0.25, -0.75, -2.0]);
    let v = (&noise - &x0).unwrap();
    let s0 = s.sigmas().unwrap()[0];
    let mut x = (x0.affine(1.0 - s0, 0.0).unwrap() + noise.affine(s0, 0.0).unwrap()).unwrap();
    // add_noise is the same forward process
    let noised = s.add_noise(&x0, &noise, 0).unwrap();
    assert!(max_diff(&noised, &x) < 1e-7);
    for i in 0..6 {
        x = s.step(&v, i, &x, &mut Zeros::default()).unwrap();
        let sn = s.sigmas().unwrap()[i + 1];
        let on_path = (x0.affine(1.0 - sn, 0.0).unwrap() + noise.affine(sn, 0.0).unwrap()).unwrap();
        assert!(max_diff(&x, &on_path) < 1e-5, "step {i}: {:?}", vals(&x));
    }
    assert!(max_diff(&x, &x0) < 1e-6);

    // the singlestep solver shares the schedule
    let cfg = SchedulerConfig::from_json(&sana_dpm_config()).unwrap();
    let mut single = Scheduler::new(SchedulerKind::DpmSolverSinglestep, cfg).unwrap();
    single.set_timesteps(6).unwrap();
    assert_eq!(single.timesteps(), s.timesteps());
    let mut x = noised;
    for i in 0..6 {
        x = single.step(&v, i, &x, &mut Zeros::default()).unwrap();
    }
    assert!(max_diff(&x, &x0) < 1e-5, "singlestep: {:?}", vals(&x));
}

#[test]
fn dpm_solver_flow_mu_replaces_flow_shift() {
    let mu = 1.3f64;
    let mut dynamic = dpm(json!({"use_dynamic_shifting": true}));
    dynamic
        .set_timesteps_with(
            9,
            &TimestepOptions {
                mu: Some(mu),
                sigmas: None,
            },
        )
        .unwrap();
    let mut fixed = dpm(json!({"flow_shift": mu.exp()}));
    fixed.set_timesteps(9).unwrap();
    assert_eq!(dynamic.timesteps(), fixed.timesteps());
    assert_eq!(dynamic.sigmas(), fixed.sigmas());
    // without mu, the configured flow_shift
    dynamic.set_timesteps(9).unwrap();
    let mut plain = dpm(json!({}));
    plain.set_timesteps(9).unwrap();
    assert_eq!(dynamic.sigmas(), plain.sigmas());
    // mu without dynamic shifting, custom sigmas: errors
    let with_mu = TimestepOptions {
        mu: Some(mu),
        sigmas: None,
    };
    assert!(plain.set_timesteps_with(9, &with_mu).is_err());
    let with_sigmas = TimestepOptions {
        mu: None,
        sigmas: Some(vec![1.0, 0.5]),
    };
    assert!(plain.set_timesteps_with(2, &with_sigmas).is_err());
    let mut ddim = Scheduler::new(SchedulerKind::Ddim, SchedulerConfig::default()).unwrap();
    let e = ddim
        .set_timesteps_with(9, &with_mu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("flow"), "{e}");
}

#[test]
fn flow_prediction_and_flow_sigmas_are_refused_where_not_implemented() {
    let cfg = SchedulerConfig::from_json(&sana_dpm_config()).unwrap();
    assert_eq!(cfg.prediction_type, PredictionType::Flow);
    for kind in SchedulerKind::ALL {
        let r = Scheduler::new(kind, cfg.clone());
        let ok = matches!(
            kind,
            SchedulerKind::DpmSolverMultistep
                | SchedulerKind::DpmSolverSinglestep
                | SchedulerKind::FlowMatchEuler
        );
        match r {
            Ok(_) => assert!(ok, "{kind:?} accepted Sana's flow config"),
            Err(e) => {
                assert!(!ok, "{kind:?}: {e}");
                let e = e.to_string();
                assert!(
                    e.contains("prediction_type") || e.contains("use_flow_sigmas"),
                    "{kind:?}: {e}"
                );
            }
        }
    }
    // flow sigmas with an epsilon model: UniPC and DEIS refuse them by name
    for kind in [SchedulerKind::UniPc, SchedulerKind::Deis] {
        let cfg = SchedulerConfig::from_json(&json!({"use_flow_sigmas": true})).unwrap();
        let e = Scheduler::new(kind, cfg).err().unwrap().to_string();
        assert!(e.contains("use_flow_sigmas"), "{e}");
    }
}

#[test]
fn flow_names_resolve() {
    for name in [
        "FlowMatchEulerDiscreteScheduler",
        "flow_euler",
        "Euler (flow)",
        "FLOW-EULER",
        "flow_match_euler",
    ] {
        let (kind, overrides) = resolve(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(kind, SchedulerKind::FlowMatchEuler, "{name}");
        assert_eq!(overrides, json!({}));
    }
    assert_eq!(
        SchedulerKind::from_class_name("FlowMatchEulerDiscreteScheduler"),
        Some(SchedulerKind::FlowMatchEuler)
    );
    // dpmpp_2m keeps the model config's flow sigmas
    let (kind, overrides) = resolve("dpmpp_2m").unwrap();
    let cfg = SchedulerConfig::from_json_with_overrides(&sana_dpm_config(), &overrides).unwrap();
    assert!(cfg.use_flow_sigmas);
    assert!(Scheduler::new(kind, cfg).is_ok());
    // the Karras variant cannot space flow sigmas
    let (kind, overrides) = resolve("DPM++ 2M Karras").unwrap();
    let cfg = SchedulerConfig::from_json_with_overrides(&sana_dpm_config(), &overrides).unwrap();
    assert!(Scheduler::new(kind, cfg).is_err());
}

#[test]
fn non_strict_json_from_python() {
    let text = r#"{
  "_class_name": "DPMSolverMultistepScheduler",
  "lambda_min_clipped": -Infinity,
  "sigma_max": Infinity,
  "sigma_min": NaN,
  "note": "a \"-Infinity\" in a string stays, NaN too",
  "flow_shift": 3.0,
  "use_flow_sigmas": true
}"#;
    assert!(
        serde_json::from_str::<Value>(text).is_err(),
        "not strict JSON"
    );
    let quoted = quote_non_finite(text);
    let v: Value = serde_json::from_str(&quoted).unwrap();
    assert_eq!(v["lambda_min_clipped"], json!("-inf"));
    assert_eq!(
        v["note"],
        json!("a \"-Infinity\" in a string stays, NaN too")
    );
    let strict = r#"{"a": 1}"#;
    assert_eq!(quote_non_finite(strict), strict);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scheduler_config.json");
    std::fs::write(&path, text).unwrap();
    let cfg = SchedulerConfig::from_file(&path).unwrap();
    assert_eq!(cfg.lambda_min_clipped, f64::NEG_INFINITY);
    assert_eq!(cfg.sigma_max, Some(f64::INFINITY));
    assert!(cfg.sigma_min.unwrap().is_nan());
    assert_eq!(cfg.flow_shift, 3.0);

    // the Sana fixture model's own file, when the fixtures are there
    let sana = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../../shared/fixtures/parity-sana/models/tiny-sana/scheduler/scheduler_config.json",
    );
    if sana.is_file() {
        let text = std::fs::read_to_string(&sana).unwrap();
        assert!(text.contains("-Infinity"));
        let cfg = SchedulerConfig::from_file(&sana).unwrap();
        assert!(cfg.use_flow_sigmas);
        assert_eq!(cfg.flow_shift, 3.0);
        assert_eq!(cfg.prediction_type, PredictionType::Flow);
        assert_eq!(cfg.lambda_min_clipped, f64::NEG_INFINITY);
        let kind = SchedulerKind::from_class_name(cfg.class_name.as_deref().unwrap()).unwrap();
        let mut s = Scheduler::new(kind, cfg).unwrap();
        s.set_timesteps(6).unwrap();
        assert_eq!(s.timesteps()[0], 999.0);
    } else {
        println!("Sana fixture config not found at {}", sana.display());
    }
}
