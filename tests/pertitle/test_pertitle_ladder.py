"""Per-title ladder plumbing without media: sampling, candidates, trial commands, rounding, the profile
it produces (and its TOML round trip), and the ladder comparison maths."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

import pytest
from pertitle_research_grid import LOW, points

from abrpipe import registry
from abrpipe.errors import ProfileError
from abrpipe.pertitle import hull, ladder
from abrpipe.pertitle.analysis import (
    AnalysisOptions,
    Window,
    build_trial_command,
    candidates,
    crf_grid,
    crf_plan,
    monotone,
    place_in_shots,
    sample_windows,
    single_codec,
)
from abrpipe.pertitle.compare import MeasuredRung, compare_ladders, reference_filters
from abrpipe.plan import plan_ladder
from abrpipe.probe import SourceMedia, VideoTrack
from abrpipe.profile import AudioRungSpec, VideoRungSpec


def source(w=1280, h=720, fps=Fraction(30), *, duration=60.0, rotation=0, vfr=False, interlaced=False) -> SourceMedia:
    video = VideoTrack(
        index=0, codec="h264", width=w, height=h, sample_aspect=Fraction(1), rotation_deg=rotation, frame_rate=fps,
        variable_frame_rate=vfr, interlaced=interlaced, pix_fmt="yuv420p", bit_depth=8, color_transfer=None,
        frame_count=None,
    )  # fmt: skip
    return SourceMedia(path="/x/in.mp4", format_name="mov,mp4", duration_s=duration, size_bytes=1, bit_rate=None,
                       video=video, audio=())  # fmt: skip


# --------------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "starts", "length"),
    [
        (4.0, [0.0], None),  # short: the whole title in one piece
        (9.0, [0.0, 4.5], [4.5, None]),  # short but > 5 s: whole, in two pieces
        (10.0, [0.667, 4.0, 7.333], 2.0),  # K = clamp(ceil(10/8), 3, 8) = 3, centred in three equal parts
        (30.0, [2.75, 10.25, 17.75, 25.25], 2.0),  # K = ceil(30/8) = 4
        (60.0, [2.75 + 7.5 * i for i in range(8)], 2.0),  # K = 8
        (7200.0, None, 2.0),  # long: K = 8
    ],
)
def test_sample_windows(duration, starts, length):
    windows = sample_windows(duration)
    if starts is not None:
        assert [w.start_s for w in windows] == starts
    if isinstance(length, list):
        assert [w.duration_s for w in windows] == length
    else:
        assert all(w.duration_s == length for w in windows)
    if duration == 7200.0:
        assert len(windows) == 8
    for w in windows:
        assert 0 <= w.start_s and w.start_s + (w.duration_s or 0) <= duration
    assert [w.start_s for w in windows] == sorted({w.start_s for w in windows})  # distinct, in order


def test_sample_windows_options_and_errors():
    assert len(sample_windows(3600, AnalysisOptions(max_segments=4))) == 4
    assert sample_windows(30, AnalysisOptions(whole_below_s=60, whole_piece_s=100)) == (Window(0.0, None),)
    with pytest.raises(ValueError):
        sample_windows(0)


# --------------------------------------------------------------------------------------------------
# candidates and trial commands
# --------------------------------------------------------------------------------------------------


def test_candidates_are_the_profile_sizes_up_to_the_source():
    prof = registry.load("default")
    src = source()
    cands = candidates(src, prof, plan_ladder(src, prof))
    assert [(c.width, c.height) for c in cands] == [(1280, 720), (960, 540), (768, 432), (640, 360), (416, 234)]
    # each size keeps its first (highest-bitrate) profile rung's settings
    assert [c.spec.bitrate_kbps for c in cands] == [4500, 2000, 1100, 365, 145]
    assert cands[2].spec.max_fps == 30


def test_candidates_for_portrait_and_tiny_sources():
    prof = registry.load("default")
    portrait = source(720, 1280)
    assert [(c.width, c.height) for c in candidates(portrait, prof, plan_ladder(portrait, prof))][:2] == [
        (720, 1280), (540, 960)]  # fmt: skip
    tiny = source(200, 112)  # smaller than every rung: one candidate at the source size
    cands = candidates(tiny, prof, plan_ladder(tiny, prof))
    assert [(c.width, c.height) for c in cands] == [(200, 112)]


def test_single_codec_refuses_multi_codec_and_hardware_profiles():
    prof = registry.load("default")
    assert single_codec(prof) == "h264"
    mixed = replace(prof, rungs=(*prof.rungs[:2], replace(prof.rungs[2], codec="hevc")))
    with pytest.raises(ProfileError, match="single-codec profile, this one has h264, hevc"):
        single_codec(mixed)
    nvenc = replace(prof, rungs=tuple(replace(r, codec="h264-nvenc") for r in prof.rungs))
    with pytest.raises(ProfileError, match="software encoder with a CRF mode"):
        single_codec(nvenc)


def test_windows_are_moved_into_one_shot():
    even = sample_windows(30.0)  # 2.75, 10.25, 17.75, 25.25
    cuts = [3.1, 9.0, 9.8, 16.0, 24.0, 27.5]
    placed = place_in_shots(even, cuts, 30.0)
    # each window is centred on the longest shot of its quarter of the title: no window straddles a cut
    assert [w.start_s for w in placed] == [4.3, 11.4, 18.25, 24.75]
    for w in placed:
        assert not any(w.start_s < c < w.start_s + 2.0 for c in cuts)
    assert place_in_shots(even, [], 30.0) == even  # no cuts: evenly spread as before
    # a part whose shots are all shorter than a window: the window stays inside the part
    short = place_in_shots(sample_windows(30.0), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 30.0)
    assert 0.0 <= short[0].start_s <= 7.5 - 2.0
    whole = sample_windows(6.0)
    assert place_in_shots(whole, [2.0], 6.0) == whole  # whole-title pieces are not moved


def test_crf_plan_is_a_diagonal_through_the_grid():
    sizes = [(1280, 720), (960, 540), (768, 432), (640, 360), (416, 234)]
    plan = crf_plan("h264", list(reversed(sizes)))  # any order in, by size out
    assert plan == {(1280, 720): (18, 24, 30), (960, 540): (21, 27, 33), (768, 432): (24, 30, 36),
                    (640, 360): (27, 33, 39), (416, 234): (30, 36, 42)}  # fmt: skip
    assert sum(len(v) for v in plan.values()) == 15  # instead of 25
    assert crf_plan("h264", [(640, 360)]) == {(640, 360): (18, 24, 30, 36, 42)}  # one size: the whole grid
    # fewer sizes (a small source) slide as far per size as five do, not across the whole grid
    assert crf_plan("vp9", sizes[:2]) == {(1280, 720): (24, 32, 40), (960, 540): (28, 36, 44)}
    assert crf_plan("h264", [(640, 272), (416, 176)]) == {(640, 272): (18, 24, 30), (416, 176): (21, 27, 33)}
    # more sizes than five slide less per size, over the same span
    six = crf_plan("h264", [(1920, 1080), *sizes])
    assert six[(1920, 1080)] == (18, 24, 30) and six[(416, 234)] == (30, 36, 42) and six[(960, 540)] == (23, 29, 35)


def test_crf_grids():
    assert crf_grid("h264") == (18, 24, 30, 36, 42)
    assert len(crf_grid("av1")) == 5 and crf_grid("vp9") != crf_grid("h264")


def test_trial_command_decodes_once_and_uses_the_final_encoder_settings():
    prof = registry.load("720p")
    src = source(fps=Fraction(60))  # 60 fps: the 360p/234p rungs are capped at 30 fps
    plan = plan_ladder(src, replace(prof, audio=()))
    cands = candidates(src, prof, plan)
    argv, trials, refs = build_trial_command(src, plan, cands, {c.resolution: (20, 30) for c in cands}, Window(12.5, 2.0),
                                             (1280, 720), (6600, 13200))  # fmt: skip
    assert argv.count("-i") == 1
    i = argv.index("-i")
    assert argv[i - 4 : i] == ["-ss", "12.500000", "-t", "2.000000"]
    graph = argv[argv.index("-filter_complex") + 1]
    assert graph.count("fps=fps=60") == 1  # one decode, one frame grid ...
    assert graph.count(f"split={len(cands) + 2}") == 1  # ... fanned out to every size and 2 references
    assert graph.count("fps=fps=30") == 3  # 360p, 234p and the 30-fps reference
    for c in cands:
        assert graph.count(f"scale={c.width}:{c.height}:flags=bicubic") == (3 if c.height == 720 else 1)  # + 2 references
    assert len(trials) == 2 * len(cands) and set(refs) == {1, 2}
    assert argv.count("libx264") == len(trials) and argv.count("veryfast") == len(trials)
    assert argv.count("-crf") == len(trials)
    assert argv.count("-threads") == len(trials)  # one encoder thread per trial: they run side by side
    assert "expr:eq(mod(n,120),0)" in argv and "expr:eq(mod(n,60),0)" in argv  # the ladder's GOP, per frame rate
    assert argv.count("6600k") == len(trials)  # the loose trial cap
    whole, _, _ = build_trial_command(src, plan, cands, {c.resolution: (20,) for c in cands}, Window(0.0, None),
                                      (1280, 720), (6600, 13200))  # fmt: skip
    assert "-ss" not in whole and "-t" not in whole


def test_reference_filters_follow_the_encoders_frame_grid():
    prof = registry.load("720p")
    plain = source()
    plan = plan_ladder(plain, prof)
    # Always the encoder's own frame grid and pixel format, even for a source that declares a constant
    # rate: its timestamps may still have holes that the encoder fills.
    assert all(reference_filters(plain, plan, r) == ["fps=fps=30", "format=pix_fmts=yuv420p"] for r in plan.video[:2])
    fast = source(fps=Fraction(60))
    plan = plan_ladder(fast, prof)
    assert reference_filters(fast, plan, plan.video[0]) == ["fps=fps=60", "format=pix_fmts=yuv420p"]
    assert reference_filters(fast, plan, plan.video[-1]) == ["fps=fps=60", "format=pix_fmts=yuv420p", "fps=fps=30"]
    vfr = source(vfr=True)
    plan = plan_ladder(vfr, prof)
    assert reference_filters(vfr, plan, plan.video[0]) == ["fps=fps=30", "format=pix_fmts=yuv420p"]
    interlaced = source(fps=Fraction(25), interlaced=True)
    plan = plan_ladder(interlaced, prof)
    assert reference_filters(interlaced, plan, plan.video[0])[0].startswith("bwdif=")


# --------------------------------------------------------------------------------------------------
# rounding and the per-title profile
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kbps", "nice"), [(2381.4, 2380), (1314, 1310), (725.2, 725), (402, 400), (145.4, 145), (0.2, 1)])
def test_nice_kbps(kbps, nice):
    assert ladder.nice_kbps(kbps) == nice


def _research_ladder():
    env = hull.envelope(points(LOW))
    chosen = hull.choose_rungs(env, min_kbps=145, max_kbps=4500, rung_count=7, saturation_quality=95)
    return env, ladder.round_rungs(env, chosen, min_kbps=145, max_kbps=4500)


def test_round_rungs_keeps_the_ladder_valid():
    env, rungs = _research_ladder()
    kbps = [r.kbps for r in rungs]
    assert kbps == sorted(kbps, reverse=True) and len(set(kbps)) == len(kbps)
    assert kbps[-1] == 145 and kbps[0] == ladder.nice_kbps(env.kbps_for_quality(95))
    assert all(k == ladder.nice_kbps(k) for k in kbps)
    pixels = [r.width * r.height for r in rungs]
    assert pixels == sorted(pixels, reverse=True)  # resolution never increases going down
    for r in rungs:  # quality re-predicted at the rounded rate
        assert r.predicted_quality == pytest.approx(env.curve(r.resolution).quality_at(r.kbps))


def _per_title(base, rungs):
    specs = {(c.width, c.height): c.spec for c in candidates(source(), base, plan_ladder(source(), base))}
    return ladder.per_title_profile(base, rungs, specs, description="per-title test")


def test_per_title_profile_round_trips_through_toml(tmp_path):
    base = registry.load("default")
    _, rungs = _research_ladder()
    prof = _per_title(base, rungs)
    assert [(r.width, r.height) for r in prof.rungs] == [(r.width, r.height) for r in rungs]
    for spec, r in zip(prof.rungs, rungs, strict=True):
        assert spec.bitrate_kbps == r.kbps
        assert abs(spec.maxrate_kbps - 1.1 * r.kbps) <= 1 and spec.bufsize_kbps == 2 * r.kbps  # the profile's ratios
    loaded = ladder.save_profile(prof, str(tmp_path / "title.toml"))
    assert loaded.name == "title" and loaded.path == str(tmp_path / "title.toml")
    assert loaded.rungs == prof.rungs
    assert (loaded.preset, loaded.gop_s, loaded.segment_s, loaded.audio) == (base.preset, base.gop_s, base.segment_s, base.audio)
    assert registry.load(str(tmp_path / "title.toml")) == loaded
    # encoded as planned: the same sizes on the source it was made for
    plan = plan_ladder(source(), loaded)
    assert [(r.width, r.height) for r in plan.video] == [(r.width, r.height) for r in rungs]
    assert [r.bitrate_kbps for r in plan.video] == [r.kbps for r in rungs]


def test_toml_keeps_options_audio_and_portrait_sizes(tmp_path):
    base = replace(
        registry.load("default"),
        audio=(),
        encoder_options=(("h264", (("x264-params", "aq-mode=3"), ("tune", 'film "q"'))),),
        audio_tracks=(0, "eng"),
        rate_control="crf",
        rungs=tuple(replace(r, crf=23, codec_profile="high", level="4.1") for r in registry.load("default").rungs),
    )
    portrait = source(720, 1280)
    specs = {(c.width, c.height): c.spec for c in candidates(portrait, base, plan_ladder(portrait, base))}
    rungs = [hull.ChosenRung(720, 1280, 3000, 90), hull.ChosenRung(360, 640, 800, 80)]
    prof = ladder.per_title_profile(base, rungs, specs, description="portrait")
    assert prof.rate_control == "vbr" and [(r.width, r.height) for r in prof.rungs] == [(1280, 720), (640, 360)]
    loaded = ladder.save_profile(prof, str(tmp_path / "p.toml"))
    assert loaded.audio == () and loaded.options_for("h264") == {"x264-params": "aq-mode=3", "tune": 'film "q"'}
    assert loaded.audio_tracks == (0, "eng") and loaded.rungs == prof.rungs
    plan = plan_ladder(portrait, loaded)
    assert [(r.width, r.height) for r in plan.video] == [(720, 1280), (360, 640)]
    with pytest.raises(Exception, match=r"\.toml"):
        ladder.save_profile(prof, str(tmp_path / "p.yaml"))


def test_toml_writer_handles_a_profile_with_audio():
    base = replace(registry.load("720p"), audio=(AudioRungSpec("aac", 96, 2, 44100),))
    text = ladder.profile_toml(replace(base, rungs=(VideoRungSpec(720, 1280, 2000, 2200, 4000, "h264"),)))
    assert "[[audio]]" in text and "sample_rate = 44100" in text and "audio = []" not in text


# --------------------------------------------------------------------------------------------------
# comparing measured ladders
# --------------------------------------------------------------------------------------------------


def _rungs(pairs):
    return [MeasuredRung(f"r{i}", 1280, 720, int(k), k, k, q, 10) for i, (k, q) in enumerate(pairs)]


def test_monotone_drops_rungs_that_buy_nothing():
    kept, dropped = monotone([(3000, 96), (2000, 91), (2100, 90), (1000, 85)])
    assert kept == [(1000, 85), (2000, 91), (3000, 96)] and dropped == [(2100, 90)]


def test_compare_ladders_reports_bd_rate_and_overlap():
    fixed = _rungs([(3000, 96.6), (2000, 91.3), (1000, 85.6), (400, 71.6)])
    cheaper = _rungs([(k * 0.7, q) for k, q in [(3000, 96.6), (2000, 91.3), (1000, 85.6), (400, 71.6)]])
    cmp = compare_ladders(fixed, cheaper, "vmaf")
    assert cmp.bd.percent == pytest.approx(-30.0, abs=1e-6) and cmp.bd.overlap == 1.0
    assert cmp.per_title_wins and "saves 30.0%" in cmp.verdict()
    worse = compare_ladders(fixed, _rungs([(k * 1.1, q) for k, q in [(3000, 96.6), (2000, 91.3), (1000, 85.6), (400, 71.6)]]), "vmaf")
    assert worse.bd.percent == pytest.approx(10.0, abs=1e-6) and not worse.per_title_wins
    assert "LOSES" in worse.verdict()
    data = worse.to_dict()
    assert data["bd_rate"]["overlap"] == 1.0 and data["per_title_wins"] is False and len(data["per_title"]) == 4


def test_compare_ladders_without_enough_points():
    cmp = compare_ladders(_rungs([(3000, 96)]), _rungs([(2000, 96), (1000, 90)]), "psnr")
    assert cmp.bd is None and cmp.per_title_wins is None and "at least two rungs" in cmp.verdict()
    disjoint = compare_ladders(_rungs([(3000, 96), (2000, 94)]), _rungs([(500, 60), (300, 50)]), "vmaf")
    assert disjoint.bd is not None and disjoint.bd.overlap == 0 and math.isnan(disjoint.bd.percent)
    assert "no BD-rate" in disjoint.verdict()


# --------------------------------------------------------------------------------------------------
# Capped CRF: each per-title rung is encoded at the whole CRF its size's trials measured nearest to it
# --------------------------------------------------------------------------------------------------


def _crf_curve_env() -> hull.Envelope:
    # 720p: CRF 18/24/30 at 4000/1800/800 kbps; 360p: CRF 24/30/36 at 700/320/150 kbps
    return hull.envelope(
        [hull.TrialPoint(1280, 720, c, k, q) for c, k, q in ((18, 4000, 98), (24, 1800, 94), (30, 800, 86))]
        + [hull.TrialPoint(640, 360, c, k, q) for c, k, q in ((24, 700, 85), (30, 320, 76), (36, 150, 62))]
    )


def test_crf_for_kbps_follows_ln_kbps_between_trials_and_inverts():
    curve = _crf_curve_env().curve((1280, 720))
    assert ladder.crf_for_kbps(curve, 1800) == pytest.approx(24)
    assert ladder.crf_for_kbps(curve, math.sqrt(1800 * 800)) == pytest.approx(27)  # halfway in ln(kbps)
    assert ladder.crf_for_kbps(curve, 4000 * 4000 / 1800) == pytest.approx(12)  # carried on past the ends
    for crf in (14, 18, 21, 27, 33):
        assert ladder.crf_for_kbps(curve, ladder.kbps_for_crf(curve, crf)) == pytest.approx(crf)
    lone = hull.envelope([hull.TrialPoint(640, 360, 30, 320, 76), hull.TrialPoint(1280, 720, 30, 800, 86),
                          hull.TrialPoint(1280, 720, 24, 1800, 94)]).curve((640, 360))  # fmt: skip
    assert ladder.crf_for_kbps(lone, 300) is None  # one CRF point: no slope


def test_capped_crf_rungs_sit_on_whole_crfs_within_the_ladders_limits():
    env = _crf_curve_env()
    chosen = [hull.ChosenRung(1280, 720, 2100, 95), hull.ChosenRung(1280, 720, 1080, 89),
              hull.ChosenRung(640, 360, 550, 83), hull.ChosenRung(640, 360, 290, 74), hull.ChosenRung(640, 360, 145, 61)]  # fmt: skip
    rungs = ladder.capped_crf_rungs(env, chosen, crf_range=(0, 51), min_kbps=145, max_kbps=2100)
    assert [(r.resolution, r.crf) for r in rungs] == [((1280, 720), 23), ((1280, 720), 28), ((640, 360), 26),
                                                       ((640, 360), 31), ((640, 360), 36)]  # fmt: skip
    for r in rungs:  # the bitrate the CRF gives, and the quality re-predicted there
        curve = env.curve(r.resolution)
        assert r.kbps == pytest.approx(ladder.kbps_for_crf(curve, r.crf))
        assert r.predicted_quality == pytest.approx(curve.quality_at(r.kbps) if r.kbps >= curve.min_kbps else curve.extrapolate_below(r.kbps))
    assert rungs[0].kbps <= 2100 and rungs[-1].kbps >= 145
    assert rungs[-1].kbps == pytest.approx(150) and not rungs[-1].extrapolated  # CRF 36 is a trial point
    # the nearest CRF would overshoot the top: one step up; would undershoot the floor: one step down
    top = ladder.capped_crf_rungs(env, [hull.ChosenRung(1280, 720, 1900, 94)], crf_range=(0, 51), min_kbps=145, max_kbps=1900)
    assert top[0].crf == 24 and top[0].kbps <= 1900
    low = ladder.capped_crf_rungs(env, [hull.ChosenRung(640, 360, 160, 63)], crf_range=(0, 51), min_kbps=160, max_kbps=2000)
    assert low[0].crf == 35 and low[0].kbps >= 160
    # two rungs that land on the same CRF keep only the upper one
    twins = ladder.capped_crf_rungs(env, [hull.ChosenRung(640, 360, 330, 76), hull.ChosenRung(640, 360, 310, 75)],
                                    crf_range=(0, 51), min_kbps=145, max_kbps=2000)  # fmt: skip
    assert [r.crf for r in twins] == [30]


def test_a_capped_crf_ladder_is_a_profile_that_encodes_with_its_crfs(tmp_path):
    from abrpipe import encode

    base = registry.load("default")
    env = _crf_curve_env()
    rungs = ladder.capped_crf_rungs(env, [hull.ChosenRung(1280, 720, 2100, 95), hull.ChosenRung(640, 360, 290, 74)],
                                    crf_range=(0, 51), min_kbps=145, max_kbps=4500)  # fmt: skip
    prof = _per_title(base, rungs)
    assert prof.rate_control == "crf"
    assert [(r.rate_control, r.crf, r.bitrate_kbps) for r in prof.rungs] == [("crf", 23, ladder.nice_kbps(rungs[0].kbps)),
                                                                           ("crf", 31, ladder.nice_kbps(rungs[1].kbps))]  # fmt: skip
    loaded = ladder.save_profile(prof, str(tmp_path / "crf.toml"))
    plan = plan_ladder(source(), loaded)
    assert [(r.crf, r.rate_control) for r in plan.video] == [(23, "crf"), (31, "crf")]
    opts = encode.video_options(plan.video[0], plan, None)
    # capped CRF: the CRF, capped by the rung's VBV (maxrate in the profile's ratio to the bitrate), no target
    assert opts["crf"] == "23" and "b:v" not in opts
    assert opts["maxrate"] == f"{plan.video[0].maxrate_kbps}k" and plan.video[0].maxrate_kbps == round(1.1 * plan.video[0].bitrate_kbps)
