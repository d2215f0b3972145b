// Easel's web UI: a client of the native API (`/v1`), nothing more. The key lives in this
// tab's sessionStorage and goes out as a Bearer header; user strings reach the page only as
// text nodes (see `h`). Pages are functions of the hash route (`#/gallery`, `#/job/ID`).
'use strict';

(() => {
  const KEY = 'easel.key';
  const GEN_TASKS = ['txt2img', 'img2img', 'inpaint'];
  const TERMINAL = ['succeeded', 'failed', 'canceled'];
  const S = {
    key: sessionStorage.getItem(KEY),
    me: null,
    options: null,
    models: null,
    prefill: null, // settings handed to the Generate page ("use these settings", "use as image")
    cleanup: [], // what the current page stops when left (streams, timers)
  };

  // ---- DOM helpers: strings always become text nodes ----
  function h(tag, props, ...kids) {
    const el = document.createElement(tag);
    let value;
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'value') value = v;
      else if (k === 'style') Object.assign(el.style, v); // CSSOM: allowed by the page's CSP
      else if (k === 'checked' || k === 'disabled' || k === 'selected' || k === 'hidden') el[k] = !!v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of kids.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    if (value !== undefined) el.value = value;
    return el;
  }
  const $ = (sel, root = document) => root.querySelector(sel);
  const main = () => $('#main');
  function field(label, input, hint) {
    const id = input.id || 'f-' + Math.random().toString(36).slice(2, 9);
    input.id = id;
    return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('small', { class: 'muted' }, hint) : null);
  }
  function flash(msg, isError) {
    const f = $('#flash');
    f.textContent = msg || '';
    f.className = isError ? 'error' : '';
    if (msg && !isError) setTimeout(() => { if (f.textContent === msg) f.textContent = ''; }, 4000);
  }
  const when = (t) => (t ? new Date(t).toLocaleString() : '');
  const secs = (a, b) => (a && b ? ((new Date(b) - new Date(a)) / 1000).toFixed(1) + ' s' : '');
  const round = (x, d = 2) => Number(x || 0).toFixed(d).replace(/\.?0+$/, '') || '0';
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + 's'}`;

  // ---- the API ----
  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + S.key };
    let payload;
    if (body instanceof Blob) { payload = body; headers['Content-Type'] = body.type || 'application/octet-stream'; }
    else if (body !== undefined) { payload = JSON.stringify(body); headers['Content-Type'] = 'application/json'; }
    const r = await fetch(path, { method, headers, body: payload });
    if (r.status === 204) return null;
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
    if (!r.ok) {
      const e = (data && data.error) || {};
      const err = new Error((e.field ? e.field + ': ' : '') + (e.message || r.status + ' ' + r.statusText));
      err.status = r.status;
      err.field = e.field;
      if (r.status === 401 && S.me) signOut('The server refused your key; sign in again.');
      throw err;
    }
    return data;
  }
  // Server-Sent Events over fetch (an EventSource cannot send the Authorization header).
  async function events(path, onEvent, signal) {
    const r = await fetch(path, { headers: { Authorization: 'Bearer ' + S.key, Accept: 'text/event-stream' }, signal });
    if (!r.ok || !r.body) throw new Error('event stream: ' + r.status);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n/g, '\n');
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let kind = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) kind = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (!data.length) continue;
        let parsed;
        try { parsed = JSON.parse(data.join('\n')); } catch (_) { parsed = data.join('\n'); }
        onEvent(kind, parsed);
      }
    }
  }
  async function options() {
    if (!S.options) S.options = await api('GET', '/v1/options');
    return S.options;
  }
  async function models(fresh) {
    if (!S.models || fresh) S.models = (await api('GET', '/v1/models?limit=1000')).data;
    return S.models;
  }
  const isLora = (m) => !m.base_model && ((m.tags || []).includes('lora') || m.family === 'lora');
  // How requests name a model: the server's by name, a user's own by id (titles repeat).
  const modelRef = (m) => (m.owner_id ? m.id : m.name);
  const isAdmin = () => S.me && S.me.user.role === 'admin';

  // ---- session ----
  async function signIn(key) {
    S.key = key;
    try {
      S.me = await api('GET', '/v1/me');
    } catch (e) {
      S.key = null;
      throw e;
    }
    sessionStorage.setItem(KEY, key);
  }
  function signOut(msg) {
    sessionStorage.removeItem(KEY);
    Object.assign(S, { key: null, me: null, options: null, models: null, prefill: null });
    stopPage();
    location.hash = '#/signin';
    render();
    flash(msg || '', !!msg);
  }
  function pageSignIn() {
    const input = h('input', { type: 'password', autocomplete: 'current-password', required: true, name: 'key' });
    const err = h('p', { class: 'error', role: 'alert' });
    const form = h('form', { class: 'card signin', onsubmit: async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      try {
        await signIn(input.value.trim());
        // Go on to the page asked for (or Generate).
        if (!location.hash || location.hash === '#/signin') location.hash = '#/generate';
        else route();
      } catch (e) {
        err.textContent = e.status === 401 ? 'That key is not valid.' : e.message;
      }
    } },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'Paste an API key. It is kept in this tab only, until you sign out or close it.'),
    field('API key', input),
    err,
    h('button', { class: 'primary', type: 'submit' }, 'Sign in'),
    h('p', { class: 'muted' }, 'The first admin key is in ', h('code', {}, 'easel-data/admin.key'), '. Admins create keys on the Keys page or with ', h('code', {}, 'easel keys create'), '.'));
    main().replaceChildren(form);
    input.focus();
  }

  // ---- Generate ----
  function sizePresets(n) {
    const r = (x) => Math.round(x / 64) * 64;
    return [[n, n, 'square'], [r(n * 0.75), r(n * 1.333), 'portrait 3:4'], [r(n * 1.333), r(n * 0.75), 'landscape 4:3'], [r(n * 0.5625), r(n * 1.777), 'portrait 9:16'], [r(n * 1.777), r(n * 0.5625), 'landscape 16:9']];
  }
  async function uploadFile(file) {
    const a = await api('POST', '/v1/assets', file);
    return a;
  }
  async function pageGenerate() {
    const [opt, all] = await Promise.all([options(), models()]);
    const gen = all.filter((m) => !isLora(m) && m.tasks.some((t) => GEN_TASKS.includes(t)));
    const loras = all.filter(isLora);
    const pre = S.prefill || {};
    S.prefill = null;
    if (!gen.length) {
      main().replaceChildren(h('div', { class: 'card' }, h('h1', {}, 'Generate'),
        h('p', {}, 'No model can generate yet. Put a model in easel-data/models/ and scan, or make a tiny one to try things: '),
        isAdmin() ? h('a', { href: '#/models' }, 'Models page') : h('span', { class: 'muted' }, 'ask an admin to install one.')));
      return;
    }
    const family = (m) => opt.families.find((f) => f.id === m.family) || opt.families.find((f) => f.id === 'sd15');
    const el = {
      model: h('select', { name: 'model' }, gen.map((m) => h('option', { value: modelRef(m) }, `${m.name} — ${m.family}`))),
      task: h('select', { name: 'task' }),
      prompt: h('textarea', { name: 'prompt', maxlength: opt.limits.max_prompt_chars, placeholder: 'a (red:1.2) fox in the snow' }),
      negative: h('textarea', { name: 'negative_prompt', placeholder: 'blurry, low quality' }),
      preset: h('select', { name: 'preset' }),
      width: h('input', { type: 'number', name: 'width', min: opt.limits.min_side, step: opt.limits.size_multiple }),
      height: h('input', { type: 'number', name: 'height', min: opt.limits.min_side, step: opt.limits.size_multiple }),
      steps: h('input', { type: 'number', name: 'steps', min: 1, max: opt.limits.max_steps }),
      guidance: h('input', { type: 'number', name: 'guidance', min: 0, max: 30, step: 0.5 }),
      scheduler: h('select', { name: 'scheduler' }, h('option', { value: '' }, '(model default)'), opt.schedulers.map((s) => h('option', { value: s }, s))),
      seedMode: h('select', { name: 'seed_mode' }, h('option', { value: 'random' }, 'random'), h('option', { value: 'fixed' }, 'fixed'), h('option', { value: 'last' }, 'reuse the last')),
      seed: h('input', { type: 'number', name: 'seed', min: 0, max: opt.limits.max_seed, disabled: true }),
      count: h('input', { type: 'number', name: 'count', min: 1, max: opt.limits.max_images, value: 1 }),
      pag: h('input', { type: 'number', name: 'pag_guidance', min: 0, max: 20, step: 0.5 }),
      decoder: h('select', { name: 'decoder' }, h('option', { value: 'vae' }, 'VAE (full quality)'), h('option', { value: 'taesd' }, 'TAESD (fast, softer)')),
      strength: h('input', { type: 'number', name: 'strength', min: 0, max: 1, step: 0.05 }),
      file: h('input', { type: 'file', accept: 'image/*', name: 'image' }),
      loras: h('div', { class: 'loras' }),
      submit: h('button', { class: 'primary', type: 'submit' }, 'Generate'),
    };
    const imageBox = h('div', { class: 'image-box' });
    const pagRow = field('Perturbed-attention guidance', el.pag, 'Sana models; 0 turns it off');
    const decoderRow = field('Decoder', el.decoder, 'The tiny autoencoder installed for this family in the models folder\'s vae_approx/');
    const sizeHint = h('p', { class: 'muted' }, 'Unless changed here, the size follows the init image.');
    const imgRow = h('div', {}, field('Init image', el.file, 'Or open an image in the gallery and choose "Use as image".'), imageBox, field('Strength', el.strength));
    let image = pre.image || null; // {id, url}
    let mask = null; // the painter of the inpaint mask
    const lastSeed = () => Number(localStorage.getItem('easel.lastSeed') || 0);

    function model() { return gen.find((m) => modelRef(m) === el.model.value) || gen[0]; }
    function applyModel(keep) {
      const m = model();
      const f = family(m);
      const tasks = GEN_TASKS.filter((t) => m.tasks.includes(t));
      const cur = el.task.value;
      el.task.replaceChildren(...tasks.map((t) => h('option', { value: t }, t)));
      el.task.value = tasks.includes(cur) ? cur : tasks[0];
      const d = m.defaults || {};
      const n = f.natural_size;
      el.preset.replaceChildren(...sizePresets(n).map(([w, hh, label]) => h('option', { value: `${w}x${hh}` }, `${w}×${hh} ${label}`)), h('option', { value: '' }, 'custom'));
      if (!keep) {
        el.width.value = d.width || n;
        el.height.value = d.height || n;
        el.steps.value = d.steps || f.steps;
        el.guidance.value = d.guidance ?? f.guidance;
        el.scheduler.value = d.scheduler || '';
        el.pag.value = f.pag ? 2 : 0;
      }
      syncPreset();
      pagRow.hidden = !f.pag;
      decoderRow.hidden = !f.tiny_vae;
      if (!f.tiny_vae) el.decoder.value = 'vae';
      applyTask();
    }
    function syncPreset() {
      const v = `${el.width.value}x${el.height.value}`;
      el.preset.value = [...el.preset.options].some((o) => o.value === v) ? v : '';
    }
    function applyTask() {
      const t = el.task.value;
      imgRow.hidden = t === 'txt2img';
      sizeHint.hidden = t === 'txt2img';
      if (!strengthTouched) el.strength.value = t === 'inpaint' ? 1 : 0.75;
      showImage();
    }
    function showImage() {
      imageBox.replaceChildren();
      mask = null;
      if (!image || el.task.value === 'txt2img') return;
      const img = h('img', { src: image.url, alt: 'init image' });
      if (el.task.value !== 'inpaint') {
        imageBox.append(h('div', { class: 'canvas-wrap' }, img));
        return;
      }
      mask = painter(img);
      imageBox.append(mask.view);
    }
    function addLora(name, scale) {
      if (!loras.length) return;
      const sel = h('select', { name: 'lora', 'aria-label': 'LoRA' }, loras.map((l) => h('option', { value: l.name }, l.name)));
      if (name) sel.value = name;
      const sc = h('input', { type: 'number', name: 'lora_scale', step: 0.05, value: scale ?? 1, 'aria-label': 'LoRA scale' });
      const row = h('div', { class: 'lora' }, sel, sc, h('button', { type: 'button', onclick: () => row.remove(), 'aria-label': 'Remove LoRA' }, '×'));
      el.loras.append(row);
    }

    let sizeTouched = false;
    let strengthTouched = false;
    el.strength.addEventListener('input', () => { strengthTouched = true; });
    el.model.addEventListener('change', () => applyModel(false));
    el.task.addEventListener('change', applyTask);
    el.preset.addEventListener('change', () => {
      if (!el.preset.value) return;
      const [w, hh] = el.preset.value.split('x');
      sizeTouched = true;
      el.width.value = w;
      el.height.value = hh;
    });
    for (const e of [el.width, el.height]) e.addEventListener('input', () => { sizeTouched = true; syncPreset(); });
    el.seedMode.addEventListener('change', () => {
      el.seed.disabled = el.seedMode.value !== 'fixed';
      if (el.seedMode.value === 'last') el.seed.value = lastSeed();
    });
    el.file.addEventListener('change', async () => {
      const f = el.file.files[0];
      if (!f) return;
      try {
        const a = await uploadFile(f);
        image = { id: a.id, url: a.url };
        showImage();
      } catch (e) { flash(e.message, true); }
    });

    const err = h('p', { class: 'error', role: 'alert' });
    const form = h('form', { class: 'card', onsubmit: async (ev) => {
      ev.preventDefault();
      err.textContent = '';
      const task = el.task.value;
      const input = { prompt: el.prompt.value };
      if (el.negative.value) input.negative_prompt = el.negative.value;
      for (const k of ['width', 'height', 'steps', 'count']) if (el[k].value) input[k] = Number(el[k].value);
      if (el.guidance.value !== '') input.guidance = Number(el.guidance.value);
      if (el.scheduler.value) input.scheduler = el.scheduler.value;
      if (el.seedMode.value === 'fixed' && el.seed.value !== '') input.seed = Number(el.seed.value);
      if (el.seedMode.value === 'last') input.seed = lastSeed();
      if (!pagRow.hidden && el.pag.value !== '') input.pag_guidance = Number(el.pag.value);
      if (el.decoder.value === 'taesd') input.decoder = 'taesd';
      const ls = [...el.loras.querySelectorAll('.lora')].map((r) => ({ model: r.querySelector('select').value, scale: Number(r.querySelector('input').value) }));
      if (ls.length) input.loras = ls;
      // About ten previews a run (every step for short ones).
      input.preview_every = Math.max(1, Math.round((input.steps || 10) / 10));
      if (task !== 'txt2img') {
        if (!image) { err.textContent = 'Choose an init image first.'; return; }
        input.image = image.id;
        input.strength = Number(el.strength.value);
        if (task === 'inpaint') {
          if (!mask || mask.empty()) { err.textContent = 'Paint the area to repaint on the image first.'; return; }
          input.mask = mask.dataUrl();
        }
        // The size follows the image unless chosen here.
        if (!sizeTouched) { delete input.width; delete input.height; }
      }
      el.submit.disabled = true;
      try {
        const job = await api('POST', '/v1/jobs', { task, model: el.model.value, input });
        if (job.input && job.input.seed !== undefined) localStorage.setItem('easel.lastSeed', job.input.seed);
        location.hash = '#/job/' + job.id;
      } catch (e) {
        err.textContent = e.message;
      } finally { el.submit.disabled = false; }
    } },
    h('h1', {}, 'Generate'),
    h('div', { class: 'row' }, field('Model', el.model), field('Task', el.task)),
    field('Prompt', el.prompt, 'A1111 syntax: (word:1.2) for weight, [word] to lower it; any length.'),
    field('Negative prompt', el.negative),
    imgRow,
    h('div', { class: 'row' }, field('Size', el.preset), field('Width', el.width), field('Height', el.height)),
    sizeHint,
    h('div', { class: 'row' }, field('Steps', el.steps), field('Guidance', el.guidance), field('Images', el.count)),
    field('Scheduler', el.scheduler),
    h('div', { class: 'row' }, field('Seed', el.seedMode), field('Seed value', el.seed)),
    pagRow,
    decoderRow,
    loras.length ? h('div', {}, h('label', {}, 'LoRAs'), el.loras, h('button', { type: 'button', onclick: () => addLora() }, 'Add LoRA')) : null,
    err,
    h('p', {}, el.submit));

    // Apply what was handed over ("use these settings", "use as image").
    if (pre.model && gen.some((m) => modelRef(m) === pre.model)) el.model.value = pre.model;
    applyModel(false);
    if (pre.task && [...el.task.options].some((o) => o.value === pre.task)) el.task.value = pre.task;
    const i = pre.input || {};
    if (i.prompt) el.prompt.value = i.prompt;
    if (i.negative_prompt) el.negative.value = i.negative_prompt;
    for (const k of ['width', 'height', 'steps', 'guidance', 'count', 'strength']) if (i[k] !== undefined && i[k] !== null) el[k].value = i[k];
    if (i.strength !== undefined && i.strength !== null) strengthTouched = true;
    if (i.pag_guidance !== undefined) el.pag.value = i.pag_guidance;
    if (i.decoder === 'taesd' && !decoderRow.hidden) el.decoder.value = 'taesd';
    if (i.scheduler && [...el.scheduler.options].some((o) => o.value === i.scheduler)) el.scheduler.value = i.scheduler;
    if (i.seed !== undefined) { el.seedMode.value = 'fixed'; el.seed.disabled = false; el.seed.value = i.seed; }
    for (const l of i.loras || []) addLora(l.model, l.scale);
    syncPreset();
    applyTask();
    main().replaceChildren(form);
    el.prompt.focus();
  }

  // The inpaint mask: white strokes painted over the image on a canvas of the image's size.
  function painter(img) {
    const canvas = h('canvas', { 'aria-label': 'Mask: paint the area to repaint' });
    const ctx = canvas.getContext('2d');
    const size = h('input', { type: 'range', min: 2, max: 200, value: 32, 'aria-label': 'Brush size' });
    const erase = h('input', { type: 'checkbox', 'aria-label': 'Erase' });
    let painted = false;
    let down = false;
    let last = null;
    const fit = () => { canvas.width = img.naturalWidth; canvas.height = img.naturalHeight; };
    if (img.complete && img.naturalWidth) fit(); else img.addEventListener('load', fit, { once: true });
    const at = (ev) => {
      const r = canvas.getBoundingClientRect();
      return [(ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height];
    };
    const stroke = (p) => {
      ctx.globalCompositeOperation = erase.checked ? 'destination-out' : 'source-over';
      ctx.strokeStyle = ctx.fillStyle = '#fff';
      ctx.lineCap = 'round';
      ctx.lineWidth = Number(size.value) * canvas.width / Math.max(1, canvas.getBoundingClientRect().width);
      ctx.beginPath();
      ctx.moveTo(...(last || p));
      ctx.lineTo(...p);
      ctx.stroke();
      last = p;
      if (!erase.checked) painted = true;
    };
    canvas.addEventListener('pointerdown', (ev) => { down = true; last = null; canvas.setPointerCapture(ev.pointerId); stroke(at(ev)); });
    canvas.addEventListener('pointermove', (ev) => { if (down) stroke(at(ev)); });
    const up = () => { down = false; last = null; };
    canvas.addEventListener('pointerup', up);
    canvas.addEventListener('pointercancel', up);
    const clear = () => { ctx.clearRect(0, 0, canvas.width, canvas.height); painted = false; };
    const view = h('div', {},
      h('div', { class: 'canvas-wrap' }, img, canvas),
      h('div', { class: 'row' }, h('label', {}, 'Brush ', size), h('label', {}, erase, ' Erase'), h('button', { type: 'button', onclick: clear }, 'Clear mask')));
    return {
      view,
      empty: () => !painted,
      // Black everywhere, white where painted: the API's mask.
      dataUrl: () => {
        const out = h('canvas');
        out.width = canvas.width;
        out.height = canvas.height;
        const o = out.getContext('2d');
        o.fillStyle = '#000';
        o.fillRect(0, 0, out.width, out.height);
        o.drawImage(canvas, 0, 0);
        return out.toDataURL('image/png');
      },
    };
  }

  // ---- a job: progress, previews, cancel, results ----
  async function pageJob(id) {
    let job = await api('GET', '/v1/jobs/' + encodeURIComponent(id));
    const bar = h('progress', { max: 1, value: job.progress || 0, 'aria-label': 'Progress' });
    const stepText = h('span', { class: 'step' });
    const status = h('span', { class: 'status ' + job.status }, job.status);
    const preview = h('div', { class: 'preview' });
    const results = h('div', { class: 'results' });
    const errBox = h('p', { class: 'error', role: 'alert' });
    const cancel = h('button', { class: 'danger', type: 'button', onclick: async () => {
      cancel.disabled = true;
      try { job = await api('POST', `/v1/jobs/${job.id}/cancel`); show(job); flash('Cancel requested.'); } catch (e) { flash(e.message, true); cancel.disabled = false; }
    } }, 'Cancel');
    const params = h('div');
    function show(j) {
      status.textContent = j.status;
      status.className = 'status ' + j.status;
      bar.value = j.status === 'succeeded' ? 1 : (j.progress || 0);
      if (j.total_steps) stepText.textContent = `step ${j.step || 0}/${j.total_steps}`;
      cancel.hidden = TERMINAL.includes(j.status) || j.cancel_requested;
      errBox.textContent = j.error ? `${j.error.code}: ${j.error.message}` : '';
      if (j.outputs.length) {
        preview.replaceChildren();
        results.replaceChildren(...j.outputs.map((o, i) => h('a', { href: o.url, target: '_blank', rel: 'noopener' }, h('img', { src: o.url, alt: `output ${i + 1}`, class: 'result' }))));
      }
    }
    params.append(h('h2', {}, 'Parameters'), h('pre', { class: 'params' }, JSON.stringify(job.input, null, 2)),
      GEN_TASKS.includes(job.task) ? h('div', { class: 'row' },
        h('button', { type: 'button', onclick: () => useSettings(job) }, 'Use these settings'),
        h('button', { type: 'button', onclick: () => rerun(job) }, 'Re-run')) : h('button', { type: 'button', onclick: () => rerun(job) }, 'Re-run'));
    main().replaceChildren(h('div', { class: 'card' },
      h('h1', {}, `${job.task} `, h('small', { class: 'muted' }, job.model || '')),
      h('p', {}, status, ' ', stepText, ' ', h('span', { class: 'muted' }, `created ${when(job.created_at)}`)),
      bar, h('p', {}, cancel), errBox, preview, results), h('div', { class: 'card' }, params));
    show(job);
    if (TERMINAL.includes(job.status)) return;
    const ctl = new AbortController();
    S.cleanup.push(() => ctl.abort());
    events(`/v1/jobs/${job.id}/events`, (kind, data) => {
      if (kind === 'progress') {
        if (data.total_steps) stepText.textContent = `step ${data.step}/${data.total_steps}`;
        if (data.fraction !== undefined) bar.value = data.fraction;
      } else if (kind === 'preview') {
        preview.replaceChildren(h('img', { src: data.image, alt: `preview at step ${data.step}`, class: 'live-preview' }));
        preview.dataset.count = Number(preview.dataset.count || 0) + 1;
        stepText.textContent = `step ${data.step}/${data.total_steps}`;
      } else if (kind === 'status') {
        status.textContent = data.status || status.textContent;
        status.className = 'status ' + (data.status || '');
      } else if (kind === 'cancel_requested') {
        cancel.hidden = true;
      } else if (kind === 'job') {
        job = data;
        show(job);
      }
    }, ctl.signal).catch((e) => { if (e.name !== 'AbortError') flash(e.message, true); });
  }
  async function useSettings(job, seed) {
    const input = { ...job.input };
    if (seed !== undefined) { input.seed = seed; input.count = 1; }
    let image = null;
    if (input.image) {
      try { const a = await api('GET', '/v1/assets/' + encodeURIComponent(input.image)); image = { id: a.id, url: a.url }; } catch (_) { /* deleted since: pick another */ }
    }
    S.prefill = { model: job.model, task: job.task, input, image };
    location.hash = '#/generate';
  }
  async function rerun(job) {
    try {
      const j = await api('POST', '/v1/jobs', { task: job.task, model: job.model || undefined, input: job.input, hide_outputs: job.hide_outputs || undefined });
      location.hash = '#/job/' + j.id;
    } catch (e) { flash(e.message, true); }
  }

  // ---- Queue ----
  async function pageQueue() {
    const everyone = h('input', { type: 'checkbox', name: 'everyone' });
    const statusSel = h('select', { name: 'status', 'aria-label': 'Status' }, h('option', { value: '' }, 'any status'), ['queued', 'running', 'succeeded', 'failed', 'canceled'].map((s) => h('option', { value: s }, s)));
    const body = h('tbody');
    const table = h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ['Job', 'Status', 'Progress', 'Task', 'Model', isAdmin() ? 'Owner' : null, 'Created', 'Took', ''].filter((x) => x !== null).map((t) => h('th', {}, t)))), body));
    // Admins see whose each job is, by name.
    const names = new Map(isAdmin() ? (await api('GET', '/v1/users')).map((u) => [u.id, u.name]) : []);
    async function load() {
      const q = new URLSearchParams({ limit: 50 });
      if (statusSel.value) q.set('status', statusSel.value);
      if (everyone.checked) q.set('owner', 'all');
      const list = await api('GET', '/v1/jobs?' + q);
      body.replaceChildren(...list.data.map((j) => h('tr', { 'data-job': j.id },
        h('td', {}, h('a', { href: '#/job/' + j.id }, j.id.slice(-8))),
        h('td', {}, h('span', { class: 'status ' + j.status }, j.status)),
        h('td', {}, j.total_steps ? `${j.step || 0}/${j.total_steps}` : `${Math.round((j.progress || 0) * 100)}%`),
        h('td', {}, j.task), h('td', {}, j.model || ''),
        isAdmin() ? h('td', { title: j.owner_id }, names.get(j.owner_id) || j.owner_id) : null,
        h('td', {}, when(j.created_at)), h('td', {}, secs(j.started_at, j.completed_at)),
        h('td', {}, TERMINAL.includes(j.status) ? null : h('button', { type: 'button', class: 'danger', onclick: async () => { try { await api('POST', `/v1/jobs/${j.id}/cancel`); load(); } catch (e) { flash(e.message, true); } } }, 'Cancel'),
          ' ', h('button', { type: 'button', onclick: () => rerun(j) }, 'Re-run')))));
      if (!list.data.length) body.append(h('tr', {}, h('td', { colspan: 9, class: 'muted' }, 'No jobs yet.')));
    }
    everyone.addEventListener('change', load);
    statusSel.addEventListener('change', load);
    main().replaceChildren(h('div', { class: 'card' }, h('h1', {}, 'Queue'),
      h('div', { class: 'row' }, statusSel, isAdmin() ? h('label', {}, everyone, " everyone's jobs") : h('span')), table));
    await load();
    const timer = setInterval(() => load().catch(() => {}), 2000);
    S.cleanup.push(() => clearInterval(timer));
  }

  // ---- Gallery ----
  async function pageGallery() {
    const [opt, all, cols] = await Promise.all([options(), models(), api('GET', '/v1/collections?limit=100')]);
    const f = {
      q: h('input', { type: 'search', name: 'q', placeholder: 'search prompts, names, tags', 'aria-label': 'Search', maxlength: 500 }),
      model: h('select', { name: 'model', 'aria-label': 'Model' }, h('option', { value: '' }, 'any model'), all.filter((m) => !isLora(m)).map((m) => h('option', { value: modelRef(m) }, m.name))),
      task: h('select', { name: 'task', 'aria-label': 'Task' }, h('option', { value: '' }, 'any task'), ['uploaded', ...opt.tasks].map((t) => h('option', { value: t }, t))),
      tag: h('input', { type: 'text', name: 'tag', placeholder: 'tag', 'aria-label': 'Tag' }),
      collection: h('select', { name: 'collection', 'aria-label': 'Collection' }, h('option', { value: '' }, 'any collection'), cols.data.map((c) => h('option', { value: c.id }, `${c.name} (${c.asset_count})`))),
      since: h('input', { type: 'date', name: 'since', 'aria-label': 'From' }),
      until: h('input', { type: 'date', name: 'until', 'aria-label': 'To' }),
    };
    // Hidden images (hidden here, by Scenario's `hide`/`hideResults`, or a job's
    // `hide_outputs`) are left out of the gallery unless asked for.
    const hiddenOnly = h('input', { type: 'checkbox', name: 'hidden' });
    const grid = h('div', { class: 'gallery' });
    const more = h('button', { type: 'button', hidden: true }, 'Load more');
    let cursor = null;
    async function load(reset) {
      if (reset) { grid.replaceChildren(); cursor = null; }
      grid.querySelectorAll('p.muted').forEach((p) => p.remove());
      const q = new URLSearchParams({ limit: 24 });
      for (const k of Object.keys(f)) if (f[k].value) q.set(k, f[k].value);
      if (hiddenOnly.checked) q.set('hidden', 'true');
      if (cursor) q.set('cursor', cursor);
      const page = await api('GET', '/v1/assets?' + q);
      for (const a of page.data) {
        if (a.kind === 'canvas') continue; // a canvas is a JSON document, not an image
        grid.append(h('button', { type: 'button', class: 'thumb', 'data-asset': a.id, onclick: () => viewer(a.id), 'aria-label': 'Open image' },
          h('img', { src: a.url, alt: (a.metadata && a.metadata.prompt) || a.id, loading: 'lazy' })));
      }
      cursor = page.next_cursor;
      more.hidden = !cursor;
      if (!grid.children.length && !cursor) grid.append(h('p', { class: 'muted' }, 'Nothing here yet.'));
    }
    more.addEventListener('click', () => load(false).catch((e) => flash(e.message, true)));
    for (const el of [...Object.values(f), hiddenOnly]) el.addEventListener('change', () => load(true).catch((e) => flash(e.message, true)));
    main().replaceChildren(h('div', { class: 'card' }, h('h1', {}, 'Gallery'),
      h('div', { class: 'row' }, f.q), h('div', { class: 'row' }, f.model, f.task, f.tag, f.collection, f.since, f.until,
        h('label', {}, hiddenOnly, ' hidden images only')), h('p'), grid, h('p', {}, more)));
    await load(true);
  }
  async function viewer(id) {
    const a = await api('GET', '/v1/assets/' + encodeURIComponent(id));
    const m = a.metadata || {};
    const dlg = h('dialog', { class: 'viewer', 'aria-label': 'Image' });
    const close = () => { dlg.close(); dlg.remove(); };
    const job = a.job_id ? await api('GET', '/v1/jobs/' + a.job_id).catch(() => null) : null;
    const children = (await api('GET', '/v1/assets?limit=20&parent=' + encodeURIComponent(a.id))).data;
    const go = (hash) => { close(); location.hash = hash; };
    const tool = async (task, input) => {
      try {
        const j = await api('POST', '/v1/jobs', { task, input: { image: a.id, ...input } });
        go('#/job/' + j.id);
      } catch (e) { flash(e.message, true); }
    };
    const image = { id: a.id, url: a.url };
    // Tags: shown as chips, removed with their ×, added from the field.
    const tagBox = h('div', { class: 'tags row' });
    const newTag = h('input', { type: 'text', name: 'new_tag', placeholder: 'add a tag', 'aria-label': 'Add a tag' });
    const retag = async (body) => {
      try { showTags((await api('PUT', `/v1/assets/${a.id}/tags`, body)).tags); } catch (e) { flash(e.message, true); }
    };
    const showTags = (list) => tagBox.replaceChildren(...list.map((t) => h('span', { class: 'status', 'data-tag': t }, t, ' ',
      h('button', { type: 'button', class: 'ghost', 'aria-label': `Remove tag ${t}`, onclick: () => retag({ delete: [t] }) }, '×'))),
    h('form', { onsubmit: (ev) => { ev.preventDefault(); if (newTag.value.trim()) retag({ add: [newTag.value.trim()] }).then(() => { newTag.value = ''; }); } }, newTag));
    showTags(a.tags || []);
    // Collections: add it to one of the user's, or to a new one.
    const cols = (await api('GET', '/v1/collections?limit=100')).data;
    const colSel = h('select', { name: 'add_collection', 'aria-label': 'Collection' }, cols.map((c) => h('option', { value: c.id }, c.name)), h('option', { value: '' }, 'a new collection…'));
    const colForm = h('form', { class: 'row', onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        let id = colSel.value;
        if (!id) {
          const name = prompt('Name of the new collection');
          if (!name) return;
          id = (await api('POST', '/v1/collections', { name })).id;
        }
        const c = await api('PUT', `/v1/collections/${id}/items`, { add_assets: [a.id] });
        flash(`Added to ${c.name}.`);
      } catch (e) { flash(e.message, true); }
    } }, colSel, h('button', { type: 'submit' }, 'Add to collection'));
    // The record: name, description, who may read it.
    const rec = {
      name: h('input', { type: 'text', name: 'asset_name', maxlength: 200, value: a.name || '' }),
      description: h('textarea', { name: 'asset_description', rows: 2, value: a.description || '' }),
      privacy: h('select', { name: 'asset_privacy', value: a.privacy }, ['private', 'unlisted', 'public'].map((p) => h('option', { value: p }, p))),
      hidden: h('input', { type: 'checkbox', name: 'asset_hidden', checked: a.hidden }),
    };
    const recForm = h('form', { class: 'record', onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        await api('PATCH', '/v1/assets/' + a.id, { name: rec.name.value, description: rec.description.value, privacy: rec.privacy.value, hidden: rec.hidden.checked });
        // Hidden or shown again: the gallery behind the viewer lists it no longer, or again.
        if (rec.hidden.checked !== a.hidden) { a.hidden = rec.hidden.checked; route(); }
        flash('Saved.');
      } catch (e) { flash(e.message, true); }
    } }, h('div', { class: 'row' }, field('Name', rec.name), field('Who may see it', rec.privacy)), field('Description', rec.description),
    h('label', {}, rec.hidden, ' hidden from the gallery (shown with "hidden images only")'),
    h('p', { class: 'muted' }, 'Unlisted: anyone with its link (', h('code', {}, `/v1/public/assets/${a.id}`), '). Public: also listed for everyone.'),
    h('button', { type: 'submit' }, 'Save'));
    dlg.append(
      h('div', { class: 'row' }, h('h2', {}, `${a.width}×${a.height} ${a.mime_type}`), h('button', { type: 'button', class: 'ghost', onclick: close, 'aria-label': 'Close' }, 'Close')),
      h('img', { src: a.url, alt: m.prompt || a.id }),
      h('p', { class: 'muted' }, `${when(a.created_at)} · ${round(a.bytes / 1024, 1)} KB`, job ? ` · ${job.task} with ${job.model || 'tools'}` : ' · uploaded'),
      m.parameters ? h('pre', { class: 'params', 'aria-label': 'Parameters' }, m.parameters) : (job ? h('pre', { class: 'params' }, JSON.stringify(job.input, null, 2)) : null),
      h('div', { class: 'row' },
        job && GEN_TASKS.includes(job.task) ? h('button', { type: 'button', onclick: () => { close(); useSettings(job, m.seed ?? job.input.seed); } }, 'Use these settings') : null,
        h('button', { type: 'button', onclick: () => { S.prefill = { task: 'img2img', image, input: job ? { prompt: job.input.prompt } : {} }; go('#/generate'); } }, 'Use as image'),
        h('button', { type: 'button', onclick: () => { S.prefill = { task: 'inpaint', image, input: job ? { prompt: job.input.prompt } : {} }; go('#/generate'); } }, 'Inpaint'),
        h('a', { href: a.url, download: a.id, class: 'button' }, 'Download'),
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!confirm('Delete this image?')) return;
          try { await api('DELETE', '/v1/assets/' + a.id); close(); flash('Deleted.'); route(); } catch (e) { flash(e.message, true); }
        } }, 'Delete')),
      h('h2', {}, 'Tags'), tagBox,
      h('h2', {}, 'Record'), recForm,
      h('h2', {}, 'Collections'), colForm,
      h('h2', {}, 'Tools'),
      h('div', { class: 'row' },
        h('button', { type: 'button', onclick: () => tool('upscale', { factor: 2 }) }, 'Upscale ×2'),
        h('button', { type: 'button', onclick: () => tool('pixelate', { grid_size: 64, palette_size: 16 }) }, 'Pixelate'),
        h('button', { type: 'button', onclick: () => tool('convert', { format: 'webp', quality: 90 }) }, 'Convert to WebP'),
        h('button', { type: 'button', onclick: () => tool('convert', { format: 'jpeg', quality: 90 }) }, 'Convert to JPEG')),
      h('h2', {}, 'Lineage'),
      h('p', {}, a.parent_id ? h('button', { type: 'button', class: 'ghost', onclick: () => { close(); viewer(a.parent_id); } }, 'Open the image it came from') : h('span', { class: 'muted' }, 'An original (no parent).')),
      children.length ? h('div', { class: 'gallery' }, children.map((c) => h('button', { type: 'button', class: 'thumb', onclick: () => { close(); viewer(c.id); }, 'aria-label': 'Open derived image' }, h('img', { src: c.url, alt: 'derived image' })))) : h('p', { class: 'muted' }, 'No images made from it yet.'));
    dlg.addEventListener('close', () => dlg.remove());
    document.body.append(dlg);
    dlg.showModal();
  }

  // ---- Models ----
  async function pageModels() {
    const [opt, list] = await Promise.all([options(), models(true)]);
    const body = h('tbody', {}, list.map((m) => h('tr', { 'data-model': modelRef(m) },
      h('td', {}, h('strong', {}, m.name), m.aliases.length ? h('div', { class: 'muted' }, 'aliases: ' + m.aliases.join(', ')) : null),
      h('td', {}, m.family), h('td', {}, m.tasks.join(', ')), h('td', {}, m.provider + (m.fallback_provider ? ' → ' + m.fallback_provider : '')),
      h('td', { class: 'muted' }, Object.entries(m.defaults || {}).map(([k, v]) => `${k} ${v}`).join(', ')),
      h('td', { class: 'muted' }, Object.entries(m.limits || {}).map(([k, v]) => `${k} ${v}`).join(', ')),
      isAdmin() ? h('td', {},
        h('button', { type: 'button', onclick: () => editModel(m) }, 'Edit'), ' ',
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!confirm(`Remove ${m.name} from the registry? (Its files stay on disk.)`)) return;
          try { await api('DELETE', '/v1/models/' + encodeURIComponent(modelRef(m))); route(); } catch (e) { flash(e.message, true); }
        } }, 'Remove')) : null)));
    const admin = [];
    if (isAdmin()) {
      const name = h('input', { type: 'text', name: 'tiny_name', value: 'tiny', pattern: '[A-Za-z0-9._-]+' });
      const fam = h('select', { name: 'tiny_family', value: opt.families.some((f) => f.id === 'sd15') ? 'sd15' : undefined }, opt.families.map((f) => h('option', { value: f.id }, f.label)));
      const busy = h('span', { class: 'muted', role: 'status' });
      admin.push(h('div', { class: 'card' }, h('h2', {}, 'Install'),
        h('p', {}, h('button', { type: 'button', onclick: async () => {
          try { const r = await api('POST', '/v1/models-folder/scan'); flash(`Scanned the models folder: ${plural(r.found, 'model')} found.`); S.models = null; route(); } catch (e) { flash(e.message, true); }
        } }, 'Scan the models folder'), ' ', h('span', { class: 'muted' }, 'Put diffusers folders or .safetensors files in easel-data/models/, or pull one from the hub below.')),
        h('form', { class: 'row', onsubmit: async (ev) => {
          ev.preventDefault();
          busy.textContent = 'Writing…';
          try { await api('POST', '/v1/models-folder/tiny', { name: name.value, family: fam.value }); busy.textContent = ''; S.models = null; flash('Tiny model installed.'); route(); } catch (e) { busy.textContent = ''; flash(e.message, true); }
        } }, field('Tiny model name', name), field('Family', fam), h('div', {}, h('button', { type: 'submit' }, 'Make a tiny model'), ' ', busy)),
        h('p', { class: 'muted' }, 'A tiny model has random weights: its images are noise, made in seconds. For trying the server and its clients.')));
      // Pull from the hub, with a progress bar per file and the pull's log.
      const repo = h('input', { type: 'text', name: 'pull_repo', placeholder: 'stable-diffusion-v1-5/stable-diffusion-v1-5', required: true });
      const variant = h('input', { type: 'text', name: 'pull_variant', placeholder: 'fp16 (optional)' });
      const file = h('input', { type: 'text', name: 'pull_file', placeholder: 'one .safetensors file (optional)' });
      const pname = h('input', { type: 'text', name: 'pull_name', placeholder: 'default: the repository name' });
      const pulls = h('div', { class: 'pulls' });
      const showPull = (p) => {
        const bar = h('progress', { max: p.total_bytes || 1, value: p.status === 'succeeded' ? (p.total_bytes || 1) : p.done_bytes, 'aria-label': 'Download progress' });
        return h('div', { class: 'pull', 'data-pull': p.id, 'data-status': p.status },
          h('p', {}, h('strong', {}, p.repo), ' ', h('span', { class: 'status ' + (p.status === 'running' ? 'running' : p.status) }, p.status),
            p.model ? [' → model ', h('code', {}, p.model)] : null,
            p.tiny_vae ? [' → tiny autoencoder ', h('code', {}, 'vae_approx/' + p.tiny_vae)] : null),
          p.status === 'running' ? [h('p', { class: 'muted' }, p.file || 'listing the repository…'), bar] : null,
          p.error ? h('p', { class: 'error' }, p.error) : null,
          p.lines.length ? h('pre', { class: 'params' }, p.lines.join('\n')) : null);
      };
      const follow = async () => {
        const list = await api('GET', '/v1/models-folder/pulls');
        pulls.replaceChildren(...list.slice(0, 5).map(showPull));
        if (list.some((p) => p.status === 'running')) {
          const t = setTimeout(() => follow().catch((e) => flash(e.message, true)), 1000);
          S.cleanup.push(() => clearTimeout(t));
        } else if (pulls.dataset.wasRunning) {
          delete pulls.dataset.wasRunning;
          S.models = null;
          route();
        }
        if (list.some((p) => p.status === 'running')) pulls.dataset.wasRunning = '1';
      };
      admin.push(h('form', { class: 'card', onsubmit: async (ev) => {
        ev.preventDefault();
        const body = { repo: repo.value.trim() };
        if (variant.value.trim()) body.variant = variant.value.trim();
        if (file.value.trim()) body.file = file.value.trim();
        if (pname.value.trim()) body.name = pname.value.trim();
        try { await api('POST', '/v1/models-folder/pulls', body); await follow(); } catch (e) { flash(e.message, true); }
      } }, h('h2', {}, 'Pull from the Hugging Face hub'),
      h('div', { class: 'row' }, field('Repository', repo), field('Variant', variant)),
      h('div', { class: 'row' }, field('Single file', file), field('Name', pname)),
      h('button', { type: 'submit' }, 'Pull'), pulls));
      follow().catch(() => {});
      const spec = h('textarea', { name: 'model_spec', rows: 9, spellcheck: 'false' });
      spec.value = JSON.stringify({ name: 'cloud-sdxl', family: 'sdxl', tasks: ['txt2img'], provider: 'openai', provider_config: { base_url: 'https://api.example.com/v1', model: 'sdxl', api_key_env: 'UPSTREAM_KEY' } }, null, 2);
      admin.push(h('form', { class: 'card', onsubmit: async (ev) => {
        ev.preventDefault();
        let body;
        try { body = JSON.parse(spec.value); } catch (e) { flash('Not JSON: ' + e.message, true); return; }
        try { const m = await api('POST', '/v1/models', body); S.models = null; flash(`Registered ${m.name}.`); route(); } catch (e) { flash(e.message, true); }
      } }, h('h2', {}, 'Register a model'),
      h('p', { class: 'muted' }, 'A local file or folder under the model roots (', h('code', {}, 'source'), '), or a remote provider. Keys stay in the server\'s environment: name the variable in ', h('code', {}, 'api_key_env'), '.'),
      field('Model (JSON, as POST /v1/models takes it)', spec), h('button', { type: 'submit' }, 'Register')));
    }
    main().replaceChildren(h('div', { class: 'card' }, h('h1', {}, 'Models'),
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Family', 'Tasks', 'Provider', 'Defaults', 'Limits', isAdmin() ? '' : null].filter((x) => x !== null).map((t) => h('th', {}, t)))), body))), ...admin);
  }

  // A model's editable fields as JSON, sent as a PATCH (what is left out stays as it is).
  function editModel(m) {
    const fields = ['name', 'aliases', 'tasks', 'defaults', 'limits', 'tags', 'recommended', 'beta', 'provider', 'provider_config', 'fallback_provider', 'fallback_provider_config', 'source'];
    const text = h('textarea', { name: 'model_patch', rows: 16, spellcheck: 'false' });
    text.value = JSON.stringify(Object.fromEntries(fields.filter((f) => m[f] !== undefined && m[f] !== null).map((f) => [f, m[f]])), null, 2);
    const err = h('p', { class: 'error', role: 'alert' });
    const dlg = h('dialog', { 'aria-label': 'Edit model' });
    const close = () => dlg.close();
    dlg.append(h('form', { onsubmit: async (ev) => {
      ev.preventDefault();
      let patch;
      try { patch = JSON.parse(text.value); } catch (e) { err.textContent = 'Not JSON: ' + e.message; return; }
      try { await api('PATCH', '/v1/models/' + encodeURIComponent(modelRef(m)), patch); close(); S.models = null; flash(`Saved ${patch.name || m.name}.`); route(); } catch (e) { err.textContent = e.message; }
    } }, h('h2', {}, `Edit ${m.name}`), field('Fields (JSON; see PATCH /v1/models/{id} in the API docs)', text), err,
    h('div', { class: 'row' }, h('button', { class: 'primary', type: 'submit' }, 'Save'), h('button', { type: 'button', onclick: close }, 'Cancel'))));
    dlg.addEventListener('close', () => dlg.remove());
    document.body.append(dlg);
    dlg.showModal();
  }

  // ---- Keys (admins) ----
  async function pageKeys() {
    if (!isAdmin()) { main().replaceChildren(h('div', { class: 'card' }, h('h1', {}, 'Keys'), h('p', { class: 'error', role: 'alert' }, 'This page is for admins.'))); return; }
    const [keys, users] = await Promise.all([api('GET', '/v1/keys'), api('GET', '/v1/users')]);
    const shown = h('div');
    const who = h('select', { name: 'user' }, h('option', { value: '' }, 'a new user'), users.map((u) => h('option', { value: u.id }, `${u.name} (${u.role})`)));
    const name = h('input', { type: 'text', name: 'key_name', required: true });
    const role = h('select', { name: 'role' }, h('option', { value: 'user' }, 'user'), h('option', { value: 'admin' }, 'admin'));
    const roleRow = field('Role', role);
    who.addEventListener('change', () => { roleRow.hidden = !!who.value; name.previousSibling.textContent = who.value ? 'Label of the key' : 'Name of the new user'; });
    main().replaceChildren(
      h('div', { class: 'card' }, h('h1', {}, 'Keys'),
        h('form', { class: 'row', onsubmit: async (ev) => {
          ev.preventDefault();
          try {
            const k = await api('POST', '/v1/keys', who.value ? { name: name.value, user_id: who.value } : { name: name.value, role: role.value });
            shown.replaceChildren(h('p', {}, 'The new key, shown only now:'), h('p', { class: 'secret', 'data-secret': '' }, k.key), h('p', { class: 'muted' }, `As a key id and secret pair (Scenario): ${k.api_key} : ${k.api_secret}`));
            pageKeysTable(await api('GET', '/v1/keys'));
          } catch (e) { flash(e.message, true); }
        } }, field('For', who), field('Name of the new user', name), roleRow, h('div', {}, h('button', { class: 'primary', type: 'submit' }, 'Create key'))), shown),
      h('div', { class: 'card', id: 'keys-table' }));
    pageKeysTable(keys);
  }
  function pageKeysTable(keys) {
    $('#keys-table').replaceChildren(h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Key', 'Label', 'User', 'Role', 'Created', 'Last used', 'Revoked', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, keys.map((k) => h('tr', {}, h('td', {}, k.id), h('td', {}, k.name || ''), h('td', { title: k.user_id }, k.user_name), h('td', {}, k.role), h('td', {}, when(k.created_at)), h('td', {}, when(k.last_used_at)), h('td', {}, when(k.revoked_at)),
        h('td', {}, k.revoked_at ? null : h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!confirm(`Revoke ${k.id}? Clients using it stop working at once.`)) return;
          try { await api('DELETE', '/v1/keys/' + k.id); pageKeysTable(await api('GET', '/v1/keys')); } catch (e) { flash(e.message, true); }
        } }, 'Revoke'))))))));
  }

  // ---- Usage: a stacked bar per day, by model ----
  async function pageUsage() {
    const everyone = h('input', { type: 'checkbox', name: 'everyone' });
    const box = h('div');
    async function load() {
      const q = new URLSearchParams();
      if (everyone.checked) q.set('owner', 'all');
      const u = await api('GET', '/v1/usage?' + q);
      box.replaceChildren(chart(u.models), h('h2', {}, 'By day and task'), h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, ['Day', 'Task', 'Jobs', 'Images', 'Units'].map((t) => h('th', {}, t)))),
        h('tbody', {}, u.data.map((r) => h('tr', {}, h('td', {}, r.day), h('td', {}, r.task), h('td', {}, r.jobs), h('td', {}, r.outputs), h('td', {}, round(r.units)))),
          u.data.length ? null : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No usage yet.'))))));
    }
    everyone.addEventListener('change', () => load().catch((e) => flash(e.message, true)));
    main().replaceChildren(h('div', { class: 'card' }, h('h1', {}, 'Usage'), isAdmin() ? h('label', {}, everyone, " everyone's usage") : null, box));
    await load();
  }
  function chart(rows) {
    const NS = 'http://www.w3.org/2000/svg';
    const s = (tag, attrs, text) => { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); if (text !== undefined) e.textContent = text; return e; };
    const days = [...new Set(rows.map((r) => r.day))].sort();
    const names = [...new Set(rows.map((r) => r.model))].sort();
    if (!days.length) return h('p', { class: 'muted chart' }, 'No generations yet: the chart of units per day and model appears here.');
    const colors = ['#4c6ef5', '#f76707', '#37b24d', '#ae3ec9', '#1098ad', '#f59f00', '#e64980', '#74b816'];
    const total = (d) => rows.filter((r) => r.day === d).reduce((a, r) => a + r.units, 0);
    const max = Math.max(...days.map(total), 1e-9);
    const W = 640, H = 220, pad = 36, bw = Math.max(4, Math.min(48, (W - pad * 2) / days.length - 6));
    const svg = s('svg', { viewBox: `0 0 ${W} ${H + 40}`, role: 'img', 'aria-label': 'Units per day by model' });
    svg.append(s('line', { x1: pad, y1: H, x2: W - 10, y2: H, stroke: 'currentColor', 'stroke-opacity': 0.3 }));
    svg.append(s('text', { x: 2, y: 12, 'font-size': 11, fill: 'currentColor' }, round(max) + ' units'));
    days.forEach((d, i) => {
      const x = pad + i * ((W - pad * 2) / days.length) + 3;
      let y = H;
      names.forEach((n, j) => {
        const r = rows.find((q) => q.day === d && q.model === n);
        if (!r) return;
        const hh = (r.units / max) * (H - 20);
        y -= hh;
        const rect = s('rect', { x, y, width: bw, height: Math.max(hh, 1), fill: colors[j % colors.length] });
        rect.append(s('title', {}, `${d} ${n}: ${round(r.units)} units, ${plural(r.jobs, 'job')}`));
        svg.append(rect);
      });
      svg.append(s('text', { x: x + bw / 2, y: H + 14, 'font-size': 10, 'text-anchor': 'middle', fill: 'currentColor' }, d.slice(5)));
    });
    return h('div', { class: 'chart' }, svg, h('div', { class: 'legend' }, names.map((n, j) => h('span', {}, h('i', { style: { background: colors[j % colors.length] } }), n))));
  }

  // ---- Connect: each dialect's base URL and a snippet for its client ----
  function pageConnect() {
    const base = location.origin;
    const snippet = (title, code) => h('div', { class: 'snippet card' }, h('h2', {}, title), h('pre', {}, h('code', {}, code)),
      h('button', { type: 'button', onclick: (ev) => {
        // The clipboard API exists only on HTTPS pages and localhost.
        if (!navigator.clipboard) { flash('Select the text to copy it (the clipboard needs HTTPS).', true); return; }
        navigator.clipboard.writeText(code).then(() => { ev.target.textContent = 'Copied'; }, () => flash('Copy failed; select the text instead.', true));
      } }, 'Copy'));
    main().replaceChildren(h('div', {}, h('h1', {}, 'Connect'),
      h('p', {}, 'Existing client code works by changing its base URL and key. Set EASEL_KEY to your key. The whole API: ', h('a', { href: '/docs' }, '/docs'), '.'),
      snippet('Native API (curl)', `curl -s -H "Authorization: Bearer $EASEL_KEY" -H 'content-type: application/json' \\\n  -d '{"task": "txt2img", "input": {"prompt": "a red fox", "steps": 4}}' \\\n  ${base}/v1/jobs`),
      snippet('OpenAI images (openai)', `from openai import OpenAI\nimport os\nclient = OpenAI(base_url="${base}/openai/v1", api_key=os.environ["EASEL_KEY"])\nimg = client.images.generate(model="MODEL", prompt="a red fox", size="512x512")\nprint(img.data[0].url)`),
      snippet('Replicate predictions (replicate)', `import os, replicate\nclient = replicate.Client(api_token=os.environ["EASEL_KEY"], base_url="${base}/replicate")\nprint(client.run("easel/MODEL", input={"prompt": "a red fox"}))`),
      snippet('Scenario (scenario-sdk)', `from scenario_sdk import Scenario\n# the key id and secret pair shown when the key was made\nclient = Scenario(api_key=KEY_ID, api_secret=SECRET, base_url="${base}/scenario/v1")`),
      snippet('Leonardo (HTTP)', `curl -s -H "Authorization: Bearer $EASEL_KEY" -H 'content-type: application/json' \\\n  -d '{"prompt": "a red fox", "modelId": "MODEL"}' ${base}/leonardo/v1/generations`),
      snippet('Sartiq model registry (HTTP)', `curl -s ${base}/sartiq/api/v1/generation-models/`)));
  }

  // ---- frame, navigation ----
  const PAGES = [
    ['generate', 'Generate', pageGenerate],
    ['queue', 'Queue', pageQueue],
    ['gallery', 'Gallery', pageGallery],
    ['models', 'Models', pageModels],
    ['usage', 'Usage', pageUsage],
    ['keys', 'Keys', pageKeys, true],
    ['connect', 'Connect', pageConnect],
  ];
  function stopPage() {
    for (const f of S.cleanup.splice(0)) { try { f(); } catch (_) { /* already stopped */ } }
  }
  function frame() {
    const nav = $('#nav');
    nav.hidden = !S.me;
    $('#signout').hidden = !S.me;
    $('#who').textContent = S.me ? `${S.me.user.name} (${S.me.user.role})` : '';
    const page = (location.hash.split('/')[1] || 'generate');
    nav.replaceChildren(...PAGES.filter((p) => !p[3] || isAdmin()).map(([id, label]) => h('a', { href: '#/' + id, 'aria-current': id === page ? 'page' : null }, label)),
      h('a', { href: '/docs' }, 'API docs'));
  }
  async function route() {
    stopPage();
    if (!S.me) {
      if (S.key) {
        try { await signIn(S.key); } catch (_) { S.key = null; sessionStorage.removeItem(KEY); }
      }
      if (!S.me) { frame(); pageSignIn(); return; }
    }
    frame();
    const [, name = 'generate', arg] = location.hash.split('/');
    if (name === 'signin') { location.hash = '#/generate'; return; }
    const page = PAGES.find((p) => p[0] === name);
    try {
      if (name === 'job' && arg) await pageJob(decodeURIComponent(arg));
      else if (page) await page[2]();
      else main().replaceChildren(h('div', { class: 'card' }, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/generate' }, 'Generate'))));
    } catch (e) {
      main().replaceChildren(h('div', { class: 'card' }, h('p', { class: 'error', role: 'alert' }, e.message)));
    }
    main().focus({ preventScroll: true });
  }
  function render() { route(); }

  function theme(next) {
    const dark = next ?? (localStorage.getItem('easel.theme') || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light')) === 'dark';
    document.documentElement.classList.toggle('dark', dark);
    localStorage.setItem('easel.theme', dark ? 'dark' : 'light');
  }

  document.addEventListener('DOMContentLoaded', () => {
    theme();
    $('#theme').addEventListener('click', () => theme(!document.documentElement.classList.contains('dark')));
    $('#signout').addEventListener('click', () => signOut());
    window.addEventListener('hashchange', route);
    route();
  });
})();
