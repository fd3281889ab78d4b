#!/usr/bin/env node
// Drive one real player (hls.js, dash.js or Shaka) in headless Debian Chromium
// against one HLS/DASH manifest and report what really happened.
//
//   node play.mjs --page http://127.0.0.1:PORT/player/player.html \
//                 --player hlsjs|dashjs|shaka --manifest URL [--seconds 60]
//
// Phases: load -> start (currentTime > 0.5) -> lowest -> highest.
// A level phase forces the rendition (ABR off), then waits until the player
// reports it as the active (played) rendition, the decoded frames have its
// height (video.videoHeight), and at least --advance seconds (default 1) have
// been played on it.  The run is not ok on: any fatal player/media error, a
// non-fatal player error that means broken media (a segment that 404s and is
// retried or skipped, an unparsable segment skipped: "media_errors"), an
// uncaught page exception, an HTTP error (>= 400), playback stalled for
// --stall-timeout seconds, or a phase not reached in time.
//
// Prints exactly one JSON object on stdout; exit 0 when ok, 1 when not ok,
// 2 on usage errors.  --seconds is a hard global budget: on expiry the browser
// is closed (killed if needed) and the JSON is still printed.
//
// Options: --seconds N (global budget, default 60)  --advance S (default 1)
//          --start-timeout S (20)  --phase-timeout S (15)  --stall-timeout S (6)
//          --chromium PATH  --allow-media-errors
//          --user-data-dir DIR (default: fresh temp dir, removed afterwards)
//          --screenshot FILE.png  --allow-http-errors  --verbose
//          --thumbnails T1,T2,...  (Shaka, dash.js: report the image tracks and the tile shown at each time)
//          --thumbnails-track PATH  (with --thumbnails: read this WebVTT thumbnails track, relative to the manifest)
//          --text LANG  (instead of the level phases: list the subtitle tracks, select LANG, play
//                        from 0 to the end twice and collect the cues the player puts on the <video>
//                        element: result.text_tracks, result.cues)
//          --clearkey KID:KEY[,KID:KEY]  (hex) EME ClearKey keys handed to the player
//          --clearkey-license URL  a W3C ClearKey license server (hls.js: KEYFORMAT="org.w3.clearkey")
//          --seek-through T1,T2,...  after the start phase, for each time T: seek to T - 0.5 s
//                                    and play (no stall, no jump) until T + 1 s

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  // Shared memory in /tmp: a container's 64 MB /dev/shm crashes the renderer during video playback.
  '--disable-dev-shm-usage',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--autoplay-policy=no-user-gesture-required',
];
const PLAYERS = ['hlsjs', 'dashjs', 'shaka'];
const T0 = Date.now();
const wall = () => Math.round((Date.now() - T0) / 10) / 100;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function usage(msg) {
  process.stderr.write(`play.mjs: ${msg}\nusage: node play.mjs --page URL --player ${PLAYERS.join('|')} --manifest URL [--seconds N]\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    seconds: 60, advance: 1, startTimeout: 20, phaseTimeout: 15, stallTimeout: 6, allowMediaErrors: false,
    chromium: process.env.ABRPIPE_CHROMIUM || '/usr/bin/chromium',
    userDataDir: null, screenshot: null, allowHttpErrors: false, verbose: false, text: null, seekThrough: [],
  };
  const num = (v, k) => { const n = Number(v); if (!Number.isFinite(n) || n <= 0) usage(`bad ${k}: ${v}`); return n; };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => { if (i + 1 >= argv.length) usage(`missing value for ${a}`); return argv[++i]; };
    switch (a) {
      case '--page': o.page = next(); break;
      case '--player': o.player = next(); break;
      case '--manifest': o.manifest = next(); break;
      case '--seconds': case '--timeout': o.seconds = num(next(), a); break;
      case '--advance': o.advance = num(next(), a); break;
      case '--start-timeout': o.startTimeout = num(next(), a); break;
      case '--phase-timeout': o.phaseTimeout = num(next(), a); break;
      case '--stall-timeout': o.stallTimeout = num(next(), a); break;
      case '--allow-media-errors': o.allowMediaErrors = true; break;
      case '--chromium': o.chromium = next(); break;
      case '--user-data-dir': o.userDataDir = next(); break;
      case '--screenshot': o.screenshot = next(); break;
      case '--allow-http-errors': o.allowHttpErrors = true; break;
      case '--verbose': o.verbose = true; break;
      case '--thumbnails': o.thumbnailTimes = next().split(',').map((t) => num(t, a)); break;
      case '--thumbnails-track': o.thumbnailsTrack = next(); break;
      case '--text': o.text = next(); break;
      case '--clearkey': o.clearkey = next(); break;
      case '--clearkey-license': o.clearkeyLicense = next(); break;
      case '--seek-through': o.seekThrough = next().split(',').map((v) => num(v, a)); break;
      case '-h': case '--help': usage('help');
      default: usage(`unknown argument ${a}`);
    }
  }
  if (!o.page) usage('--page is required');
  if (!o.manifest) usage('--manifest is required');
  if (!PLAYERS.includes(o.player)) usage(`--player must be one of ${PLAYERS.join(', ')}`);
  return o;
}

const opt = parseArgs(process.argv.slice(2));
const log = (...a) => { if (opt.verbose) process.stderr.write(`[${wall()}s] ${a.join(' ')}\n`); };

const result = {
  ok: false,
  player: opt.player,
  player_version: null,
  manifest: opt.manifest,
  started: false,
  levels: [],
  lowest: null,
  highest: null,
  phases: [],
  errors: [],          // fatal player / media-element errors
  media_errors: [],    // non-fatal player errors that mean broken media
  page_errors: [],     // uncaught exceptions in the page
  console_errors: [],  // console.error lines (diagnostic, not failing by themselves)
  http_errors: [],     // responses >= 400 and failed requests
  text_tracks: null,   // --text: the subtitle tracks the player lists
  cues: [],            // --text: every cue seen on the <video> element's text tracks
  warnings: [],        // non-fatal player errors (diagnostic)
  events: [],
  final_time: null,
  final_state: null,
  reason: null,
  wall_s: null,
};

let ownUserDataDir = false;
const userDataDir = opt.userDataDir || fs.mkdtempSync(path.join(os.tmpdir(), 'abrpipe-chromium-'));
if (!opt.userDataDir) ownUserDataDir = true;
let context = null;
let page = null;
let finishing = null;

function fail(reason) { if (!result.reason) result.reason = reason; }

// Kill every process launched with our (unique) profile dir, by pid.
function killProfileProcesses() {
  let killed = 0;
  let entries = [];
  try { entries = fs.readdirSync('/proc'); } catch { return 0; }
  for (const pid of entries) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    let cmd;
    let stat;
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch { continue; }
    const st = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (st === 'Z' || st === 'X') continue;  // already dead, waiting to be reaped
    if (cmd.includes(`--user-data-dir=${userDataDir}`)) {
      try { process.kill(Number(pid), 'SIGKILL'); killed++; } catch { /* gone */ }
    }
  }
  return killed;
}

async function withTimeout(p, ms, what) {
  let t;
  const timer = new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${what} timed out after ${ms} ms`)), ms); });
  try { return await Promise.race([p, timer]); } finally { clearTimeout(t); }
}

