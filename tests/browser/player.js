// Uniform test API over hls.js, dash.js and Shaka Player.
//
// player.html?player=hlsjs|dashjs|shaka loads that player's dist file from the
// local node_modules (same origin as the media: no CORS) and exposes
//
//   window.abrTestReady        Promise resolved once window.abrTest exists
//   window.abrTest.load(url)   Promise: resolves once the renditions are known
//   window.abrTest.levels()    [{index, height, width, bandwidth, id}]
//   window.abrTest.forceLevel(i)  disable ABR and pin rendition i
//   window.abrTest.activeLevel()  index of the rendition being played (or -1)
//   window.abrTest.errors()    fatal errors collected so far
//   window.abrTest.defects()   non-fatal errors that still mean broken media
//                              (segment 404 retried, unparsable segment skipped)
//   window.abrTest.warnings()  other non-fatal player errors (diagnostics only)
//   window.abrTest.thumbnails(times[, vttUrl])  Promise: image tracks (or the WebVTT thumbnails
//                              track at vttUrl) and the tile for each time (Shaka, dash.js)
//   window.abrTest.currentTime()
//   window.abrTest.state()     snapshot used by the driver (play.mjs)
//
// Retries are lowered on purpose: the media comes from a local server, so a
// 404 or a broken segment is a defect of the stream, not a network hiccup, and
// the harness should report it quickly instead of retrying for a minute.
(function () {
  'use strict';

  var LIBS = {
    hlsjs: 'node_modules/hls.js/dist/hls.min.js',
    dashjs: 'node_modules/dashjs/dist/dash.all.min.js',  // dash.js 4.7 (dash.js 5 needs node >= 20 to install)
    shaka: 'node_modules/shaka-player/dist/shaka-player.compiled.js',
  };
  var MAX_LOG = 100;

  var params = new URLSearchParams(location.search);
  var playerName = params.get('player') || 'hlsjs';
  // ?clearkey=KIDHEX:KEYHEX,... : EME ClearKey keys for protected streams (Shaka, dash.js).
  var clearKeys = {};
  (params.get('clearkey') || '').split(',').filter(Boolean).forEach(function (pair) {
    var kv = pair.split(':');
    clearKeys[kv[0].toLowerCase()] = kv[1].toLowerCase();
  });
  var hasClearKeys = Object.keys(clearKeys).length > 0;
  // ?clearkey-license=URL : a W3C ClearKey license server (hls.js, KEYFORMAT="org.w3.clearkey").
  var clearKeyLicense = params.get('clearkey-license');
  function hexToB64url(hex) {
    var bin = '';
    for (var i = 0; i < hex.length; i += 2) bin += String.fromCharCode(parseInt(hex.substr(i, 2), 16));
    return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }
  var video = document.getElementById('video');
  video.muted = true;
  video.defaultMuted = true;
  video.autoplay = true;

  var fatal = [];
  var defects = [];   // non-fatal errors that still mean the media is broken
  var warnings = [];
  var events = [];
  var levels = [];
  var adapter = null;
  var forced = null;

  function now() { return Math.round(performance.now()) / 1000; }
  function push(list, item) {
    item.at = now();
    item.media_time = video.currentTime;
    if (list.length < MAX_LOG) list.push(item);
  }
  function str(x) {
    if (x === undefined || x === null) return null;
    if (typeof x === 'string') return x;
    if (x instanceof Error) return x.name + ': ' + x.message;
    try { return JSON.stringify(x).slice(0, 500); } catch (e) { return String(x); }
  }
  function addFatal(source, detail) { detail.source = source; push(fatal, detail); }
  function addWarning(source, detail) { detail.source = source; push(warnings, detail); }
  // A player that recovers from a 404 / unparsable segment by skipping it
  // still played a broken stream: such errors are collected apart.
  function addDefect(source, detail) { detail.source = source; push(defects, detail); }
  function note(what, detail) { detail = detail || {}; detail.what = what; push(events, detail); }
  function tryPlay() {
    var p = video.play();
    if (p && p.catch) {
      p.catch(function (e) {
        // "interrupted by a new load request"/"by pause" is normal during a load
        addWarning('video.play', { message: str(e) });
      });
    }
  }

  // The media element itself failing is always fatal, whatever the player says.
  video.addEventListener('error', function () {
    var err = video.error;
    addFatal('video', { code: err ? err.code : null, message: err ? err.message : null });
  });
  ['playing', 'waiting', 'stalled', 'ended', 'seeking', 'seeked'].forEach(function (ev) {
    video.addEventListener(ev, function () { note('video.' + ev, {}); });
  });
  video.addEventListener('resize', function () {
    note('video.resize', { width: video.videoWidth, height: video.videoHeight });
  });

  function sortKey(l) { return [l.height || 0, l.bandwidth || 0]; }

  // ------------------------------------------------------------------ hls.js
  // Non-fatal hls.js errors that are about buffering, not about the media:
  // they happen around a forced switch on a healthy stream too.
  var HLS_STALL_DETAILS = ['bufferStalledError', 'bufferNudgeOnStall', 'bufferSeekOverHole', 'bufferFullError'];
  function hlsjsAdapter() {
    var Hls = window.Hls;
    if (!Hls || !Hls.isSupported()) throw new Error('hls.js: MSE not supported in this browser');
    var retry = { maxNumRetry: 1, retryDelayMs: 250, maxRetryDelayMs: 500 };
    var policy = {
      default: {
        maxTimeToFirstByteMs: 10000, maxLoadTimeMs: 20000,
        timeoutRetry: retry, errorRetry: retry,
      },
    };
    var hls = new Hls({
      debug: false,
      enableWorker: true,
      capLevelToPlayerSize: false,
      startLevel: -1,
      fragLoadPolicy: policy,
      playlistLoadingPolicy: policy,
      manifestLoadingPolicy: policy,
      appendErrorMaxRetry: 1,
      emeEnabled: !!clearKeyLicense,
      drmSystems: clearKeyLicense ? { 'org.w3.clearkey': { licenseUrl: clearKeyLicense } } : {},
    });
    var active = -1;
    window.__hls = hls;
    return {
      name: 'hlsjs',
      version: Hls.version,
      load: function (url) {
        return new Promise(function (resolve, reject) {
          hls.on(Hls.Events.ERROR, function (_e, d) {
            var info = {
              type: d.type, details: d.details, fatal: !!d.fatal,
              url: (d.frag && d.frag.url) || (d.context && d.context.url) || d.url || null,
              status: d.response ? d.response.code : null,
              reason: d.reason || str(d.error) || null,
            };
            if (d.fatal) { addFatal('hlsjs', info); reject(new Error('hls.js fatal: ' + d.details)); }
            else if (HLS_STALL_DETAILS.indexOf(d.details) >= 0) addWarning('hlsjs', info);
            else addDefect('hlsjs', info);
          });
          // LEVEL_SWITCHED fires when the first fragment of another level
          // starts *playing* (stream-controller fragPlaying change).
          hls.on(Hls.Events.LEVEL_SWITCHED, function (_e, d) {
            active = d.level;
            note('hlsjs.LEVEL_SWITCHED', { level: d.level });
          });
          hls.on(Hls.Events.MANIFEST_PARSED, function () {
            levels = hls.levels.map(function (l, i) {
              return { index: i, id: String(i), height: l.height || 0, width: l.width || 0,
                       bandwidth: l.bitrate || 0, codecs: l.codecs || l.videoCodec || null };
            });
            tryPlay();
            resolve(levels);
          });
          hls.attachMedia(video);
          hls.loadSource(url);
        });
      },
      forceLevel: function (i) { hls.currentLevel = i; },  // manual level, ABR off, buffer flushed
      textTracks: function () {
        return hls.subtitleTracks.map(function (t) {
          return { lang: t.lang || null, label: t.name || null, forced: !!t.forced, default: !!t.default };
        });
      },
      selectText: function (lang) {
        var i = hls.subtitleTracks.findIndex(function (t) { return t.lang === lang; });
        hls.subtitleDisplay = true;
        hls.subtitleTrack = i;
        return i;
      },
      activeLevel: function () { return active; },
      extra: function () { return { autoLevelEnabled: hls.autoLevelEnabled, loadLevel: hls.loadLevel }; },
    };
  }

  // ------------------------------------------------------------------ dash.js
  function dashjsAdapter() {
    var dashjs = window.dashjs;
    if (!dashjs) throw new Error('dash.js did not load');
    var player = dashjs.MediaPlayer().create();
    var E = dashjs.MediaPlayer.events;
    var v5 = typeof player.getRepresentationsByType === 'function';
    var renderedId = null;
    var kind = 'video';  // the renditions to pin: 'audio' for an audio-only title
    window.__dashjs = player;
    if (hasClearKeys) {
      var ck = {};
      Object.keys(clearKeys).forEach(function (kid) { ck[hexToB64url(kid)] = hexToB64url(clearKeys[kid]); });
      player.setProtectionData({ 'org.w3.clearkey': { clearkeys: ck } });
    }
    player.updateSettings({
      debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING },
      streaming: {
        abr: { autoSwitchBitrate: { video: true, audio: true } },
        retryAttempts: { MPD: 1, MediaSegment: 1, InitializationSegment: 1, IndexSegment: 1, BitstreamSwitchingSegment: 1, other: 1 },
        retryIntervals: { MPD: 250, MediaSegment: 250, InitializationSegment: 250, IndexSegment: 250, BitstreamSwitchingSegment: 250, other: 250 },
      },
    });
    function currentRep() {
      if (v5) {
        var r = player.getCurrentRepresentationForType(kind);
        return r ? String(r.id) : null;
      }
      return String(player.getQualityFor(kind));
    }
    return {
      name: 'dashjs',
      version: player.getVersion(),
      load: function (url) {
        return new Promise(function (resolve, reject) {
          player.on(E.ERROR, function (e) {
            var err = e.error || {};
            addFatal('dashjs', { code: err.code || null, message: err.message || str(e.error) });
            reject(new Error('dash.js error ' + (err.code || '') + ' ' + (err.message || '')));
          });
          player.on(E.PLAYBACK_ERROR, function (e) {
            addFatal('dashjs.playback', { message: str(e.error) });
          });
          player.on(E.QUALITY_CHANGE_RENDERED, function (e) {
            if (e.mediaType !== kind) return;
            if (e.newRepresentation) renderedId = String(e.newRepresentation.id);
            else if (e.newQuality !== undefined) renderedId = String(e.newQuality);  // dash.js 4
            note('dashjs.QUALITY_CHANGE_RENDERED', { id: renderedId });
          });
          player.on(E.STREAM_INITIALIZED, function () {
            if (v5 && player.getRepresentationsByType('video').length === 0) kind = 'audio';
            if (!v5 && player.getBitrateInfoListFor('video').length === 0) kind = 'audio';  // dash.js 4
            if (v5) {
              levels = player.getRepresentationsByType(kind).map(function (r, i) {
                return { index: i, id: String(r.id), height: r.height || 0, width: r.width || 0,
                         bandwidth: r.bandwidth || 0, codecs: r.codecs || null };
              });
            } else {
              levels = player.getBitrateInfoListFor(kind).map(function (b, i) {
                return { index: i, id: String(b.qualityIndex), height: b.height || 0, width: b.width || 0,
                         bandwidth: b.bitrate || 0, codecs: null };
              });
            }
            // What is rendered before any switch is the start representation.
            if (renderedId === null) renderedId = currentRep();
            tryPlay();
            resolve(levels);
          });
          player.initialize(video, url, true);
        });
      },
      forceLevel: function (i) {
        var off = {};
        off[kind] = false;
        player.updateSettings({ streaming: { abr: { autoSwitchBitrate: off } } });
        var l = levels[i];
        if (typeof player.setRepresentationForTypeById === 'function') {
          player.setRepresentationForTypeById(kind, l.id, true);
        } else if (typeof player.setRepresentationForTypeByIndex === 'function') {
          player.setRepresentationForTypeByIndex(kind, i, true);
        } else {
          player.setQualityFor(kind, i, true);  // dash.js <= 4
        }
      },
      activeLevel: function () {
        for (var i = 0; i < levels.length; i++) if (levels[i].id === renderedId) return i;
        return -1;
      },
      // Seek-bar thumbnails from the MPD's image AdaptationSet (dash.js's provideThumbnail).
      thumbnails: function (times) {
        var wanted = times.map(function (t) {
          return new Promise(function (resolve) { player.provideThumbnail(t, resolve); });
        });
        return Promise.all(wanted).then(function (list) {
          return {
            tracks: null,
            thumbnails: list.map(function (th, i) {
              return th && { time: times[i], uri: th.url, x: th.x, y: th.y, width: th.width, height: th.height };
            }),
          };
        });
      },
      textTracks: function () {
        return player.getTracksFor('text').map(function (t) {
          return { lang: t.lang || null, label: (t.labels && t.labels[0] && t.labels[0].text) || null,
                   roles: (t.roles || []).map(function (r) { return r.value || r; }) };
        });
      },
      selectText: function (lang) {
        var t = player.getTracksFor('text').filter(function (t) { return t.lang === lang; })[0];
        if (!t) return -1;
        player.enableText(true);
        player.setCurrentTrack(t);
        return 0;
      },
      extra: function () { return { requested: currentRep(), rendered: renderedId }; },
    };
  }

  // ------------------------------------------------------------------ Shaka
  function shakaAdapter() {
    var shaka = window.shaka;
    if (!shaka) throw new Error('Shaka Player did not load');
    shaka.polyfill.installAll();
    if (!shaka.Player.isBrowserSupported()) throw new Error('Shaka: browser not supported');
    var player = new shaka.Player();
    window.__shaka = player;
    var retry = { maxAttempts: 2, baseDelay: 250, backoffFactor: 1, fuzzFactor: 0, timeout: 10000 };
    player.configure({
      streaming: { retryParameters: retry },
      manifest: { retryParameters: retry },
      abr: { enabled: true, restrictToElementSize: false },
    });
    if (hasClearKeys) player.configure({ drm: { clearKeys: clearKeys } });
    // Shaka's tracks are variants (video x audio); a level is one video stream, or one audio
    // stream for an audio-only title.
    var videoIds = [];
    var key = 'videoId';
    function variantLevel(t) { return videoIds.indexOf(t[key]); }
    return {
      name: 'shaka',
      version: shaka.Player.version,
      load: function (url) {
        player.addEventListener('error', function (ev) {
          var e = ev.detail || {};
          var info = { severity: e.severity, category: e.category, code: e.code, data: str(e.data) };
          if (e.severity === 2 /* CRITICAL */) addFatal('shaka', info);
          // recoverable NETWORK (1), MEDIA (3) or MANIFEST (4) errors: broken media
          else if ([1, 3, 4].indexOf(e.category) >= 0) addDefect('shaka', info);
          else addWarning('shaka', info);
        });
        player.addEventListener('variantchanged', function () { note('shaka.variantchanged', {}); });
        player.addEventListener('adaptation', function () { note('shaka.adaptation', {}); });
        return player.attach(video).then(function () {
          return player.load(url);
        }).then(function () {
          var byId = {};
          var tracks = player.getVariantTracks();
          if (!tracks.some(function (t) { return t.videoId !== null && t.videoId !== undefined; })) key = 'audioId';
          tracks.forEach(function (t) {
            var id = t[key];
            if (id === null || id === undefined || byId[id]) return;
            byId[id] = { id: String(id), videoId: id, height: t.height || 0, width: t.width || 0,
                         bandwidth: (key === 'videoId' ? t.videoBandwidth : t.audioBandwidth) || t.bandwidth || 0,
                         codecs: (key === 'videoId' ? t.videoCodec : t.audioCodec) || null };
          });
          var list = Object.keys(byId).map(function (k) { return byId[k]; });
          list.sort(function (a, b) { return (a.bandwidth - b.bandwidth) || (a.height - b.height); });
          videoIds = list.map(function (l) { return l.videoId; });
          levels = list.map(function (l, i) {
            return { index: i, id: l.id, height: l.height, width: l.width, bandwidth: l.bandwidth, codecs: l.codecs };
          });
          tryPlay();
          return levels;
        }, function (e) {
          addFatal('shaka.load', { severity: e && e.severity, category: e && e.category, code: e && e.code, data: str(e && e.data), message: str(e) });
          throw new Error('Shaka load failed: ' + (e && e.code));
        });
      },
      forceLevel: function (i) {
        player.configure({ abr: { enabled: false } });
        var tracks = player.getVariantTracks();
        var cur = tracks.filter(function (t) { return t.active; })[0];
        var want = videoIds[i];
        var cands = tracks.filter(function (t) { return t[key] === want; });
        // keep the audio that is playing if that variant exists
        var pick = (key === 'videoId' && cands.filter(function (t) { return cur && t.audioId === cur.audioId; })[0]) || cands[0];
        if (!pick) throw new Error('Shaka: no variant for level ' + i);
        player.selectVariantTrack(pick, /* clearBuffer */ true);
      },
      activeLevel: function () {
        var t = player.getVariantTracks().filter(function (t) { return t.active; })[0];
        return t ? variantLevel(t) : -1;
      },
      // Seek-bar thumbnails: the image tracks Shaka found, and the tile it picks for each time.
      // With trackUrl, a sidecar WebVTT thumbnails track is added first and read instead.
      thumbnails: function (times, trackUrl) {
        var added = trackUrl ? player.addThumbnailsTrack(trackUrl, 'text/vtt').then(function (t) { return [t]; })
                             : Promise.resolve(player.getImageTracks());
        return added.then(function (tracks) {
          if (!tracks.length) return { tracks: [], thumbnails: [] };
          var wanted = times.map(function (t) { return player.getThumbnails(tracks[0].id, t); });
          return Promise.all(wanted).then(function (list) {
            return {
              tracks: tracks.map(function (t) {
                return { id: t.id, width: t.width, height: t.height, mimeType: t.mimeType, tilesLayout: t.tilesLayout };
              }),
              thumbnails: list.map(function (th, i) {
                return th && { time: times[i], uri: th.uris[0], x: th.positionX, y: th.positionY, width: th.width,
                               height: th.height, imageWidth: th.imageWidth, imageHeight: th.imageHeight,
                               startTime: th.startTime, duration: th.duration };
              }),
            };
          });
        });
      },
      textTracks: function () {
        return player.getTextTracks().map(function (t) {
          return { lang: t.language || null, label: t.label || null, forced: !!t.forced, roles: t.roles || [] };
        });
      },
      selectText: function (lang) {
        var t = player.getTextTracks().filter(function (t) { return t.language === lang; })[0];
        if (!t) return -1;
        player.selectTextTrack(t);  // Shaka 5: selecting a text track shows it
        // Shaka (HLS) places WebVTT cues with a timestamp offset it learns from the next *video*
        // append; a text track chosen after the whole (short) title is buffered would wait for one
        // forever and show nothing. Re-selecting the playing variant with clearBuffer refetches it.
        var cur = player.getVariantTracks().filter(function (v) { return v.active; })[0];
        if (cur) player.selectVariantTrack(cur, /* clearBuffer */ true);
        return 0;
      },
      extra: function () {
        var s = player.getStats();
        return { statsHeight: s.height, statsWidth: s.width, abrEnabled: player.getConfiguration().abr.enabled };
      },
    };
  }

  var factories = { hlsjs: hlsjsAdapter, dashjs: dashjsAdapter, shaka: shakaAdapter };

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var s = document.createElement('script');
      s.src = src;
      s.onload = function () { resolve(); };
      s.onerror = function () { reject(new Error('could not load ' + src)); };
      document.head.appendChild(s);
    });
  }

  window.abrTestReady = (function () {
    if (!factories[playerName]) return Promise.reject(new Error('unknown player ' + playerName));
    return loadScript(LIBS[playerName]).then(function () {
      adapter = factories[playerName]();
      window.abrTest = {
        player: playerName,
        version: adapter.version,
        load: function (url) { return adapter.load(url); },
        levels: function () { return levels; },
        forceLevel: function (i) {
          if (i < 0 || i >= levels.length) throw new Error('no level ' + i);
          forced = i;
          note('forceLevel', { level: i });
          adapter.forceLevel(i);
        },
        activeLevel: function () { return adapter.activeLevel(); },
        thumbnails: function (times, trackUrl) {
          return adapter.thumbnails ? adapter.thumbnails(times, trackUrl) : Promise.resolve(null);
        },
        // Subtitles: the player's list, its choice, and the cues it put on the <video> element.
        textTracks: function () { return adapter.textTracks(); },
        selectText: function (lang) { note('selectText', { lang: lang }); return adapter.selectText(lang); },
        cues: function () {
          var out = [];
          for (var i = 0; i < video.textTracks.length; i++) {
            var tt = video.textTracks[i];
            if (!tt.cues) continue;  // a disabled track has no cue list
            for (var j = 0; j < tt.cues.length; j++) {
              var c = tt.cues[j];
              out.push({ track: tt.language || tt.label || '', mode: tt.mode, start: Math.round(c.startTime * 1000) / 1000,
                         end: Math.round(c.endTime * 1000) / 1000, text: c.text || '' });
            }
          }
          return out;
        },
        errors: function () { return fatal; },
        warnings: function () { return warnings; },
        defects: function () { return defects; },
        events: function () { return events; },
        currentTime: function () { return video.currentTime; },
        restart: function () { video.currentTime = 0; tryPlay(); },
        state: function () {
          var extra = null;
          try { extra = adapter.extra(); } catch (e) { extra = { error: str(e) }; }
          return {
            currentTime: video.currentTime,
            duration: video.duration,
            paused: video.paused,
            ended: video.ended,
            readyState: video.readyState,
            videoWidth: video.videoWidth,
            videoHeight: video.videoHeight,
            activeLevel: adapter.activeLevel(),
            forcedLevel: forced,
            fatalCount: fatal.length,
            defectCount: defects.length,
            extra: extra,
          };
        },
      };
      return window.abrTest;
    });
  })();
  window.abrTestReady.catch(function (e) { addFatal('page', { message: str(e) }); });
})();
