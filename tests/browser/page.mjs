#!/usr/bin/env node
// Drive one of abrpipe's own pages in headless Chromium and report what happened, as one JSON object.
//
//   node page.mjs --mode player --url http://127.0.0.1:PORT/?manifest=master.m3u8 --screenshot shot.png
//   node page.mjs --mode report --url file:///path/report.html
//   node page.mjs --mode extras --url http://127.0.0.1:PORT/?manifest=manifest.mpd
//
// player: the `abrpipe serve` page. Waits for window.abrPlayer.ready, for playback to pass 0.5 s,
//   then pins the lowest and then the highest rendition (the page's own pin buttons) and waits,
//   for each, until the player reports it active, the decoded frames have its height, the page
//   shows that resolution and at least 1 s has played on it; then screenshots the video element.
// extras: the same page on an output with subtitles and thumbnails: picks the first subtitle track in
//   the page's menu and waits for its cues to show, then moves the thumbnail scrub bar and reads the
//   thumbnail the page draws; then switches to master.m3u8 with the page's button and waits for it to play.
// report: the `abrpipe report` file. Records every request the page makes (anything but the file
//   itself is blocked and counted), and returns every [data-key] element's data-value.
// Both collect console errors, uncaught page errors and HTTP errors. --seconds is a hard budget.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--autoplay-policy=no-user-gesture-required'];
const T0 = Date.now();
const wall = () => Math.round((Date.now() - T0) / 10) / 100;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const opt = { seconds: 60, chromium: process.env.ABRPIPE_CHROMIUM || '/usr/bin/chromium', screenshot: null };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const v = process.argv[++i];
  if (a === '--mode') opt.mode = v;
  else if (a === '--url') opt.url = v;
  else if (a === '--seconds') opt.seconds = Number(v);
  else if (a === '--chromium') opt.chromium = v;
  else if (a === '--screenshot') opt.screenshot = v;
  else { process.stderr.write(`page.mjs: unknown option ${a}\n`); process.exit(2); }
}
if (!['player', 'report', 'extras'].includes(opt.mode) || !opt.url) {
  process.stderr.write('usage: node page.mjs --mode player|report|extras --url URL [--screenshot FILE] [--seconds N]\n');
  process.exit(2);
}

const result = { ok: false, mode: opt.mode, url: opt.url, reason: null, console_errors: [], page_errors: [],
  http_errors: [], requests: [], blocked: [], steps: [], wall_s: null };
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'abrpipe-page-'));
let context = null;
let page = null;
let finishing = null;

function killLeftovers() {
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(`--user-data-dir=${userDataDir}`)) process.kill(Number(pid), 'SIGKILL');
    } catch { /* gone */ }
  }
}

function finish(ok, reason) {
  if (finishing) return finishing;
  finishing = (async () => {
    clearTimeout(watchdog);
    if (context) { try { await Promise.race([context.close(), sleep(5000)]); } catch { /* closing anyway */ } }
    killLeftovers();
    fs.rmSync(userDataDir, { recursive: true, force: true });
    result.ok = ok && result.page_errors.length === 0 && result.console_errors.length === 0 && result.http_errors.length === 0;
    result.reason = reason || (result.ok ? null : (result.page_errors[0] || result.console_errors[0]
      || JSON.stringify(result.http_errors[0]) || 'not ok'));
    result.wall_s = wall();
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(result.ok ? 0 : 1);
  })();
  return finishing;
}
const watchdog = setTimeout(() => finish(false, `global timeout after ${opt.seconds} s`), opt.seconds * 1000);
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => finish(false, `killed by ${sig}`));
process.on('exit', killLeftovers);

async function until(what, timeoutS, test) {
  const deadline = Date.now() + timeoutS * 1000;
  let last = null;
  while (Date.now() < deadline) {
    last = await page.evaluate(() => window.abrPlayer.state());
    if (last.errors.length) throw new Error(`${what}: page reported ${JSON.stringify(last.errors[0])}`);
    const verdict = await test(last);
    if (verdict) return last;
    await sleep(100);
  }
  throw new Error(`${what}: not reached in ${timeoutS} s (state ${JSON.stringify(last)})`);
}

async function pinAndPlay(r) {
  const step = { name: `pin ${r.width}x${r.height}`, id: r.id, height: r.height, bandwidth: r.bandwidth };
  result.steps.push(step);
  await page.click(`#renditions tr[data-id="${r.id}"] button`);
  let from = null;
  let restarts = 0;
  const s = await until(step.name, 20, async (st) => {
    const on = st.active && st.active.id === r.id && st.videoHeight === r.height && st.pinned === r.id
      && st.now.includes(`${r.width}x${r.height}`);
    if (!on) { from = null; } else if (from === null) { from = st.currentTime; }
    if (st.ended || (st.duration > 0 && st.currentTime >= st.duration - 0.3)) {
      if (restarts++ > 3) throw new Error(`${step.name}: the stream kept ending before the rendition played`);
      from = null;
      await page.evaluate(() => { const v = document.getElementById('video'); v.currentTime = 0; return v.play(); });
      return false;
    }
    return on && st.currentTime - from >= 1;
  });
  step.row_active = await page.evaluate((id) => {
    const tr = document.querySelector(`#renditions tr[data-id="${id}"]`);
    return !!tr && tr.classList.contains('active');
  }, r.id);
  step.now = s.now;
  step.ok = step.row_active;
  if (!step.ok) throw new Error(`${step.name}: the renditions table does not mark it active`);
}