async function snapshot() {
  if (!page) return;
  try {
    const s = await withTimeout(page.evaluate(() => window.abrTest ? {
      errors: window.abrTest.errors(), warnings: window.abrTest.warnings(), media_errors: window.abrTest.defects(),
      events: window.abrTest.events(), state: window.abrTest.state(),
    } : null), 3000, 'final snapshot');
    if (s) {
      result.errors = s.errors;
      result.warnings = s.warnings;
      result.media_errors = s.media_errors;
      result.events = s.events;
      result.final_state = s.state;
      result.final_time = s.state.currentTime;
    }
  } catch (e) { log('snapshot failed:', e.message); }
  if (opt.screenshot) {
    try { await withTimeout(page.screenshot({ path: opt.screenshot }), 5000, 'screenshot'); } catch (e) { log('screenshot failed:', e.message); }
  }
}

function finish(code) {
  if (finishing) return finishing;
  finishing = (async () => {
    clearTimeout(watchdog);
    await snapshot();
    if (context) {
      try { await withTimeout(context.close(), 5000, 'browser close'); } catch (e) { log(e.message); }
    }
    const killed = killProfileProcesses();
    if (killed) log(`killed ${killed} leftover chromium processes`);
    if (ownUserDataDir) { try { fs.rmSync(userDataDir, { recursive: true, force: true }); } catch { /* ignore */ } }
    result.ok = code === 0 && !result.reason && result.errors.length === 0 && result.page_errors.length === 0
      && (opt.allowMediaErrors || result.media_errors.length === 0)
      && (opt.allowHttpErrors || result.http_errors.length === 0)
      && result.phases.length > 0 && result.phases.every((p) => p.ok);
    if (!result.ok && !result.reason) {
      if (result.errors.length) result.reason = `fatal player error: ${JSON.stringify(result.errors[0])}`;
      else if (result.media_errors.length) result.reason = `player error (recovered): ${JSON.stringify(result.media_errors[0])}`;
      else if (result.page_errors.length) result.reason = `page error: ${result.page_errors[0]}`;
      else if (result.http_errors.length) result.reason = `HTTP error: ${JSON.stringify(result.http_errors[0])}`;
      else result.reason = 'not ok';
    }
    result.wall_s = wall();
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(result.ok ? 0 : 1);
  })();
  return finishing;
}

