// abrpipe preview page: Shaka Player (vendored) on the output served by `abrpipe serve`.
//
// /?manifest=NAME picks the manifest (default: master.m3u8, else the first MPD). The page lists
// the renditions, pins one (ABR off) or goes back to ABR, shows the decoded resolution and the
// bit rate of the rendition playing, offers the subtitles and the thumbnails the manifest carries,
// and plays ClearKey-protected outputs through the server's license endpoint when it has the keys.
//
// window.abrPlayer is the page's own API (used by the tests):
//   ready            Promise resolved with the renditions once the manifest is loaded
//   renditions()     [{id, width, height, bandwidth, codecs}]
//   pin(id) / auto() pin a rendition (ABR off) / back to ABR
//   state()          {manifest, loading, currentTime, readyState, videoWidth, videoHeight, active, pinned,
//                     errors, now, texts, images}
//   load(name)       load another manifest of the output
(function () {
  'use strict';

  var video = document.getElementById('video');
  var nowEl = document.getElementById('now');
  var errorEl = document.getElementById('error');
  var tbody = document.getElementById('renditions');
  var autoBtn = document.getElementById('auto');
  var errors = [];
  var pinned = null;
  var player = null;
  var imageTrack = null;
  var current = null;  // manifest name

  function fmtBps(bps) {
    if (!bps) return '–';
    return bps >= 1e6 ? (bps / 1e6).toFixed(2) + ' Mb/s' : Math.round(bps / 1e3) + ' kb/s';
  }

  function report(where, err) {
    var detail = err && err.code !== undefined
      ? 'Shaka error ' + err.code + (err.data && err.data.length ? ' ' + JSON.stringify(err.data).slice(0, 300) : '')
      : String(err && err.message || err);
    errors.push({ where: where, detail: detail });
    errorEl.textContent = errors.map(function (e) { return e.where + ': ' + e.detail; }).join('\n');
    console.error('abrpipe player: ' + where + ': ' + detail);
  }

  // One row per video rendition (variants that share the active audio), or per audio
  // rendition for an audio-only output.
  function renditions() {
    if (!player) return [];
    var tracks = player.getVariantTracks();
    var active = tracks.filter(function (t) { return t.active; })[0];
    var hasVideo = tracks.some(function (t) { return t.height; });
    var seen = {};
    var out = [];
    tracks.forEach(function (t) {
      if (active && hasVideo && t.audioId !== active.audioId) return;
      var key = hasVideo ? t.videoId : t.audioId;
      if (seen[key]) return;
      seen[key] = true;
      out.push({
        id: t.id, width: t.width || 0, height: t.height || 0, bandwidth: t.bandwidth || 0,
        codecs: t.codecs || [t.videoCodec, t.audioCodec].filter(Boolean).join(','), active: !!t.active,
      });
    });
    out.sort(function (a, b) { return (b.height - a.height) || (b.bandwidth - a.bandwidth); });
    return out;
  }

  function activeTrack() {
    if (!player) return null;
    return player.getVariantTracks().filter(function (t) { return t.active; })[0] || null;
  }

  function render() {
    var rows = renditions();
    tbody.textContent = '';
    rows.forEach(function (r) {
      var tr = document.createElement('tr');
      tr.dataset.id = r.id;
      if (r.active) tr.className = 'active';
      [r.height ? r.width + 'x' + r.height : 'audio', fmtBps(r.bandwidth), r.codecs].forEach(function (text) {
        var td = document.createElement('td');
        td.textContent = text;
        tr.appendChild(td);
      });
      var td = document.createElement('td');
      var b = document.createElement('button');
      b.textContent = 'pin';
      b.className = pinned === r.id ? 'on' : '';
      b.addEventListener('click', function () { pin(r.id); });
      td.appendChild(b);
      tr.appendChild(td);
      tbody.appendChild(tr);
    });
    autoBtn.className = pinned === null ? 'on' : '';
    showNow();
  }

  function showNow() {
    var t = activeTrack();
    var stats = player ? player.getStats() : null;
    var parts = [];
    if (video.videoWidth) parts.push(video.videoWidth + 'x' + video.videoHeight);
    if (t) parts.push(fmtBps(t.bandwidth));
    if (stats && stats.estimatedBandwidth) parts.push('estimated ' + fmtBps(stats.estimatedBandwidth));
    parts.push(pinned === null ? 'ABR' : 'pinned');
    nowEl.textContent = (current ? current + ': ' : '') + parts.join(' · ');
  }

  function pin(id) {
    var t = player.getVariantTracks().filter(function (v) { return v.id === id; })[0];
    if (!t) throw new Error('no rendition ' + id);
    pinned = id;
    player.configure({ abr: { enabled: false } });
    player.selectVariantTrack(t, /* clearBuffer */ true);
    render();
  }

  function auto() {
    pinned = null;
    player.configure({ abr: { enabled: true } });
    render();
  }

  function setupTexts() {
    var box = document.getElementById('texts');
    var select = document.getElementById('text');
    var tracks = player.getTextTracks();
    box.hidden = tracks.length === 0;
    select.textContent = '';
    var off = document.createElement('option');
    off.value = '';
    off.textContent = 'off';
    select.appendChild(off);
    tracks.forEach(function (t) {
      var o = document.createElement('option');
      o.value = String(t.id);
      o.textContent = (t.label || t.language || 'text ' + t.id) + (t.kind ? ' (' + t.kind + ')' : '');
      select.appendChild(o);
    });
    select.onchange = function () {
      var id = select.value;
      var t = tracks.filter(function (x) { return String(x.id) === id; })[0];
      player.selectTextTrack(t || null);  // Shaka 5: selecting a track shows it
    };
  }

  function setupThumbnails() {
    var box = document.getElementById('thumbs');
    var scrub = document.getElementById('scrub');
    var thumb = document.getElementById('thumb');
    var images = player.getImageTracks();
    imageTrack = images.length ? images[images.length - 1] : null;
    box.hidden = !imageTrack;
    if (!imageTrack) return;
    scrub.max = String(video.duration || 0);
    scrub.oninput = function () {
      var at = Number(scrub.value);
      player.getThumbnails(imageTrack.id, at).then(function (th) {
        if (!th) return;
        thumb.style.display = 'block';
        thumb.style.width = th.width + 'px';
        thumb.style.height = th.height + 'px';
        thumb.style.backgroundImage = 'url("' + th.uris[0] + '")';
        thumb.style.backgroundPosition = '-' + th.positionX + 'px -' + th.positionY + 'px';
      }).catch(function (e) { report('thumbnail', e); });
    };
    scrub.onchange = function () { video.currentTime = Number(scrub.value); };
  }

  function manifestButtons(info) {
    var box = document.getElementById('manifests');
    box.textContent = '';
    info.manifests.hls.concat(info.manifests.dash).forEach(function (name) {
      var b = document.createElement('button');
      b.textContent = (/\.mpd$/i.test(name) ? 'DASH ' : 'HLS ') + name;
      b.className = name === current ? 'on' : '';
      b.addEventListener('click', function () { load(name); });
      box.appendChild(b);
      box.appendChild(document.createTextNode(' '));
    });
  }

  var info = null;

  var loading = false;

  function load(name) {
    loading = true;
    current = name;
    pinned = null;
    player.configure({ abr: { enabled: true } });
    var params = new URLSearchParams(location.search);
    params.set('manifest', name);
    history.replaceState(null, '', '?' + params.toString());
    manifestButtons(info);
    return player.load('/' + name.split('/').map(encodeURIComponent).join('/')).then(function () {
      loading = false;
      render();
      setupTexts();
      setupThumbnails();
      return renditions();
    });
  }

  function start() {
    shaka.polyfill.installAll();
    if (!shaka.Player.isBrowserSupported()) throw new Error('this browser cannot play MSE/EME streams');
    player = new shaka.Player();
    var config = {
      streaming: { retryParameters: { maxAttempts: 2, baseDelay: 250, timeout: 10000 } },
      manifest: { retryParameters: { maxAttempts: 2, baseDelay: 250, timeout: 10000 } },
    };
    if (info.clearkey) {
      config.drm = { servers: { 'org.w3.clearkey': info.license_url } };
      document.getElementById('drm').textContent = 'ClearKey license server: ' + info.license_url;
    }
    player.configure(config);
    player.addEventListener('error', function (e) { report('player', e.detail); });
    ['adaptation', 'variantchanged', 'trackschanged'].forEach(function (ev) {
      player.addEventListener(ev, function () { if (ev === 'trackschanged') render(); else showNow(); });
    });
    video.addEventListener('resize', render);
    video.addEventListener('error', function () { report('video', video.error && video.error.message || 'media error'); });
    setInterval(showNow, 1000);
    autoBtn.addEventListener('click', auto);
    var wanted = new URLSearchParams(location.search).get('manifest');
    var all = info.manifests.hls.concat(info.manifests.dash);
    var name = wanted || all[0];
    if (!name) throw new Error('no master.m3u8 and no .mpd in the served directory');
    return player.attach(video).then(function () { return load(name); });
  }

  var ready = fetch('/_abrpipe/info')
    .then(function (r) { return r.json(); })
    .then(function (i) { info = i; return start(); })
    .catch(function (e) { report('load', e); throw e; });
  ready.catch(function () { /* reported above */ });

  window.abrPlayer = {
    ready: ready,
    renditions: renditions,
    pin: pin,
    auto: auto,
    load: load,
    state: function () {
      var t = activeTrack();
      return {
        manifest: current, loading: loading, currentTime: video.currentTime, readyState: video.readyState, paused: video.paused,
        ended: video.ended, duration: video.duration, videoWidth: video.videoWidth, videoHeight: video.videoHeight,
        active: t ? { id: t.id, width: t.width, height: t.height, bandwidth: t.bandwidth } : null,
        pinned: pinned, errors: errors.slice(), now: nowEl.textContent,
        texts: player ? player.getTextTracks().length : 0, images: player ? player.getImageTracks().length : 0,
      };
    },
  };
})();