async function player() {
  await page.goto(opt.url, { waitUntil: 'load', timeout: 15000 });
  result.renditions = await Promise.race([
    page.evaluate(() => window.abrPlayer.ready),
    sleep(20000).then(() => { throw new Error('the player page did not load the manifest in 20 s'); }),
  ]);
  result.table_rows = await page.evaluate(() => document.querySelectorAll('#renditions tr').length);
  await until('start', 20, (st) => st.currentTime > 0.5 && st.readyState >= 2);
  const video = result.renditions.filter((r) => r.height > 0).sort((a, b) => a.height - b.height);
  if (video.length < 2) throw new Error(`fewer than two video renditions: ${JSON.stringify(result.renditions)}`);
  await pinAndPlay(video[0]);
  await pinAndPlay(video[video.length - 1]);
  result.final_state = await page.evaluate(() => window.abrPlayer.state());
  if (opt.screenshot) await page.locator('#video').screenshot({ path: opt.screenshot, timeout: 10000 });
}

async function extras() {
  await page.goto(opt.url, { waitUntil: 'load', timeout: 15000 });
  result.renditions = await Promise.race([
    page.evaluate(() => window.abrPlayer.ready),
    sleep(20000).then(() => { throw new Error('the player page did not load the manifest in 20 s'); }),
  ]);
  await until('start', 20, (st) => st.currentTime > 0.5 && st.readyState >= 2);
  result.menu = await page.evaluate(() => ({
    hidden: document.getElementById('texts').hidden,
    options: Array.from(document.querySelectorAll('#text option')).map((o) => o.textContent),
  }));
  await page.selectOption('#text', { index: 1 });
  await page.evaluate(() => { const v = document.getElementById('video'); v.currentTime = 0.2; return v.play(); });
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    result.cue = await page.evaluate(() => {
      const v = document.getElementById('video');
      for (const t of Array.from(v.textTracks)) {
        if (t.mode === 'showing' && t.activeCues && t.activeCues.length) return t.activeCues[0].text;
      }
      return null;
    });
    if (result.cue) break;
    await sleep(100);
  }
  if (!result.cue) throw new Error('no subtitle cue was shown');
  result.thumbs_hidden = await page.evaluate(() => document.getElementById('thumbs').hidden);
  await page.evaluate(() => {
    const s = document.getElementById('scrub');
    s.value = '2';
    s.dispatchEvent(new Event('input'));
  });
  const until2 = Date.now() + 10000;
  while (Date.now() < until2) {
    result.thumbnail = await page.evaluate(() => {
      const t = document.getElementById('thumb');
      return t.style.display === 'block' ? { image: t.style.backgroundImage, position: t.style.backgroundPosition,
        width: t.style.width, height: t.style.height } : null;
    });
    if (result.thumbnail) break;
    await sleep(100);
  }
  if (!result.thumbnail) throw new Error('no thumbnail was drawn');
  // The manifest buttons: switch to the HLS playlist of the same output, which must play too.
  await page.click('#manifests button:text-is("HLS master.m3u8")');
  result.switched = await until('switch to HLS', 20, (st) => st.manifest === 'master.m3u8' && !st.loading && st.active
    && st.currentTime > 0.5 && st.readyState >= 2);
  result.final_state = result.switched;
}

async function report() {
  const target = new URL(opt.url).href;
  await context.route('**/*', (route) => {
    const url = route.request().url();
    result.requests.push(url);
    if (url === target) return route.continue();
    result.blocked.push(url);
    return route.abort();
  });
  await page.goto(opt.url, { waitUntil: 'load', timeout: 15000 });
  await sleep(300);  // anything the page would fetch after load
  result.values = await page.evaluate(() => {
    const out = {};
    document.querySelectorAll('[data-key]').forEach((el) => { out[el.dataset.key] = el.dataset.value ?? el.textContent; });
    return out;
  });
  result.svg_count = await page.evaluate(() => document.querySelectorAll('svg').length);
  result.title = await page.title();
  if (result.blocked.length) throw new Error(`the report made ${result.blocked.length} request(s): ${result.blocked[0]}`);
}

async function main() {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: opt.chromium, headless: true, args: FLAGS, timeout: 30000,
    handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false, viewport: { width: 1280, height: 800 },
  });
  page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') result.console_errors.push(m.text().slice(0, 500)); });
  page.on('pageerror', (e) => result.page_errors.push(String(e && e.stack || e).slice(0, 1000)));
  page.on('response', (r) => { if (r.status() >= 400) result.http_errors.push({ url: r.url(), status: r.status() }); });
  page.on('requestfailed', (r) => {
    const txt = r.failure() ? r.failure().errorText : 'failed';
    if (/ERR_ABORTED/.test(txt)) return;  // players abort requests when they switch; blocked report requests are counted apart
    result.http_errors.push({ url: r.url(), status: null, error: txt });
  });
  if (opt.mode === 'player') await player();
  else if (opt.mode === 'extras') await extras();
  else await report();
  return finish(true);
}

main().catch((e) => finish(false, String(e && e.message || e).split('\n')[0]));