const watchdog = setTimeout(() => {
  fail(`global timeout after ${opt.seconds} s`);
  finish(1);
}, opt.seconds * 1000);
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(sig, () => { fail(`killed by ${sig}`); finish(1); });
}
// Last resort if node dies from an exception: do not leave chromium behind.
process.on('exit', () => { killProfileProcesses(); });

async function state() {
  return page.evaluate(() => window.abrTest.state());
}

async function startPhase() {
  const ph = { name: 'start', ok: false, t0: wall() };
  result.phases.push(ph);
  const deadline = Date.now() + opt.startTimeout * 1000;
  let s;
  while (Date.now() < deadline) {
    s = await state();
    if (s.fatalCount) { ph.detail = 'fatal error before playback started'; break; }
    if (s.defectCount && !opt.allowMediaErrors) { ph.detail = 'player reported broken media'; break; }
    if (s.currentTime > 0.5 && s.readyState >= 2) { ph.ok = true; break; }
    await sleep(100);
  }
  Object.assign(ph, { wall_s: Math.round((wall() - ph.t0) * 100) / 100, current_time: s && s.currentTime, active_level: s && s.activeLevel });
  delete ph.t0;
  if (!ph.ok) { ph.detail = ph.detail || `currentTime did not pass 0.5 s within ${opt.startTimeout} s`; fail(`start: ${ph.detail}`); }
  result.started = ph.ok;
  return ph.ok;
}

// Seek to just before `at` and play through it: currentTime must move on smoothly (no stall, no
// jump of 1.5 s or more) from at - 0.5 to at + 1.
async function seekPhase(at) {
  const ph = { name: `through ${at}`, ok: false, t0: wall(), jumps: 0 };
  result.phases.push(ph);
  const from = Math.max(0, at - 0.5);
  await page.evaluate((t) => { const v = document.getElementById('video'); v.currentTime = t; v.play().catch(() => {}); }, from);
  const deadline = Date.now() + opt.phaseTimeout * 1000;
  let s = null;
  let prev = null;
  let lastProgress = Date.now();
  while (Date.now() < deadline) {
    s = await state();
    if (s.fatalCount) { ph.detail = 'fatal player error'; break; }
    if (s.defectCount && !opt.allowMediaErrors) { ph.detail = 'player reported broken media'; break; }
    if (prev === null || s.currentTime !== prev) lastProgress = Date.now();
    else if (Date.now() - lastProgress > opt.stallTimeout * 1000) {
      ph.detail = `playback stalled at ${s.currentTime} s for ${opt.stallTimeout} s`; break;
    }
    if (prev !== null && s.currentTime - prev >= 1.5) ph.jumps++;
    prev = s.currentTime;
    if (s.currentTime >= from - 0.1 && s.currentTime >= at + 1) { ph.ok = ph.jumps === 0; break; }
    await sleep(100);
  }
  Object.assign(ph, { wall_s: Math.round((wall() - ph.t0) * 100) / 100, current_time: s && s.currentTime });
  delete ph.t0;
  if (!ph.ok) {
    ph.detail = ph.detail || (ph.jumps ? 'playback jumped over the join' : `did not play past ${at + 1} s within ${opt.phaseTimeout} s`);
    fail(`${ph.name}: ${ph.detail}`);
  }
  return ph.ok;
}

async function levelPhase(name, level) {
  const target = result.levels[level];
  const ph = { name, ok: false, level, height: target.height, bandwidth: target.bandwidth, t0: wall(), restarts: 0, jumps: 0 };
  result.phases.push(ph);
  await page.evaluate((i) => window.abrTest.forceLevel(i), level);
  const deadline = Date.now() + opt.phaseTimeout * 1000;
  let s = null;
  let prev = null;
  let played = 0;
  let activeSince = null;
  let lastProgress = Date.now();
  while (Date.now() < deadline) {
    s = await state();
    if (s.fatalCount) { ph.detail = 'fatal player error'; break; }
    if (s.defectCount && !opt.allowMediaErrors) { ph.detail = 'player reported broken media'; break; }
    if (prev === null || s.currentTime !== prev) lastProgress = Date.now();
    else if (Date.now() - lastProgress > opt.stallTimeout * 1000) {
      ph.detail = `playback stalled at ${s.currentTime} s for ${opt.stallTimeout} s`; break;
    }
    const isActive = s.activeLevel === level && (!target.height || s.videoHeight === target.height);
    if (isActive && activeSince === null) activeSince = s.currentTime;
    if (!isActive) played = 0;
    if (prev !== null && isActive) {
      const d = s.currentTime - prev;
      if (d > 0 && d < 1.5) played += d;
      else if (d >= 1.5) ph.jumps++;  // a skip over missing media is not playback
    }
    prev = s.currentTime;
    if (isActive && played >= opt.advance) { ph.ok = true; break; }
    // Short streams may end before the switch is observed: play again from 0.
    const atEnd = s.ended || (Number.isFinite(s.duration) && s.duration > 0 && s.currentTime >= s.duration - 0.3);
    if (atEnd) {
      if (ph.restarts >= 3) { ph.detail = 'stream ended repeatedly before the level was observed'; break; }
      ph.restarts++;
      log(`${name}: restart at ${s.currentTime}`);
      await page.evaluate(() => window.abrTest.restart());
      prev = null;
    }
    await sleep(100);
  }
  Object.assign(ph, {
    wall_s: Math.round((wall() - ph.t0) * 100) / 100,
    played_s: Math.round(played * 1000) / 1000,
    active_level: s && s.activeLevel,
    video_height: s && s.videoHeight,
    current_time: s && s.currentTime,
    active_from: activeSince,
  });
  delete ph.t0;
  if (!ph.ok) {
    ph.detail = ph.detail || (s && s.activeLevel !== level
      ? `player never reported level ${level} active (active=${s && s.activeLevel})`
      : (target.height && s && s.videoHeight !== target.height
        ? `decoded height ${s && s.videoHeight} != level height ${target.height}`
        : `played only ${ph.played_s} s on level ${level} within ${opt.phaseTimeout} s`));
    fail(`${name}: ${ph.detail}`);
  }
  log(`${name}: ${JSON.stringify(ph)}`);
  return ph.ok;
}

async function textPhase(lang) {
  const ph = { name: 'text', ok: false, lang, t0: wall(), restarts: 0 };
  result.phases.push(ph);
  result.text_tracks = await page.evaluate(() => window.abrTest.textTracks());
  ph.selected = await page.evaluate((l) => window.abrTest.selectText(l), lang);
  await page.evaluate(() => window.abrTest.restart());
  const seen = new Map();
  const deadline = Date.now() + opt.phaseTimeout * 1000;
  let s = null;
  while (Date.now() < deadline) {
    s = await state();
    if (s.fatalCount) { ph.detail = 'fatal player error'; break; }
    for (const c of await page.evaluate(() => window.abrTest.cues())) seen.set(`${c.track}|${c.start}|${c.end}|${c.text}`, c);
    const atEnd = s.ended || (Number.isFinite(s.duration) && s.duration > 0 && s.currentTime >= s.duration - 0.3);
    if (atEnd) {
      if (ph.restarts >= 1) { ph.ok = true; break; }
      ph.restarts++;
      await page.evaluate(() => window.abrTest.restart());
    }
    await sleep(100);
  }
  result.cues = [...seen.values()].sort((a, b) => a.start - b.start);
  ph.cues = result.cues.length;
  if (!ph.ok) { ph.detail = ph.detail || `the title did not play to its end twice within ${opt.phaseTimeout} s`; fail(`text: ${ph.detail}`); }
  ph.wall_s = Math.round((wall() - ph.t0) * 100) / 100;
  delete ph.t0;
  return ph.ok;
}

async function main() {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: opt.chromium,
    headless: true,
    args: CHROMIUM_FLAGS,
    handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
    timeout: 30000,
    viewport: { width: 800, height: 450 },
  });
  page = context.pages()[0] || await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' && result.console_errors.length < 50) result.console_errors.push(m.text().slice(0, 500));
    if (opt.verbose) process.stderr.write(`[console.${m.type()}] ${m.text()}\n`);
  });
  page.on('pageerror', (e) => { if (result.page_errors.length < 50) result.page_errors.push(String(e && e.stack || e).slice(0, 1000)); });
  page.on('response', (r) => {
    if (r.status() >= 400 && result.http_errors.length < 50) result.http_errors.push({ url: r.url(), status: r.status() });
  });
  page.on('requestfailed', (r) => {
    const f = r.failure();
    const txt = f ? f.errorText : 'failed';
    // players abort in-flight requests when they flush/switch: not a defect
    if (/ERR_ABORTED/.test(txt)) return;
    if (result.http_errors.length < 50) result.http_errors.push({ url: r.url(), status: null, error: txt });
  });
  page.on('crash', () => fail('page crashed'));

  const sep = opt.page.includes('?') ? '&' : '?';
  const keys = opt.clearkey ? `&clearkey=${encodeURIComponent(opt.clearkey)}` : '';
  const license = opt.clearkeyLicense ? `&clearkey-license=${encodeURIComponent(opt.clearkeyLicense)}` : '';
  await page.goto(`${opt.page}${sep}player=${encodeURIComponent(opt.player)}${keys}${license}`, { waitUntil: 'load', timeout: 15000 });
  result.player_version = await withTimeout(page.evaluate(() => window.abrTestReady.then((t) => t.version)), 15000, 'player script load');

  // load
  const lp = { name: 'load', ok: false };
  result.phases.push(lp);
  const t = wall();
  try {
    result.levels = await withTimeout(page.evaluate((u) => window.abrTest.load(u), opt.manifest), opt.startTimeout * 1000, 'manifest load');
    lp.ok = Array.isArray(result.levels) && result.levels.length > 0;
    if (!lp.ok) lp.detail = 'no video renditions found';
  } catch (e) {
    lp.detail = String(e.message || e).split('\n')[0];
  }
  lp.wall_s = Math.round((wall() - t) * 100) / 100;
  if (!lp.ok) { fail(`load: ${lp.detail}`); return finish(1); }
  log('levels', JSON.stringify(result.levels));
  if (opt.thumbnailTimes) {
    // What the player's seek bar would show at these times (null where the player has no API for it).
    const track = opt.thumbnailsTrack ? new URL(opt.thumbnailsTrack, opt.manifest).href : null;
    result.thumbnails = await withTimeout(page.evaluate(([ts, url]) => window.abrTest.thumbnails(ts, url), [opt.thumbnailTimes, track]),
      15000, 'thumbnails');
  }

  // Audio-only variants (height 0 next to real video levels) are not renditions to pin.
  const hasVideo = result.levels.some((l) => l.height > 0);
  const order = result.levels.map((l, i) => i).filter((i) => !hasVideo || result.levels[i].height > 0).sort((a, b) => {
    const la = result.levels[a]; const lb = result.levels[b];
    return (la.height - lb.height) || (la.bandwidth - lb.bandwidth);
  });
  result.lowest = order[0];
  result.highest = order[order.length - 1];

  if (!(await startPhase())) return finish(1);
  if (opt.text) return finish((await textPhase(opt.text)) ? 0 : 1);
  for (const at of opt.seekThrough) {
    if (!(await seekPhase(at))) return finish(1);
  }
  if (!(await levelPhase('lowest', result.lowest))) return finish(1);
  if (!(await levelPhase('highest', result.highest))) return finish(1);
  return finish(0);
}

main().catch((e) => {
  fail(`driver error: ${String(e && e.message || e).split('\n')[0]}`);
  finish(1);
});
